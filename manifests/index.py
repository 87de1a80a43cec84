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

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Final

from packaging.version import Version

from .canonical import canonical_bytes, load_json_document
from .errors import ManifestError
from .fields import MISSING, Reader
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
    #: The source checkpoint's precision (the manifest's ``provenance.source.precision``),
    #: when known; optional key ``source_precision``, written only when set.
    source_precision: Precision | None = None

    @classmethod
    def from_manifest(cls, m: Manifest, digest: str | None = None, yanked: str | None = None) -> IndexEntry:
        return cls(
            version=m.version, variant=m.variant, manifest=digest or m.digest, format=m.format,
            precision=m.precision, quantization=m.quantization, targets=m.targets, runtime=m.runtime,
            memory=m.memory, size=m.size, quality=m.quality, yanked=yanked,
            source_precision=m.provenance.source.precision,
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
        if self.source_precision is not None:
            out["source_precision"] = str(self.source_precision)
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
            source_precision=r.choice("source_precision", Precision, None),
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


_FORMATS: Final = {m.value: m for m in Format}
_PRECISIONS: Final = {m.value: m for m in Precision}
_MAX_ENTRY_SIZE: Final = MAX_FILE_SIZE * 16


class _EntryParser:
    """Parses the entries of one index document, reusing what earlier entries proved valid.

    Most entries of an index repeat the same runtime, memory, quality,
    targets, version and variant id.  An entry whose parts all equal parts
    that :meth:`IndexEntry.from_reader` already accepted in this document is
    built from those parsed parts after cheap checks of its own scalars;
    anything else (a new part, or any value a check does not accept) goes
    through :meth:`IndexEntry.from_reader`, which validates every field and
    raises the error, with its path, exactly as before.  Cache keys hold
    only values equal to accepted ones, with types kept apart where JSON's
    ``1``, ``1.0`` and ``true`` would compare equal in Python.
    """

    __slots__ = (
        "document",
        "memories",
        "qualities",
        "quantizations",
        "runtimes",
        "targets",
        "variants",
        "version_ids",
        "versions",
    )

    def __init__(self, document: str) -> None:
        self.document = document
        self.runtimes: dict[tuple[object, ...], RuntimeRequirement] = {}
        self.memories: dict[tuple[Any, ...], MemoryNeeds] = {}
        self.qualities: dict[tuple[object, ...], Quality] = {}
        self.targets: dict[tuple[object, ...], tuple[str, ...]] = {}
        self.versions: dict[str, Version] = {}
        self.variants: set[str] = set()
        self.quantizations: set[str] = set()
        #: Equal versions share one small id, so duplicate checks hash ints, not Versions.
        self.version_ids: dict[Version, int] = {}

    def parse(self, item: object, i: int) -> IndexEntry:
        if type(item) is dict:
            try:
                entry = self._reuse(item)
            except (TypeError, ManifestError):  # an unhashable or bad value: the full check names it
                entry = None
            if entry is not None:
                return entry
        entry = IndexEntry.from_reader(Reader(item, f"variants[{i}]", self.document))
        self._learn(item, entry)  # type: ignore[arg-type]  # Reader accepted it: a dict
        version = self.versions[item["version"]]  # type: ignore[index]
        # One Version object per version string: consumers group entries by it cheaply.
        return entry if version is entry.version else replace(entry, version=version)

    def version_id(self, v: Version) -> int:
        return self.version_ids.setdefault(v, len(self.version_ids))

    # Keys: what from_reader reads of each part, MISSING where a key is absent.
    @staticmethod
    def _runtime_key(rt: dict[str, Any]) -> tuple[object, ...]:
        return (rt.get("distribution", MISSING), rt.get("specifier", MISSING), rt.get("provider", MISSING))

    @staticmethod
    def _quality_key(q: dict[str, Any]) -> tuple[object, ...] | None:
        metrics, evaluation = q.get("metrics", MISSING), q.get("evaluation", MISSING)
        mkey: object = metrics
        if type(metrics) is dict:
            for value in metrics.values():  # -0.0 == 0.0 in Python: a zero is never reused
                if type(value) is float and value == 0:
                    return None
            mkey = (tuple(metrics.items()), tuple(map(type, metrics.values())))  # types: 1, 1.0, true apart
        elif metrics is not MISSING:
            return None
        ekey: object = evaluation
        if type(evaluation) is dict:
            ekey = tuple(evaluation.items())
        elif evaluation is not MISSING:
            return None
        return (q.get("check", MISSING), mkey, ekey, q.get("note", MISSING))

    def _reuse(self, d: dict[str, Any]) -> IndexEntry | None:
        """The entry built from already-accepted parts, or None when any part is new or doubtful."""
        version = self.versions.get(d.get("version"))  # type: ignore[arg-type]
        variant, quant = d.get("variant"), d.get("quantization")
        fmt, precision = _FORMATS.get(d.get("format")), _PRECISIONS.get(d.get("precision"))  # type: ignore[arg-type]
        size, rt, mem, q = d.get("size"), d.get("runtime"), d.get("memory"), d.get("quality")
        if (version is None or fmt is None or precision is None or type(variant) is not str
                or variant not in self.variants or type(quant) is not str or quant not in self.quantizations
                or type(size) is not int or not 0 <= size <= _MAX_ENTRY_SIZE
                or type(rt) is not dict or type(mem) is not dict or type(q) is not dict):
            return None
        targets = d.get("targets")
        if type(targets) is not list:
            return None
        tags = self.targets.get(tuple(targets))
        runtime = self.runtimes.get(self._runtime_key(rt))
        mkey = _memory_key(mem)
        if any(type(v) is not int for v in mkey):
            return None
        memory = self.memories.get(mkey)
        qkey = self._quality_key(q)
        quality = self.qualities.get(qkey) if qkey is not None else None
        yanked = d.get("yanked")
        if yanked is not None and (type(yanked) is not str or not yanked or len(yanked) > 1024 or "\x00" in yanked):
            return None
        if tags is None or runtime is None or memory is None or quality is None:
            return None
        source = d.get("source_precision")
        source_precision = None if source is None else _PRECISIONS.get(source) if type(source) is str else None
        if source is not None and source_precision is None:
            return None
        return IndexEntry(
            version=version, variant=variant, manifest=check_digest(d.get("manifest")), format=fmt,
            precision=precision, quantization=quant, targets=tags, runtime=runtime, memory=memory, size=size,
            quality=quality, yanked=yanked, source_precision=source_precision,
        )

    def _learn(self, d: dict[str, Any], e: IndexEntry) -> None:
        """Remember the parts of an entry that from_reader accepted (the first object of each stays shared)."""
        self.versions.setdefault(d["version"], e.version)
        self.variants.add(e.variant)
        self.quantizations.add(e.quantization)
        try:
            self.targets.setdefault(tuple(d["targets"]), e.targets)
            self.runtimes.setdefault(self._runtime_key(d["runtime"]), e.runtime)
            mem = d["memory"]
            self.memories.setdefault(_memory_key(mem), e.memory)
            qkey = self._quality_key(d["quality"])
            if qkey is not None:
                self.qualities.setdefault(qkey, e.quality)
        except TypeError:  # an unhashable part this check ignores (an unread key's value): not reused
            pass


def _memory_key(mem: dict[str, Any]) -> tuple[Any, ...]:
    """Every field MemoryNeeds reads (the optional ones as their default), so equal keys mean equal needs."""
    return (mem.get("weights_bytes"), mem.get("kv_bytes_per_token"), mem.get("max_context"),
            mem.get("overhead_bytes", 0), mem.get("compute_bytes_per_token", 0))


def model_index_from_json(data: object, *, document: str = "model index") -> ModelIndex:
    r = Reader(data, document=document)
    r.schema(INDEX_SCHEMA)
    items = r.array("variants", max_items=MAX_ENTRIES)
    parser = _EntryParser(document)
    entries = tuple(parser.parse(item, i) for i, item in enumerate(items))
    seen: set[tuple[int, str]] = set()
    for i, e in enumerate(entries):
        key = (parser.version_id(e.version), e.variant)
        if key in seen:
            raise r.error(f"variants[{i}]", "duplicate version and variant", f"{e.version} {e.variant}")
        seen.add(key)
    return ModelIndex(name=check_model_name(r.text("name", max_len=128), "name", document), entries=entries)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large document is turned into objects.

    Parsing 100,000 entries allocates millions of objects, none in cycles,
    and each allocation burst triggers full collections that scan all of
    them again: about half the parse time.  The collector's previous state
    is restored afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse_model_index(data: bytes | str, *, document: str = "model index") -> ModelIndex:
    with _collector_paused():
        doc = load_json_document(data, limit=MAX_INDEX_BYTES, document=document)
        return model_index_from_json(doc, document=document)


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
