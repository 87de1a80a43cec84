"""Helpers for tests and benches: a registry on loopback and artifact folders.

* :func:`registry_server` opens a registry (SQLite file by default) in a
  folder and runs the real HTTP server on an ephemeral loopback port;
* :func:`write_artifact` writes a valid artifact folder (manifest.json +
  files) with made-up bytes, the way a builder would, for publishing tests.

Imports the registry and :mod:`phi_get.manifests` only; the server extras
(uvicorn, fastapi, sqlmodel) are imported when a server starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from phi_get.manifests.artifact import MANIFEST_FILENAME, file_entry
from phi_get.manifests.manifest import (
    Format,
    Manifest,
    MemoryNeeds,
    Precision,
    Provenance,
    Quality,
    QualityCheck,
    RuntimeRequirement,
    Source,
)
from phi_get.manifests.names import check_version

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


def make_manifest(files: list[tuple[str, int, str]], *, name: str = "tiny-phi", version: str = "0.1.0",
                  variant: str = "gguf-q4_k_m", targets: tuple[str, ...] = ("cpu-x86_64",)) -> Manifest:
    """A valid manifest listing ``files`` as (path, size, sha256 hex)."""
    from phi_get.manifests.manifest import FileEntry

    return Manifest(
        name=name, version=check_version(version), variant=variant, format=Format.GGUF,
        precision=Precision.INT4, quantization="q4_k_m", targets=targets,
        runtime=RuntimeRequirement(distribution="llama-cpp-python"),
        memory=MemoryNeeds(weights_bytes=sum(f[1] for f in files), kv_bytes_per_token=4096, max_context=4096),
        files=tuple(FileEntry(path=p, size=s, sha256=h) for p, s, h in files),
        provenance=Provenance(source=Source(local_sha256="0" * 64), recipe={"id": variant},
                              builder="phi-get test", tools={}, command=("test",),
                              created="2026-11-26T09:00:00Z"),
        quality=Quality(check=QualityCheck.STRUCTURAL, note="made-up bytes for registry tests"),
    )


def write_artifact(folder: str | os.PathLike[str], contents: Mapping[str, bytes], **manifest_fields: str) -> Manifest:
    """Write ``contents`` (relative path -> bytes) and their manifest.json into ``folder``."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in contents.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    entries = [file_entry(root, rel) for rel in sorted(contents)]
    manifest = make_manifest([(e.path, e.size, e.sha256) for e in entries], **manifest_fields)  # type: ignore[arg-type]
    (root / MANIFEST_FILENAME).write_bytes(manifest.to_bytes())
    return manifest
