"""Index documents: the registry's wire format, read by the resolver.

The registry and every static mirror serve the same tree of files (the wire
layout, which is API; see :data:`LAYOUT`)::

    {base}/v1/models.json                      the catalog: every model name
    {base}/v1/models/{name}/index.json         one model: every version and variant
    {base}/v1/manifests/sha256/{hex}.json      a manifest, by the digest of its bytes
    {base}/v1/blobs/sha256/{hex}               a file's bytes, by their sha256

An index entry carries what resolution needs (targets, runtime, memory,
precision, size, quality, yanked) so that choosing an artifact costs one
request; the manifest is fetched only for the chosen one, and is verified
against the digest the index gave.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from packaging.version import Version

from .canonical import canonical_bytes, load_json_document
from .fields import Reader
from .manifest import (
    Format,
    Manifest,
    MemoryNeeds,
    Precision,
    Quality,
    RuntimeRequirement,
)
from .names import MAX_FILE_SIZE, check_digest, check_model_name, check_variant_id, check_version, hex_of
from .targets import check_target_tag

__all__ = [
    "INDEX_SCHEMA",
    "CATALOG_SCHEMA",
    "LAYOUT",
    "IndexEntry",
    "ModelIndex",
    "Catalog",
    "parse_model_index",
    "parse_catalog",
    "blob_path",
    "manifest_path",
    "index_path",
]

INDEX_SCHEMA: Final = "phi-get.index/v1"
CATALOG_SCHEMA: Final = "phi-get.catalog/v1"
MAX_INDEX_BYTES: Final = 64 << 20
MAX_ENTRIES: Final = 200_000

LAYOUT: Final = {
    "catalog": "v1/models.json",
    "index": "v1/models/{name}/index.json",
    "manifest": "v1/manifests/sha256/{hex}.json",
    "blob": "v1/blobs/sha256/{hex}",
}


def index_path(name: str) -> str:
    return LAYOUT["index"].format(name=check_model_name(name))


def manifest_path(digest: str) -> str:
    return LAYOUT["manifest"].format(hex=check_digest(digest).removeprefix("sha256:"))


def blob_path(sha256_hex: str) -> str:
    return LAYOUT["blob"].format(hex=hex_of(sha256_hex))


@dataclass(frozen=True, kw_only=True, slots=True)
class IndexEntry:
    version: Version
    variant: str
    manifest: str  # "sha256:<hex>" of the manifest's canonical bytes
    format: Format
    precision: Precision
    quantization: str
    targets: tuple[str, ...]
    runtime: RuntimeRequirement
    memory: MemoryNeeds
    size: int
    quality: Quality
    #: None when installable; the reason when yanked (still installable by exact pin).
    yanked: str | None = None

    @classmethod
    def from_manifest(cls, m: Manifest, digest: str | None = None, yanked: str | None = None) -> IndexEntry:
        return cls(
            version=m.version, variant=m.variant, manifest=digest or m.digest, format=m.format,
            precision=m.precision, quantization=m.quantization, targets=m.targets, runtime=m.runtime,
            memory=m.memory, size=m.size, quality=m.quality, yanked=yanked,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": str(self.version),
            "variant": self.variant,
            "manifest": self.manifest,
            "format": str(self.format),
            "precision": str(self.precision),
            "quantization": self.quantization,
            "targets": list(self.targets),
            "runtime": self.runtime.to_json(),
            "memory": self.memory.to_json(),
            "size": self.size,
            "quality": self.quality.to_json(),
        }
        if self.yanked is not None:
            out["yanked"] = self.yanked
        return out

    @classmethod
    def from_reader(cls, r: Reader) -> IndexEntry:
        targets = r.texts("targets", max_items=64, max_len=32)
        for i, tag in enumerate(targets):
            check_target_tag(tag, f"{r.where('targets')}[{i}]", r.document)
        return cls(
            version=check_version(r.data.get("version"), r.where("version"), r.document),
            variant=check_variant_id(r.data.get("variant"), r.where("variant"), r.document),
            manifest=check_digest(r.data.get("manifest"), r.where("manifest"), r.document),
            format=r.choice("format", Format),
            precision=r.choice("precision", Precision),
            quantization=r.text("quantization", max_len=64),
            targets=tuple(targets),
            runtime=RuntimeRequirement.from_reader(r.obj("runtime")),
            memory=MemoryNeeds.from_reader(r.obj("memory")),
            size=r.integer("size", max=MAX_FILE_SIZE * 16),
            quality=Quality.from_reader(r.obj("quality")),
            yanked=r.text("yanked", None, max_len=1024),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelIndex:
    name: str
    entries: tuple[IndexEntry, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        ordered = sorted(self.entries, key=lambda e: (e.version, e.variant))
        return {"schema": INDEX_SCHEMA, "name": self.name, "variants": [e.to_json() for e in ordered]}

    def to_bytes(self) -> bytes:
        return canonical_bytes(self.to_json())


def model_index_from_json(data: object, *, document: str = "model index") -> ModelIndex:
    r = Reader(data, document=document)
    r.schema(INDEX_SCHEMA)
    entries = tuple(IndexEntry.from_reader(e) for e in r.objects("variants", max_items=MAX_ENTRIES))
    seen: set[tuple[Version, str]] = set()
    for i, e in enumerate(entries):
        if (e.version, e.variant) in seen:
            raise r.error(f"variants[{i}]", "duplicate version and variant", f"{e.version} {e.variant}")
        seen.add((e.version, e.variant))
    return ModelIndex(name=check_model_name(r.text("name", max_len=128), "name", document), entries=entries)


def parse_model_index(data: bytes | str, *, document: str = "model index") -> ModelIndex:
    return model_index_from_json(load_json_document(data, limit=MAX_INDEX_BYTES, document=document), document=document)


@dataclass(frozen=True, kw_only=True, slots=True)
class Catalog:
    """The list of models a registry or mirror serves, with a one-line summary each."""

    models: tuple[tuple[str, str], ...]  # (canonical name, latest version or "")

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": CATALOG_SCHEMA,
            "models": [{"name": n, "latest": v} for n, v in sorted(self.models)],
        }

    def to_bytes(self) -> bytes:
        return canonical_bytes(self.to_json())


def parse_catalog(data: bytes | str, *, document: str = "catalog") -> Catalog:
    r = Reader(load_json_document(data, limit=MAX_INDEX_BYTES, document=document), document=document)
    r.schema(CATALOG_SCHEMA)
    models = tuple(
        (check_model_name(m.data.get("name"), m.where("name"), document), m.text("latest", "", max_len=64, allow_empty=True))
        for m in r.objects("models", max_items=MAX_ENTRIES)
    )
    return Catalog(models=models)
