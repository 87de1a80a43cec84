"""`phi-get run` on OpenVINO IR and MLX artifacts, inside the builders' pinned environments.

openvino-genai and mlx-lm cannot live in the main environment (their pins
conflict with it and with each other), so the real `phi-get run` command runs
under the python of ``.envs/openvino`` or ``.envs/mlx`` (builders/envs.py;
`phi-get build` creates them on first use, minutes, and they are reused).
phi_get reaches that interpreter through PYTHONPATH: a folder holding a
``phi_get`` symlink to the repository root (the root is the package), as the
mypy test does.  Nothing is installed into the envs, so their pins and
markers stay as the builders made them; typer, rich and packaging, all
phi-get's `run` needs beside the runtime, are already among their pins.
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

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "The cat"
#: variant, builders env, runtime reported, device profile the variant suits, --format for install
CASES = [("openvino-int8", "openvino", "openvino-genai", "intel-ai-pc", "openvino"),
         ("mlx-8bit", "mlx", "mlx-lm", "apple-laptop", "mlx")]

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux pins")]


@pytest.fixture(scope="module")
def built(tiny_phi: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both variants, built by the real `phi-get build` (which creates the pinned envs if they are missing)."""
    out = tmp_path_factory.mktemp("run-envs-out")
    only = ",".join(case[0] for case in CASES)
    proc = subprocess.run([sys.executable, "-m", "phi_get", "build", "tiny-phi", "--source", str(tiny_phi),
                           "--out", str(out), "--only", only], capture_output=True, text=True, timeout=1800,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PYTHONPATH folder whose ``phi_get`` is this checkout."""
    folder = tmp_path_factory.mktemp("site")
    (folder / "phi_get").symlink_to(ROOT, target_is_directory=True)
    return folder


def _run(python: Path, site: Path, home: Path, cwd: Path, max_tokens: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(site), "PHI_GET_HOME": str(home)}
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run([str(python), "-m", "phi_get", "run", "tiny-phi", "--prompt", PROMPT,
                           "--max-tokens", str(max_tokens), "--json"], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def _reference(tiny_phi: Path, max_tokens: int) -> str:
    """Greedy continuation of PROMPT by transformers on the unquantized checkpoint (main env)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_phi))
    model: Any = AutoModelForCausalLM.from_pretrained(str(tiny_phi)).eval()
    ids = tok(PROMPT, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.eos_token_id)
    return str(tok.decode(out[0][ids["input_ids"].shape[1]:]))


@pytest.mark.parametrize(("variant", "env_name", "runtime", "device", "fmt"), CASES, ids=[c[0] for c in CASES])
def test_run_in_the_backend_env(variant: str, env_name: str, runtime: str, device: str, fmt: str,
                                built: Path, site: Path, tiny_phi: Path, tmp_path: Path, home: Path,
                                kit: Any) -> None:
    from phi_get.builders.envs import ENVS
    from phi_get.manifests.artifact import find_artifact_folders, load_artifact_folder

    python = ENVS[env_name].ensure()  # the build made it; this only checks it is ready (or remakes a stale one)
    arts = []
    for folder in find_artifact_folders(built):
        m = load_artifact_folder(folder)
        arts.append((m, {f.path: folder / f.path for f in m.files}))
    assert sorted(m.variant for m, _ in arts) == sorted(case[0] for case in CASES)
    mirror = kit.write_mirror(tmp_path / "mirror", arts)
    phi_get.install("tiny-phi", registry=mirror.as_uri(), device=device, format=fmt)

    eight = _run(python, site, home, tmp_path, 8)
    assert (eight["variant"], eight["runtime"]) == (variant, runtime)
    # The tiny checkpoint does not end the sequence (eos id 3) within 8 greedy tokens of PROMPT (measured in
    # both runtimes), so the count is exactly max_tokens; a loader ignoring max_tokens or not counting fails.
    assert eight["new_tokens"] == 8 and eight["text"].strip()
    assert _run(python, site, home, tmp_path, 8)["text"] == eight["text"]  # greedy: deterministic
    three = _run(python, site, home, tmp_path, 3)
    assert three["new_tokens"] == 3
    # The prompt is continued as plain text (no chat template), with the same tokens as transformers on the
    # unquantized checkpoint: the first 3 greedy tokens survive 8-bit weights (top-2 logit gap 0.22, measured).
    assert three["text"] == _reference(tiny_phi, 3) and eight["text"].startswith(three["text"])
