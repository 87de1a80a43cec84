"""`phi-get run` on the target the resolution chose , on this CPU-only machine.

Attacks: an artifact resolved for CUDA run quietly on the CPU (the README's
"never falls back silently" promise broken at run time); a failure that
names neither the runtime build nor the fix; no way to opt out; a run that
does not say where it ran or how fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import phi_get
import pytest

_GPU_BOX = {"schema": "phi-get.device/v1", "os": "linux", "arch": "x86_64", "cpu": {"flags": ["avx2"], "cores": 4},
            "memory_bytes": 17179869184,
            "accelerators": [{"type": "gpu", "vendor": "nvidia", "name": "NVIDIA L4", "memory_bytes": 24152899584,
                              "compute_capability": "8.9"}],
            "runtimes": {"transformers": "4.56.0", "torch": "2.8.0"}}


@pytest.mark.slow
def test_run_resolved_for_cuda_fails_clearly_here_and_cpu_opt_out_runs(tiny_phi: Path, tmp_path: Path, home: Path,
                                                                        kit: Any) -> None:
    """Resolved for cuda with a CPU-only torch: exit 1 naming torch and the CUDA wheel index; --target cpu runs."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: the failure cannot be shown here")
    files: dict[str, bytes | Path] = {p.name: p for p in sorted(tiny_phi.iterdir()) if p.is_file()}
    m = kit.make_manifest("tiny-phi", "0.1.0", "safetensors-fp32", files, runtime=("transformers", ">=4.40"),
                          targets=("cuda", "cpu-x86_64", "cpu-arm64"))
    mirror = kit.write_mirror(tmp_path / "mirror", [(m, files)])
    profile = tmp_path / "gpu-box.json"  # a whole profile: its builds are unverified, so the resolver says cuda
    profile.write_text(json.dumps(_GPU_BOX))
    phi_get.install("tiny-phi", registry=mirror.as_uri(), device=str(profile))
    env = {**os.environ, "PHI_GET_HOME": str(home)}
    base = [sys.executable, "-m", "phi_get", "run", "tiny-phi", "--prompt", "The cat", "--max-tokens", "4",
            "--device", str(profile)]
    out = subprocess.run(base, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert "tiny-phi 0.1.0 safetensors-fp32 was resolved for cuda, but the installed transformers build cannot " \
           "use it: torch" in out.stderr and "sees no cuda device; phi-get does not fall back to the CPU" in out.stderr
    assert "https://download.pytorch.org/whl/cu124" in out.stderr and "--target cpu" in out.stderr
    ok = subprocess.run([*base, "--target", "cpu", "--json"], capture_output=True, text=True, env=env, timeout=300,
                        check=False)
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["target"] == "cpu" and doc["device"] == "cpu" and doc["new_tokens"] == 4
    assert doc["tokens_per_s"] and doc["prompt_tokens_per_s"] and doc["peak_memory_bytes"] > 0
    # The same holds for the Python API.
    from phi_get.resolver.errors import AcceleratorUnavailableError

    with pytest.raises(AcceleratorUnavailableError, match="was resolved for cuda") as info:
        phi_get.run("tiny-phi", "The cat", device=str(profile), max_tokens=4)
    assert "download.pytorch.org/whl/cu124" in info.value.hint
    gen = phi_get.run("tiny-phi", "The cat", device=str(profile), max_tokens=4, target="cpu")
    assert gen.device == "cpu" and gen.new_tokens == 4 and gen.text == doc["text"]
