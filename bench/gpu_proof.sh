#!/usr/bin/env bash
# GPU proof: on an NVIDIA machine, probe, resolve, install and run a CUDA
# variant with phi-get, and show the GPU memory the run used.  A few minutes of run time.
#
# Two steps, because the GPU machines have torch with CUDA but no internet:
#
#   1. here (a machine with the project's .venv):   bench/gpu_proof.sh prepare
#      writes build/gpu-proof/: the tiny Phi-3 checkpoint published as a safetensors artifact that
#      targets cuda and the CPU (a static mirror: manifests + blobs), and deps.tgz, the pure-Python
#      packages phi-get's run path needs (packaging, typer, click, rich, ...) plus transformers,
#      tokenizers, safetensors, huggingface_hub and their small dependencies, without __pycache__.
#      The compiled ones (tokenizers, safetensors: abi3 wheels; regex, yaml: this Python only) work
#      on a Linux x86_64 machine with the same Python minor version; the script checks that.
#   2. on the GPU machine (carry build/gpu-proof):   bench/gpu_proof.sh run
#      (through the device tool: run(command="bench/gpu_proof.sh run", carry=["build/gpu-proof"]))
#      uses the machine's own python3 with torch; any of the packages above it lacks comes from
#      deps.tgz.  It writes every output under $OUT (or build/gpu-proof/out): nvidia-smi before and
#      during the run, the probed device profile (runtime_devices must say transformers drives cuda),
#      the --explain of the resolution (target cuda-*), the install, the run's JSON (device cuda:0,
#      prompt and generation tokens per second, peak GPU memory from torch), the same run with
#      --target cpu for comparison, and the GPU memory nvidia-smi saw in use by the run's process.
#
# Never fakes a result: each step's exit status is recorded, and the summary says "NOT PROVEN" when
# the run did not report a CUDA device or nvidia-smi never saw the process on the GPU.
set -u -o pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$ROOT/build/gpu-proof"
MODE="${1:-run}"

# Packages the run path imports (phi-get CLI + transformers loader), as directory names in site-packages.
DEPS="packaging typer click rich markdown_it mdurl pygments shellingham typing_extensions.py
      transformers tokenizers safetensors huggingface_hub tqdm regex yaml _yaml filelock fsspec hf_xet sentencepiece"
DISTS="packaging typer click rich markdown_it_py mdurl pygments shellingham typing_extensions transformers tokenizers
       safetensors huggingface_hub tqdm regex pyyaml filelock fsspec hf_xet sentencepiece"

