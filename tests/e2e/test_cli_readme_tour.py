"""The README's tour, run as written: every line of its code block, on the tiny checkpoint.

The development machines cannot download weights, so the lines run with these substitutions, and no
others: the model ``phi-3.5-mini`` becomes ``tiny-phi`` (built here from ``phi-get tiny-phi``, so
``build`` gets ``--source``), ``/srv/`` becomes a temporary folder, ``URL`` the registry this test
serves on a free port (``serve`` gets ``--port``), ``PHI_GET_TOKEN=...`` the token the tour's own
``token create`` printed, and ``root.json`` the root the tour's ``registry trust init`` wrote (what the
operator hands to clients). Nothing accepts unsigned sources: the suite-wide ``PHI_GET_UNSIGNED`` is
removed. The roles run in the order they depend on each other: the registry
operator, the publisher, the device operator, the fleet deployer. Then the sample fleet shipped in
``resolver/profiles/fleet`` is locked against the tour's static mirror and synced from it offline.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from phi_get.demo import free_port, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def _tour() -> dict[str, list[str]]:
    text = (ROOT / "README.md").read_text()
    block = text.split("## A tour", 1)[1].split("```", 2)[1]
    roles: dict[str, list[str]] = {}
    role = ""
    for line in block.splitlines():
        if line.startswith("# "):
            role = line[2:].split(" (")[0]
            roles[role] = []
        elif line.strip():
            roles[role].append(re.sub(r"\s+#.*$", "", line).strip())
    return roles


@pytest.mark.slow
def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    roles = _tour()
    assert list(roles) == ["device operator", "fleet deployer", "model publisher", "registry operator"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PHI_GET_HOME": str(tmp_path / "home"), "PHI_GET_REGISTRY_CONFIG": os.devnull}
    for name in ("PHI_GET_REGISTRY", "PHI_GET_DEVICE", "PHI_GET_REGISTRY_STORAGE", "PHI_GET_REGISTRY_DB",
                 "PHI_GET_UNSIGNED"):
        env.pop(name, None)
    ckpt = tmp_path / "ckpt"
    subprocess.run([sys.executable, "-m", "phi_get", "tiny-phi", str(ckpt)], check=True, capture_output=True,
                   env=env, timeout=600)
    token = ""
    root = tmp_path / "srv" / "phi-get" / "tuf" / "metadata" / "1.root.json"
    procs: list[subprocess.Popen[bytes]] = []
    logs = []

    def line(cmd: str) -> str:
        cmd = cmd.replace("phi-3.5-mini", "tiny-phi").replace("/srv/", f"{tmp_path}/srv/").replace("URL", url)
        cmd = cmd.replace(" root.json", f" {root}")
        words = shlex.split(cmd)
        extra = {}
        while "=" in words[0]:
            key, _, value = words.pop(0).partition("=")
            extra[key] = token if value == "..." else value
        assert words[0] == "phi-get", cmd
        args = words[1:]
        if args[:1] == ["build"] and "--plan" not in args:
            args += ["--source", str(ckpt)]
        if args[:2] == ["registry", "serve"]:
            log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - the server's for its life
            logs.append(log)
            procs.append(subprocess.Popen([sys.executable, "-m", "phi_get", *args, "--port", str(port)],
                                          env={**env, **extra}, cwd=work, stdout=log, stderr=subprocess.STDOUT))
            wait_for_port(port, procs[-1], timeout=60)
            return ""
        out = subprocess.run([sys.executable, "-m", "phi_get", *args], capture_output=True, text=True,
                             env={**env, **extra}, cwd=work, timeout=900, check=False)
        assert out.returncode == 0, f"{cmd}\n{out.stdout}\n{out.stderr}"
        return out.stdout

    try:
        for cmd in roles["registry operator"][:4]:  # token, keys, sign, serve (export and gc need content)
            printed = line(cmd).strip()
            token = printed if printed.startswith("phig_") else token
        assert token.startswith("phig_")
        for cmd in roles["model publisher"]:
            line(cmd)
        for cmd in roles["registry operator"][4:]:
            line(cmd)
        device_out = [line(cmd) for cmd in roles["device operator"]]
        assert "why:" in device_out[2] and "why:" in device_out[3]
        assert "UNSIGNED" not in device_out[2]
        fleet_out = [line(cmd) for cmd in roles["fleet deployer"]]
        assert "device class this-machine" in fleet_out[2]

        # The sample fleet: locked against the tour's mirror, one class synced from it offline.
        mirror = (tmp_path / "srv" / "mirror").as_uri()
        fleet = tmp_path / "sample-fleet"
        shutil.copytree(ROOT / "resolver" / "profiles" / "fleet", fleet)
        (fleet / "phi.lock").unlink()
        for args in (["trust", "add", mirror, str(root)],  # a mirror is checked like its registry
                     ["trust", "add", mirror, str(root), "--home", str(tmp_path / "edge")],
                     ["lock", "--project", str(fleet), "--registry", mirror],
                     ["sync", "--locked", "--project", str(fleet), "--registry", mirror, "--device-class",
                      "edge-board", "--device", "pi-board", "--offline", "--home", str(tmp_path / "edge")]):
            out = subprocess.run([sys.executable, "-m", "phi_get", *args], capture_output=True, text=True,
                                 env=env, timeout=600, check=False)
            assert out.returncode == 0, f"{args}\n{out.stdout}\n{out.stderr}"
        assert "installed tiny-phi" in out.stdout
    finally:
        for proc in procs:
            stop_process(proc)
        for log in logs:
            log.close()
