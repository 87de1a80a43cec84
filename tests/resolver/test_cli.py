"""The device-side commands as processes: output, exit codes, and what they import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HEAVY = ("torch", "transformers", "sqlmodel", "sqlalchemy", "fastapi", "onnx", "llama_cpp", "onnxruntime_genai")


def phi(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "phi_get", *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=120)


def test_device_json_is_a_valid_profile() -> None:
    from phi_get.manifests.device import parse_device_profile

    out = phi("device", "--json")
    assert out.returncode == 0, out.stderr
    profile = parse_device_profile(out.stdout)
    assert profile.memory_bytes > 1 << 28 and profile.cores >= 1
    assert "probes" in profile.extra  # every probe reports ok or why it detected nothing


def test_device_override_by_sample_name_and_env(tmp_path: Path) -> None:
    out = phi("device", "--json", "--device", "apple-laptop")
    assert json.loads(out.stdout)["accelerators"][0]["vendor"] == "apple"
    partial = tmp_path / "more-ram.json"
    partial.write_text('{"memory_bytes": 123456789012}')
    out = phi("device", "--json", env={"PHI_GET_DEVICE": str(partial)})
    assert json.loads(out.stdout)["memory_bytes"] == 123456789012  # partial override merged over the probe
    bad = phi("device", "--device", "no-such-profile")
    assert bad.returncode == 2 and "neither a file nor a sample profile name" in bad.stderr


def test_resolve_explain_and_json(served: Any, home: Path) -> None:
    env = {"PHI_GET_HOME": str(home)}
    out = phi("resolve", "tiny-model", "--registry", served.url, "--device", "pi-board", "--explain", env=env)
    assert out.returncode == 0, out.stderr
    assert "tiny-model 0.2.0 safetensors-fp32" in out.stdout
    assert "[eligible] 0.1.0 safetensors-fp32" in out.stdout and "older version than 0.2.0" in out.stdout
    out = phi("resolve", "tiny-model<0.2", "--registry", served.url, "--device", "pi-board", "--json", env=env)
    doc = json.loads(out.stdout)
    assert doc["chosen"]["version"] == "0.1.0" and doc["candidates"][1]["reject"] == "version"


def test_resolve_nothing_fits_exits_3_with_nearest_misses(served: Any, home: Path) -> None:
    out = phi("resolve", "tiny-model", "--registry", served.url, "--device", "pi-board", "--context", "999999",
              env={"PHI_GET_HOME": str(home)})
    assert out.returncode == 3
    assert "error: no artifact of tiny-model fits this device (2 candidates rejected); nearest misses:" in out.stderr
    assert "context 999999 exceeds the model's maximum 2048 -> --context 2048 or less" in out.stderr


def test_install_list_verify_remove_gc(served: Any, home: Path) -> None:
    env = {"PHI_GET_HOME": str(home), "PHI_GET_REGISTRY": served.url, "PHI_GET_DEVICE": "pi-board"}
    out = phi("install", "tiny-model", "--json", env=env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["version"] == "0.2.0" and doc["downloaded_bytes"] == doc["size"]
    folder = Path(doc["path"])
    assert json.loads(phi("list", "--json", env=env).stdout)[0]["path"] == str(folder)
    assert phi("verify", env=env).returncode == 0
    weights = folder / "model.bin"
    os.chmod(weights, 0o644)
    with open(weights, "r+b") as fh:  # damage the installed file (a hard link of the blob)
        fh.write(b"XX")
    bad = phi("verify", "--json", env=env)
    assert bad.returncode == 4 and "sha256 on disk is" in bad.stdout
    fixed = phi("verify", "--repair", "--json", env=env)
    assert fixed.returncode == 0, fixed.stderr
    assert phi("verify", env=env).returncode == 0
    assert phi("remove", "tiny-model", env=env).returncode == 0
    gc = json.loads(phi("gc", "--json", env=env).stdout)
    assert gc["freed_bytes"] > 0 and not list((home / "blobs" / "sha256").iterdir())
    assert phi("remove", "tiny-model", env=env).returncode == 3


@pytest.mark.parametrize("command", ["device", "resolve", "install", "lock", "sync", "list", "verify", "gc", "remove"])
def test_light_commands_import_no_heavy_library(command: str, served: Any, home: Path, tmp_path: Path) -> None:
    args = {"resolve": ["tiny-model"], "install": ["tiny-model"], "remove": ["tiny-model"],
            "lock": ["--project", str(tmp_path)], "sync": ["--locked", "--project", str(tmp_path)]}.get(command, [])
    env = {**os.environ, "PHI_GET_HOME": str(home), "PHI_GET_REGISTRY": served.url, "PHI_GET_DEVICE": "pi-board"}
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "phi_get", command, *args],
                         capture_output=True, text=True, env=env, timeout=120, check=False)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines() if "|" in line}
    assert "phi_get" in imported  # the import log was captured
    assert not imported & set(HEAVY), imported & set(HEAVY)


def test_list_available_reads_the_catalogs(served: Any, mirror: Any, home: Path) -> None:
    out = phi("list", "--available", "--registry", served.url, "--registry", mirror[0].as_uri(), "--json",
              env={"PHI_GET_HOME": str(home)})
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    variants = doc[0].pop("variants")
    assert doc == [{"name": "tiny-model", "latest": "", "source": served.url}]
    assert [v["variant"] for v in variants] == ["safetensors-fp32"] and variants[0]["size"] == 810002
    missing = phi("install", "no-such-model", "--registry", served.url, env={"PHI_GET_HOME": str(home)})
    assert missing.returncode == 3
    assert "error: no source lists the model 'no-such-model'" in missing.stderr
    assert "hint: `phi-get list --available` shows the models the sources serve" in missing.stderr
