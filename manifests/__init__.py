"""phi-get's formats: the leaf package every other part builds on.

Artifact manifests, device profiles, hardware targets, index documents,
recipes, lockfiles and their validation.  This package imports only the
standard library and ``packaging``: no network, database or model library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .canonical import canonical_bytes, digest_of
    from .device import DeviceProfile, parse_device_profile
    from .errors import ManifestError, PhiGetError, SchemaVersionError
    from .index import IndexEntry, ModelIndex, parse_model_index
    from .manifest import FileEntry, Format, Manifest, Precision, parse_manifest
    from .targets import SupportedTarget, supported_targets

#: Where each name of the package lives.  Loaded on first use (PEP 562): ``phi-get --version``
#: and the error table need ``errors`` only, not every format.
_HOME: dict[str, str] = {
    "canonical_bytes": "canonical", "digest_of": "canonical",
    "DeviceProfile": "device", "parse_device_profile": "device",
    "ManifestError": "errors", "PhiGetError": "errors", "SchemaVersionError": "errors",
    "IndexEntry": "index", "ModelIndex": "index", "parse_model_index": "index",
    "FileEntry": "manifest", "Format": "manifest", "Manifest": "manifest", "Precision": "manifest",
    "parse_manifest": "manifest",
    "SupportedTarget": "targets", "supported_targets": "targets",
}

__all__ = [
    "DeviceProfile",
    "FileEntry",
    "Format",
    "IndexEntry",
    "Manifest",
    "ManifestError",
    "ModelIndex",
    "PhiGetError",
    "Precision",
    "SchemaVersionError",
    "SupportedTarget",
    "canonical_bytes",
    "digest_of",
    "parse_device_profile",
    "parse_manifest",
    "parse_model_index",
    "supported_targets",
]


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
