"""Helpers for tests and benches: a registry on loopback and artifact folders.

* :func:`registry_server` opens a registry (SQLite file by default) in a
  folder and runs the real HTTP server on an ephemeral loopback port;
* :func:`make_manifest` makes a valid manifest with made-up provenance (the
  one test manifest: tests/kit/wirekit.py builds on it too);
* :func:`write_artifact` writes a valid artifact folder (manifest.json +
  files) with made-up bytes, the way a builder would, for publishing tests.

Imports the registry and :mod:`phi_get.manifests` only; the server extras
(uvicorn, fastapi, sqlmodel) are imported when a server starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phi_get.manifests.artifact import MANIFEST_FILENAME, file_entry
from phi_get.manifests.manifest import Manifest, manifest_from_json

if TYPE_CHECKING:  # the server extras (sqlmodel) load only when a server starts
    from .service import Registry

__all__ = ["RunningRegistry", "make_manifest", "registry_server", "write_artifact"]


@dataclass(frozen=True, kw_only=True, slots=True)
class RunningRegistry:
    url: str
    registry: Registry
    storage: Path
    db_url: str


@contextmanager
def registry_server(folder: str | os.PathLike[str], db_url: str | None = None) -> Iterator[RunningRegistry]:
    """A registry with blobs under ``folder/blobs``, served on 127.0.0.1:<ephemeral>."""
    from .server import default_db_url, open_registry, running_server

    storage = Path(folder) / "blobs"
    url = db_url or default_db_url(storage)
    registry = open_registry(url, storage)
    try:
        with running_server(registry) as base:
            yield RunningRegistry(url=base, registry=registry, storage=storage, db_url=url)
    finally:
        registry.engine.dispose()


def make_manifest(files: Sequence[tuple[str, int, str]], *, name: str = "tiny-phi", version: str = "0.1.0",
                  variant: str = "gguf-q4_k_m", targets: Sequence[str] = ("cpu-x86_64",), format: str = "gguf",
                  precision: str = "int4", quantization: str = "q4_k_m",
                  runtime: tuple[str, str] = ("llama-cpp-python", ""), weights_bytes: int | None = None,
                  kv_bytes_per_token: int = 4096, max_context: int = 4096,
                  metrics: Mapping[str, float] | None = None, architecture: Mapping[str, Any] | None = None,
                  builder: str = "phi-get test", note: str = "made-up bytes for registry tests") -> Manifest:
    """A valid manifest listing ``files`` as (path, size, sha256 hex), parsed as a published one is.

    The one test manifest of phi-get: the registry's tests use the defaults (a GGUF q4_k_m artifact),
    the device side's test kit (tests/kit/wirekit.py) its own.  ``weights_bytes`` defaults to the
    files' total size; the provenance is made up (a zero source hash, ``builder``).
    """
    doc: dict[str, Any] = {
        "schema": "phi-get.manifest/v1", "name": name, "version": version, "variant": variant,
        "format": format, "precision": precision, "quantization": quantization, "targets": list(targets),
        "runtime": {"distribution": runtime[0], "specifier": runtime[1], "provider": "cpu"},
        "memory": {"weights_bytes": weights_bytes if weights_bytes is not None else sum(f[1] for f in files),
                   "kv_bytes_per_token": kv_bytes_per_token, "max_context": max_context},
        "architecture": dict(architecture or {}),
        "files": [{"path": p, "size": s, "sha256": h} for p, s, h in files],
        "provenance": {"source": {"local_sha256": "0" * 64}, "recipe": {"id": variant}, "builder": builder,
                       "tools": {}, "command": ["test"], "created": "2026-11-26T09:00:00Z"},
        "quality": {"check": "structural", "metrics": dict(metrics or {}), "evaluation": {}, "note": note},
    }
    return manifest_from_json(doc)


def write_artifact(folder: str | os.PathLike[str], contents: Mapping[str, bytes], **manifest_fields: Any) -> Manifest:
    """Write ``contents`` (relative path -> bytes) and their manifest.json into ``folder``."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in contents.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    entries = [file_entry(root, rel) for rel in sorted(contents)]
    manifest = make_manifest([(e.path, e.size, e.sha256) for e in entries], **manifest_fields)
    (root / MANIFEST_FILENAME).write_bytes(manifest.to_bytes())
    return manifest
