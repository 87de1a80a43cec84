"""Pinned per-backend virtual environments (OpenVINO, MLX), created on demand and reused.

optimum-intel caps transformers < 5.6 and huggingface-hub < 1.22 and pulls
torchvision (which fails to import beside the CPU torch 2.13.0 wheel);
mlx-lm wants newer ones.  So each of these backends runs in its own
virtualenv under ``<repo>/.envs/<backend>/`` (``$PHI_GET_ENVS`` overrides the
folder), installed from the exact pins in ``builders/requirements/<backend>.txt``
with ``--no-deps`` (so nothing unpinned, and no torchvision, slips in), torch
first from the CPU wheel where the backend needs it.  An env is created once
(minutes), under a lock, and recreated only when its pin file changes; its
exact versions (from the pins) go into each manifest's provenance.  Builders
talk to an env only through a subprocess running a small driver script.

Standard library only.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

from .errors import BuildError

__all__ = ["ENVS", "BackendEnv", "envs_root", "pinned_versions", "runtime_python"]

_MARKER: Final = "phi-get-env.json"


def envs_root() -> Path:
    override = os.environ.get("PHI_GET_ENVS")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / ".envs"


def _pins_text(name: str) -> str:
    return resources.files("phi_get.builders").joinpath(f"requirements/{name}.txt").read_text("utf-8")


def pinned_versions(name: str) -> dict[str, str]:
    """distribution (PEP 503 normalized) -> exact version, from the backend's pin file."""
    pins: dict[str, str] = {}
    for line in _pins_text(name).splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            dist, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", dist.strip()).lower()] = version.strip()  # PEP 503 names
    return pins


@dataclass(frozen=True, kw_only=True, slots=True)
class BackendEnv:
    name: str
    #: Installed first, with dependencies, from the local CPU wheel (or None).
    torch: str | None
    #: Console scripts and modules that must exist once installed.
    probe: tuple[str, ...]

    @property
    def folder(self) -> Path:
        return envs_root() / self.name

    @property
    def python(self) -> Path:
        return self.folder / "bin" / "python"

    def _pins_digest(self) -> str:
        return hashlib.sha256(f"{self.torch}\n{_pins_text(self.name)}".encode()).hexdigest()

    def ready(self) -> bool:
        marker = self.folder / _MARKER
        try:
            return json.loads(marker.read_text("utf-8")).get("pins_sha256") == self._pins_digest()
        except (OSError, ValueError):
            return False

    def versions(self) -> dict[str, str]:
        """The exact tool versions this env runs (its pins, torch included)."""
        pins = pinned_versions(self.name)
        if self.torch:
            pins["torch"] = self.torch
        return pins

    def ensure(self, log: Path | None = None) -> Path:
        """Create the env if it is missing or stale; return its python.  Safe to call concurrently."""
        if self.ready():
            return self.python
        root = envs_root()
        root.mkdir(parents=True, exist_ok=True)
        with open(root / f".{self.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self.ready():
                self._create(log)
        return self.python

    def _pip(self, args: list[str], log_fh: object) -> None:
        cmd = [str(self.python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *args]
        proc = subprocess.run(cmd, stdout=log_fh, stderr=subprocess.STDOUT, check=False)  # type: ignore[arg-type]
        if proc.returncode != 0:
            raise BuildError(f"creating the {self.name} environment failed: {' '.join(cmd)} exited {proc.returncode}"
                             f" (log: {getattr(log_fh, 'name', '?')})")

    def _create(self, log: Path | None) -> None:
        if self.folder.exists():
            shutil.rmtree(self.folder)
        log = log or envs_root() / f"{self.name}-install.log"
        with open(log, "w") as log_fh:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(self.folder)], check=True,
                           stdout=log_fh, stderr=subprocess.STDOUT)
            if self.torch:
                self._pip([f"torch=={self.torch}"], log_fh)
            pins = self.folder / "requirements.txt"
            pins.write_text(_pins_text(self.name), "utf-8")
            self._pip(["--no-deps", "-r", str(pins)], log_fh)
        (self.folder / _MARKER).write_text(json.dumps({"pins_sha256": self._pins_digest()}), "utf-8")


ENVS: Final = {
    "openvino": BackendEnv(name="openvino", torch="2.13.0", probe=("optimum-cli",)),
    "mlx": BackendEnv(name="mlx", torch=None, probe=("mlx_lm",)),
}

#: Artifact format -> the backend environment whose interpreter has its runtime (others: the main one).
_RUNTIME_ENV: Final = {"openvino": "openvino", "mlx": "mlx"}


def runtime_python(fmt: str) -> Path | None:
    """The interpreter that runs ``fmt``'s runtime: its backend env's (created if missing), None for this one."""
    env = _RUNTIME_ENV.get(fmt)
    return ENVS[env].ensure() if env else None
