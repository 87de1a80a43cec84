"""The command line's stumbles a new user hits, each driven through the real ``phi-get``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from phi_get.manifests.errors import ExitCode


def phi(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "phi_get", *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_exit_codes_are_listed_in_help() -> None:
    """Undocumented exit codes: the table is in `phi-get --help`, by name."""
    out = phi("--help")
    for code in ExitCode:
        assert code.name.lower().replace("_", "-") in out.stdout


def test_verify_of_a_model_not_installed_exits_not_found(home: Path) -> None:
    """A command that checks nothing must not say all is well: verify NAME of a missing model exits 3."""
    out = phi("verify", "no-such-model")
    assert out.returncode == ExitCode.NOT_FOUND and "not installed" in out.stderr


def test_gc_dry_run_reports_what_it_would_free(served: Any, home: Path) -> None:
    """gc --dry-run said "freed 0 bytes": it says what it would free, in human units."""
    env = {"PHI_GET_REGISTRY": served.url, "PHI_GET_DEVICE": "pi-board"}
    assert phi("install", "tiny-model", "--quiet", env=env).returncode == 0
    assert phi("remove", "tiny-model", env=env).returncode == 0
    doc = json.loads(phi("gc", "--dry-run", "--json").stdout)
    assert doc["freed_bytes"] > 800_000
    assert "would free 8" in phi("gc", "--dry-run").stdout


def test_install_prints_its_why_and_sizes_in_units(served: Any, home: Path) -> None:
    """install never said why it chose its artifact, and small sizes read "0.00 GB"."""
    out = phi("install", "tiny-model", "--registry", served.url, "--device", "pi-board")
    assert out.returncode == 0, out.stderr
    assert "  why: runs on cpu-arm64" in out.stdout and "810 kB" in out.stdout and "0.00 GB" not in out.stdout


def test_resolve_suggests_the_option_and_lists_choices(served: Any, home: Path) -> None:
    """resolve (argparse) had no typo suggestions; a bad --format did not list the choices."""
    out = phi("resolve", "tiny-model", "--explian", "--registry", served.url)
    assert out.returncode == ExitCode.BAD_INPUT and "did you mean --explain?" in out.stderr
    out = phi("resolve", "tiny-model", "--format", "ggfu", "--registry", served.url)
    assert out.returncode == ExitCode.BAD_INPUT
    assert "at --format: choose one of gguf, onnx, openvino, mlx, safetensors; did you mean 'gguf'?" in out.stderr


def test_list_has_a_header_and_a_size_column_when_piped(served: Any, home: Path) -> None:
    """list printed bare rows; --available showed no variants."""
    env = {"PHI_GET_REGISTRY": served.url, "PHI_GET_DEVICE": "pi-board"}
    assert phi("install", "tiny-model", "--quiet", env=env).returncode == 0
    lines = phi("list", env=env).stdout.splitlines()
    assert lines[0].split()[:6] == ["MODEL", "VERSION", "VARIANT", "FORMAT", "PRECISION", "SIZE"]
    assert "810 kB" in lines[1]
    avail = phi("list", "--available", env=env).stdout
    assert "safetensors-fp32" in avail and "VARIANT" in avail


def test_a_closed_pipe_is_not_a_traceback(served: Any, home: Path) -> None:
    """`phi-get resolve ... | head -1` printed a BrokenPipeError traceback (the reader here, `true`, is gone
    before phi-get writes: every write meets a closed pipe)."""
    cmd = (f"{sys.executable} -m phi_get resolve tiny-model --explain --registry {served.url} "
           "--device pi-board | true; echo ${PIPESTATUS[0]}")
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in out.stderr and out.stdout.strip() == "0"


def test_init_writes_a_starter_phi_toml_that_locks(mirror: Any, tmp_path: Path, home: Path) -> None:
    """phi.toml had no starter: init writes one for this machine, lock reads it, a second init refuses."""
    project = tmp_path / "fleet"
    assert phi("init", "tiny-model", "--project", str(project), "--registry", mirror[0].as_uri()).returncode == 0
    assert (project / "this-machine.json").is_file() and "# " in (project / "phi.toml").read_text()
    assert phi("lock", "--project", str(project)).returncode == 0
    again = phi("init", "--project", str(project))
    assert again.returncode == ExitCode.CONFLICT and "exists already" in again.stderr


def test_a_malformed_registry_url_is_bad_input_not_unreachable(home: Path) -> None:
    """A bad URL exited 5 (unreachable service): it is bad input, exit 2, naming the URL."""
    for url in ("http://host:99999/", "ftp-or-typo"):
        out = phi("resolve", "tiny-model", "--registry", url)
        assert out.returncode == ExitCode.BAD_INPUT, (url, out.stderr)
        assert url in out.stderr


def test_sync_names_its_device_class_the_lock_and_warns_on_foreign_targets(mirror: Any, tmp_path: Path,
                                                                           home: Path) -> None:
    """sync picked a class and wrote phi.lock without saying so, and installed an arm64 class on x86 silently."""
    project = tmp_path / "fleet"
    project.mkdir()
    (project / "phi.toml").write_text(f'[project]\nregistries = ["{mirror[0].as_uri()}"]\n'
                                      '[models]\n"tiny-model" = "*"\n[device-classes]\nedge = "pi-board"\n'
                                      'server = "gpu-server"\n')
    out = phi("sync", "--project", str(project), "--device-class", "edge", "--device", "gpu-server")
    assert out.returncode == 0, out.stderr
    assert f"wrote {project / 'phi.lock'}; device class edge (given by --device-class)" in out.stdout
    assert "warning: device class edge pins artifacts for cpu-arm64, which this device (linux x86_64) " \
           "does not support" in out.stderr
    again = phi("sync", "--locked", "--project", str(project), "--device", "gpu-server", "--json")
    doc = json.loads(again.stdout)
    assert doc[0]["device_class"] == "server" and doc[0]["lock_written"] is False


def test_run_uses_the_resolvers_pick_among_installed_and_names_it(served: Any, home: Path) -> None:
    """run took the last installed variant, not the resolver's pick, without saying which."""
    env = {"PHI_GET_REGISTRY": served.url, "PHI_GET_DEVICE": "pi-board"}
    assert phi("install", "tiny-model", "--quiet", env=env).returncode == 0
    assert phi("install", "tiny-model==0.1.0", "--quiet", env=env).returncode == 0  # installed last
    out = phi("run", "tiny-model", "--prompt", "hi", env=env)  # the fake weights may not load: not the point
    assert "running tiny-model 0.2.0 safetensors-fp32 (safetensors fp32)" in out.stderr
    assert "the installed variant phi-get resolve picks" in out.stderr


def test_lock_without_a_registry_names_phi_toml(tmp_path: Path, home: Path) -> None:
    """lock said "no registry configured ((none))" (exit 5) without naming phi.toml or its key."""
    (tmp_path / "phi.toml").write_text('[models]\n"tiny-model" = "*"\n[device-classes]\nedge = "pi-board"\n')
    out = phi("lock", "--project", str(tmp_path))
    assert out.returncode == ExitCode.BAD_INPUT
    assert f"no registry configured for {tmp_path / 'phi.toml'}" in out.stderr and "registries = " in out.stderr
    assert "((none))" not in out.stderr
