"""Project file ``phi.toml``: the models a deployment wants and its device classes.

Read by ``phi-get lock`` (which writes ``phi.lock``) and by ``phi-get sync``
(which refuses a lock that no longer matches it).  Shape::

    [project]
    name = "kiosk-fleet"                       # optional
    registries = ["https://models.example"]    # optional; --registry overrides

    [models]
    "phi-3.5-mini" = ">=1.0"                   # a specifier ("" or "*" for any)
    "phi-4-mini" = { version = ">=1", prefer = "size", format = "gguf",
                     precision = "int4", context = 4096 }
    "phi-3-mini-4k" = { max_kl = 0.02, min_top1 = 0.95 }   # a quality budget

    [device-classes]
    edge = "profiles/pi.json"                  # a device profile file, relative to phi.toml
    gpu = "gpu-server"                         # or a sample profile shipped with phi-get

:meth:`Project.inputs` is the part of the project a lock depends on, as
plain data; a lock records its digest.

Every table refuses a key it does not know, naming the key, its table and
the nearest known key (``prefers = "size"`` used to be ignored and
the lock recorded the default).

Only the standard library (tomllib) and packaging.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from packaging.specifiers import SpecifierSet

from .canonical import load_toml_document
from .fields import Reader
from .names import check_model_name, check_specifier

__all__ = [
    "PREFER_VALUES",
    "DeviceClass",
    "ModelSpec",
    "Project",
    "parse_project",
]

PREFER_VALUES: Final = ("balanced", "quality", "size", "speed")  # balanced: the default
_FORMATS: Final = ("gguf", "onnx", "openvino", "mlx", "safetensors")
_PRECISIONS: Final = ("int4", "int8", "fp16", "bf16", "fp32")
_MAX_PROJECT_BYTES: Final = 1 << 20
_CLASS_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
#: The keys of each table: everything else is a typo to report.
_TOP_KEYS: Final = ("project", "models", "device-classes")
_PROJECT_KEYS: Final = ("name", "registries")
_MODEL_KEYS: Final = ("version", "prefer", "format", "precision", "context", "max_kl", "min_top1")


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelSpec:
    name: str
    specifier: SpecifierSet
    prefer: str = "balanced"
    format: str = ""
    precision: str = ""
    context: int = 0  # 0: the resolver's default
    #: Quality budget: the largest mean KL divergence (nats/token) accepted; None: any.
    max_kl: float | None = None
    #: Quality budget: the smallest top-1 agreement with the reference accepted; None: any.
    min_top1: float | None = None

    @property
    def requirement(self) -> str:
        return f"{self.name}{self.specifier}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "specifier": str(self.specifier), "prefer": self.prefer,
                               "format": self.format, "precision": self.precision, "context": self.context}
        # Written only when set, so the inputs digest of a project without a budget is unchanged.
        if self.max_kl is not None:
            out["max_kl"] = self.max_kl
        if self.min_top1 is not None:
            out["min_top1"] = self.min_top1
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceClass:
    name: str
    #: A profile file (relative to phi.toml) or a sample profile name.
    profile: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Project:
    name: str
    registries: tuple[str, ...]
    models: tuple[ModelSpec, ...]
    device_classes: tuple[DeviceClass, ...]

    def inputs(self) -> dict[str, Any]:
        """What a lock depends on (device profiles are added by the locker, by content)."""
        return {
            "registries": list(self.registries),
            "models": [m.to_json() for m in self.models],
            "device-classes": {c.name: c.profile for c in self.device_classes},
        }


def _model(name: str, value: object, where: str, document: str) -> ModelSpec:
    canonical = check_model_name(name, where, document)
    if isinstance(value, str):
        spec = "" if value.strip() == "*" else value
        return ModelSpec(name=canonical, specifier=check_specifier(spec, where, document))
    r = Reader(value, where, document)
    r.only(_MODEL_KEYS)
    prefer = r.text("prefer", "balanced", max_len=16)
    if prefer not in PREFER_VALUES:
        raise r.error("prefer", f"expected one of {' | '.join(PREFER_VALUES)}", prefer)
    fmt = r.text("format", "", max_len=16, allow_empty=True)
    if fmt and fmt not in _FORMATS:
        raise r.error("format", f"expected one of {' | '.join(_FORMATS)}", fmt)
    precision = r.text("precision", "", max_len=8, allow_empty=True)
    if precision and precision not in _PRECISIONS:
        raise r.error("precision", f"expected one of {' | '.join(_PRECISIONS)}", precision)
    spec = r.text("version", "", max_len=200, allow_empty=True)
    return ModelSpec(
        name=canonical,
        specifier=check_specifier("" if spec.strip() == "*" else spec, r.where("version"), document),
        prefer=prefer, format=fmt, precision=precision,
        context=r.integer("context", 0, min=0, max=1 << 24),
        max_kl=_float_or_none(r.number("max_kl", None, min=0, max=100)),
        min_top1=_float_or_none(r.number("min_top1", None, min=0, max=1)),
    )


def _float_or_none(value: int | float | None) -> float | None:
    return None if value is None else float(value)


def parse_project(data: bytes | str, *, document: str = "phi.toml") -> Project:
    """Parse and validate a ``phi.toml`` document."""
    doc = load_toml_document(data, limit=_MAX_PROJECT_BYTES, document=document)
    r = Reader(doc, "", document)
    r.only(_TOP_KEYS)
    proj = r.obj("project", {})
    proj_r = proj if isinstance(proj, Reader) else Reader(proj, "project", document)
    proj_r.only(_PROJECT_KEYS)
    models_r = r.obj("models")
    if not models_r.data:
        raise r.error("models", "declare at least one model")
    models = tuple(sorted((_model(k, v, models_r.where(k), document) for k, v in models_r.data.items()),
                          key=lambda m: m.name))
    if len({m.name for m in models}) != len(models):
        raise r.error("models", "the same model is declared twice (names are compared normalized)")
    classes_r = r.obj("device-classes")
    if not classes_r.data:
        raise r.error("device-classes", "declare at least one device class")
    classes = []
    for key in sorted(classes_r.data):
        if not key or not set(key) <= _CLASS_NAME_CHARS:
            raise classes_r.error(key, "a device class name is lower-case letters, digits, '-' and '_'", key)
        classes.append(DeviceClass(name=key, profile=classes_r.text(key, max_len=1024)))
    return Project(
        name=proj_r.text("name", "", max_len=128, allow_empty=True),
        registries=tuple(proj_r.texts("registries", [], max_items=16, max_len=2048)),
        models=models,
        device_classes=tuple(classes),
    )