prepare() {
    local py="$ROOT/.venv/bin/python"
    [ -x "$py" ] || { echo "prepare needs the project venv at $ROOT/.venv" >&2; exit 2; }
    rm -rf "$WORK" && mkdir -p "$WORK"
    "$py" - "$WORK" <<'PY'
import shutil
import sys
from pathlib import Path

root = Path(sys.argv[1])
sys.path.insert(0, str(Path.cwd() / "tests" / "resolver"))
import wirekit
from phi_get.builders.tiny import make_tiny_phi

ckpt = make_tiny_phi(root / "tiny-phi")
files = {p.name: p for p in sorted(ckpt.iterdir()) if p.is_file()}
m = wirekit.make_manifest("tiny-phi", "0.1.0", "safetensors-fp32", files, runtime=("transformers", ">=4.40"),
                          targets=("cuda", "cpu-x86_64", "cpu-arm64"))
wirekit.write_mirror(root / "mirror", [(m, files)])
shutil.rmtree(ckpt)  # the mirror holds the files: carry them once
print(f"mirror: {root / 'mirror'} ({m.size} bytes of artifact)")
PY
    local site
    site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    local present=()
    for d in $DEPS; do [ -e "$site/$d" ] && present+=("$d"); done
    # Their dist-info folders too: transformers checks its dependencies' versions through importlib.metadata,
    # and phi-get's device probe finds runtimes by their metadata.
    for dist in $DISTS; do
        for info in "$site"/"$dist"-*.dist-info; do [ -d "$info" ] && present+=("$(basename "$info")"); done
    done
    tar -czf "$WORK/deps.tgz" --exclude=__pycache__ -C "$site" "${present[@]}"
    "$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")' > "$WORK/python-version"
    du -sh "$WORK"/* | sed 's/^/  /'
    echo "carry build/gpu-proof (under 64 MiB: $(du -sm "$WORK" | cut -f1) MiB) and run: bench/gpu_proof.sh run"
}

run_proof() {
    local out="${OUT:-$WORK/out}"
    mkdir -p "$out"
    local log="$out/gpu-proof.txt"
    : > "$log"
    say() { echo "$*" | tee -a "$log"; }
    step() {  # step NAME CMD...: run, keep stdout+stderr in $out/NAME.txt, record the exit status
        local name="$1"; shift
        "$@" > "$out/$name.txt" 2>&1
        local rc=$?
        say "[$name] exit $rc"
        return $rc
    }
    [ -d "$WORK/mirror" ] || { say "no $WORK/mirror: run 'bench/gpu_proof.sh prepare' first and carry build/gpu-proof"; exit 2; }
    command -v nvidia-smi > /dev/null || { say "NOT PROVEN: no nvidia-smi on this machine"; exit 1; }
    local py="${PHI_GET_PROOF_PYTHON:-python3}"

    # phi_get is the repository root: reach it through a folder holding a phi_get symlink.
    local pp; pp="$(mktemp -d)"
    ln -s "$ROOT" "$pp/phi_get"
    local path="$pp"
    local missing=()
    for mod in packaging typer rich transformers tokenizers safetensors; do
        "$py" -c "import $mod" 2> /dev/null || missing+=("$mod")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        local want have
        want="$(cat "$WORK/python-version")"
        have="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        say "this python lacks: ${missing[*]}; using the carried deps.tgz (built for Python $want, this is $have)"
        mkdir -p "$pp/deps" && tar -xzf "$WORK/deps.tgz" -C "$pp/deps"
        path="$pp:$pp/deps"
    fi
    export PYTHONPATH="$path${PYTHONPATH:+:$PYTHONPATH}"
    export PHI_GET_HOME="$out/home"
    export PHI_GET_DEVICE=  # probe this machine
    export PHI_GET_UNSIGNED="file://$WORK/mirror"  # the proof's own mirror carries no signed root
    local phi=("$py" -m phi_get)

    step nvidia-smi nvidia-smi
    step torch "$py" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available(), torch.cuda.get_device_name(0))'
    step device "${phi[@]}" device --json
    cp "$out/device.txt" "$out/device.json" 2> /dev/null
    step resolve "${phi[@]}" resolve tiny-phi --registry "file://$WORK/mirror" --explain
    step install "${phi[@]}" install tiny-phi --registry "file://$WORK/mirror"

    # nvidia-smi samples every 200 ms while the CUDA run lasts: the process's GPU memory, by the driver.
    nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader -lms 200 \
        > "$out/nvidia-smi-during-run.csv" 2>&1 &
    local sampler=$!
    step run-cuda "${phi[@]}" run tiny-phi --prompt "The cat sat on" --max-tokens 64 --json
    local run_rc=$?
    sleep 0.5
    kill "$sampler" 2> /dev/null; wait "$sampler" 2> /dev/null
    step run-cpu "${phi[@]}" run tiny-phi --prompt "The cat sat on" --max-tokens 64 --json --target cpu

    "$py" - "$out" "$run_rc" <<'PY' | tee -a "$log"
import json, sys
from pathlib import Path

out, rc = Path(sys.argv[1]), int(sys.argv[2])
def load(name):
    try:
        text = (out / f"{name}.txt").read_text()
        return json.loads(text[text.index("{"):])
    except (OSError, ValueError):
        return None
device, cuda, cpu = load("device"), load("run-cuda"), load("run-cpu")
drives = (device or {}).get("runtime_devices", {})
print(f"probed runtime_devices: {drives}")
seen = [l for l in (out / "nvidia-smi-during-run.csv").read_text().splitlines() if "MiB" in l]
peak_mib = max((int(l.rsplit(",", 1)[1].split()[0]) for l in seen), default=0)
for name, doc in (("cuda run", cuda), ("cpu run", cpu)):
    if doc:
        print(f"{name}: device {doc.get('device')}, target {doc.get('target')}, {doc.get('new_tokens')} tokens, "
              f"prompt {doc.get('prompt_tokens_per_s')} tok/s, generation {doc.get('tokens_per_s')} tok/s, "
              f"peak memory {doc.get('peak_memory_bytes')} bytes")
    else:
        print(f"{name}: no result (see {name.replace(' ', '-')}.txt)")
print(f"nvidia-smi saw up to {peak_mib} MiB in use by compute processes during the cuda run ({len(seen)} samples)")
proven = rc == 0 and cuda is not None and str(cuda.get("device", "")).startswith("cuda") and peak_mib > 0
print("PROVEN: phi-get ran the resolved CUDA variant on the GPU" if proven else "NOT PROVEN: see the files above")
sys.exit(0 if proven else 1)
PY
}

case "$MODE" in
    prepare) prepare ;;
    run) run_proof ;;
    *) echo "usage: bench/gpu_proof.sh prepare | run" >&2; exit 2 ;;
esac
