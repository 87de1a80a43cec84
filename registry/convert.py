"""Conversions between catalog rows and the wire documents of manifests/.

ORM rows stay inside ``registry/``; what leaves is built here from the
validated types of :mod:`phi_get.manifests` (IndexEntry, ModelIndex, Catalog),
so the live registry and an exported mirror serve byte-identical documents.

Imports :mod:`phi_get.manifests` and the registry's own tables only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from packaging.version import Version
from phi_get.manifests.canonical import canonical_bytes
from phi_get.manifests.fields import Reader
from phi_get.manifests.index import Catalog, IndexEntry, ModelIndex
from phi_get.manifests.manifest import Manifest

from .tables import VariantRow

__all__ = ["catalog_of", "entry_json", "entry_of", "latest_version", "model_index_of"]


def entry_json(manifest: Manifest, digest: str) -> str:
    """The stored form of a variant's index entry (``yanked`` is a column)."""
    return canonical_bytes(IndexEntry.from_manifest(manifest, digest).to_json()).decode("utf-8")


def entry_of(row: VariantRow) -> IndexEntry:
    data = json.loads(row.entry)
    data.pop("yanked", None)
    if row.yanked is not None:
        data["yanked"] = row.yanked
    return IndexEntry.from_reader(Reader(data, document=f"catalog entry {row.model} {row.version} {row.variant}"))


def model_index_of(name: str, rows: Iterable[VariantRow]) -> ModelIndex:
    return ModelIndex(name=name, entries=tuple(entry_of(r) for r in rows))


def latest_version(rows: Iterable[VariantRow | IndexEntry]) -> str:
    """The highest version with at least one variant not yanked ("" if none); catalog rows or index entries."""
    versions = [Version(str(r.version)) for r in rows if r.yanked is None]
    return str(max(versions)) if versions else ""


def catalog_of(models: dict[str, list[VariantRow]]) -> Catalog:
    return Catalog(models=tuple((name, latest_version(rows)) for name, rows in sorted(models.items())))
