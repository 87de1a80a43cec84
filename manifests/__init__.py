"""phi-get's formats: the leaf package every other part builds on.

Artifact manifests, device profiles, hardware targets, index documents,
recipes, lockfiles and their validation.  This package imports only the
standard library and ``packaging``: no network, database or model library.
"""

from __future__ import annotations

from .canonical import canonical_bytes, digest_of
from .device import DeviceProfile, parse_device_profile
from .errors import ManifestError, PhiGetError, SchemaVersionError
from .index import IndexEntry, ModelIndex, parse_model_index
from .manifest import FileEntry, Format, Manifest, Precision, parse_manifest
from .targets import SupportedTarget, supported_targets

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
