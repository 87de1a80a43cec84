"""Build recipes: which variants of which model to build, from which source.

A recipe (``manifests/recipes/<name>.toml``) names a model, the version its
artifacts are published under, its source (a Hugging Face repo and revision,
or a local folder) and its variant matrix, picked by id from the variant
catalog ``manifests/recipes/variants.toml``, where each variant (format,
precision, quantization, targets, runtime) is defined once for all models.
Both are written by hand, so a key neither format knows is refused with the
nearest known one, not ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final

from packaging.version import Version

from .canonical import check_plain_data, load_toml_document
from .errors import ManifestError
from .fields import Reader
from .manifest import Format, Precision, RuntimeRequirement
from .names import check_model_name, check_variant_id, check_version
from .targets import check_target_tag

__all__ = [
    "RECIPE_SCHEMA",
    "VARIANTS_SCHEMA",
    "VariantSpec",
    "Recipe",
    "load_variant_catalog",
    "variant_from_json",
    "load_recipe",
    "recipe_names",
    "parse_recipe",
    "parse_variant_catalog",
]

RECIPE_SCHEMA: Final = "phi-get.recipe/v1"
VARIANTS_SCHEMA: Final = "phi-get.variants/v1"
_MAX_TOML: Final = 256 * 1024
_RECIPE_KEYS: Final = ("schema", "name", "version", "description", "source", "architecture", "matrix")
_SOURCE_KEYS: Final = ("repo", "revision", "local")
_MATRIX_KEYS: Final = ("variants", "extra")
_VARIANT_KEYS: Final = ("id", "format", "precision", "quantization", "targets", "runtime", "reference")
_RUNTIME_KEYS: Final = ("distribution", "specifier", "provider")


@dataclass(frozen=True, kw_only=True, slots=True)
class VariantSpec:
    id: str
    format: Format
    precision: Precision
    quantization: str
    targets: tuple[str, ...]
    runtime: RuntimeRequirement
    reference: bool = False

    def to_json(self) -> dict[str, Any]:
        """The recipe entry as recorded in a manifest's provenance."""
        return {
            "id": self.id, "format": str(self.format), "precision": str(self.precision),
            "quantization": self.quantization, "targets": list(self.targets), "runtime": self.runtime.to_json(),
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class Recipe:
    name: str
    version: Version
    description: str
    #: Hugging Face repo id, or None for a local-only source.
    repo: str | None
    revision: str | None
    architecture: Mapping[str, Any]
    variants: tuple[VariantSpec, ...] = field(default_factory=tuple)

    def variant(self, variant_id: str) -> VariantSpec:
        for v in self.variants:
            if v.id == variant_id:
                return v
        known = ", ".join(v.id for v in self.variants)
        raise ManifestError(
            f"recipe {self.name!r} has no variant {variant_id!r}; its variants are: {known}",
            field="variant", value=variant_id, document="recipe",
        )


def _variant(r: Reader) -> VariantSpec:
    r.only(_VARIANT_KEYS, "[[variant]]")
    runtime = r.obj("runtime")
    runtime.only(_RUNTIME_KEYS, "the runtime of [[variant]]")
    targets = r.texts("targets", max_items=64, max_len=32)
    for i, tag in enumerate(targets):
        check_target_tag(tag, f"{r.where('targets')}[{i}]", r.document)
    return VariantSpec(
        id=check_variant_id(r.data.get("id"), r.where("id"), r.document),
        format=r.choice("format", Format),
        precision=r.choice("precision", Precision),
        quantization=r.text("quantization", max_len=64),
        targets=tuple(targets),
        runtime=RuntimeRequirement.from_reader(runtime),
        reference=r.flag("reference", False),
    )


def variant_from_json(data: object, *, document: str = "variant") -> VariantSpec:
    """One ``[[variant]]`` entry given as data (``phi-get import``'s declared variant), validated alike."""
    return _variant(Reader(data, document=document))


def parse_variant_catalog(text: str, *, document: str = "variants.toml") -> dict[str, VariantSpec]:
    r = Reader(load_toml_document(text, limit=_MAX_TOML, document=document), document=document)
    r.schema(VARIANTS_SCHEMA)
    r.only(("schema", "variant"))
    catalog: dict[str, VariantSpec] = {}
    for vr in r.objects("variant", max_items=1000):
        spec = _variant(vr)
        if spec.id in catalog:
            raise vr.error("id", "duplicate variant id", spec.id)
        catalog[spec.id] = spec
    return catalog


def load_variant_catalog() -> dict[str, VariantSpec]:
    text = resources.files("phi_get.manifests.recipes").joinpath("variants.toml").read_text("utf-8")
    return parse_variant_catalog(text)


def parse_recipe(text: str, catalog: Mapping[str, VariantSpec], *, document: str = "recipe") -> Recipe:
    r = Reader(load_toml_document(text, limit=_MAX_TOML, document=document), document=document)
    r.schema(RECIPE_SCHEMA)
    r.only(_RECIPE_KEYS)
    source = r.obj("source")
    source.only(_SOURCE_KEYS)
    if source.flag("local", False):
        repo = revision = None
    else:
        repo = source.text("repo", max_len=200)
        revision = source.text("revision", max_len=64)
    matrix = r.obj("matrix")
    matrix.only(_MATRIX_KEYS)
    picked = matrix.data.get("variants")
    if picked == "*":
        ids = [v for v, spec in catalog.items() if not spec.reference]
    else:
        ids = list(matrix.texts("variants", max_items=1000))
    ids += matrix.texts("extra", [], max_items=1000)
    variants: list[VariantSpec] = []
    for vid in ids:
        if vid not in catalog:
            raise matrix.error("variants", f"unknown variant id; known: {', '.join(catalog)}", vid)
        if catalog[vid] in variants:
            raise matrix.error("variants", "variant listed twice", vid)
        variants.append(catalog[vid])
    arch = r.obj("architecture", {})
    if isinstance(arch, Reader):  # free-form, copied into every manifest built from the recipe
        check_plain_data(arch.data, field="architecture", document=document)
    return Recipe(
        name=check_model_name(r.text("name", max_len=128), "name", document),
        version=check_version(r.text("version", max_len=64), "version", document),
        description=r.text("description", "", max_len=1024, allow_empty=True),
        repo=repo,
        revision=revision,
        architecture=arch.data if isinstance(arch, Reader) else {},
        variants=tuple(variants),
    )


def recipe_names() -> list[str]:
    folder = resources.files("phi_get.manifests.recipes")
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir()
        if p.name.endswith(".toml") and p.name != "variants.toml"
    )


def load_recipe(name_or_path: str) -> Recipe:
    """A recipe shipped with phi-get by name (``tiny-phi``), or a TOML file path."""
    catalog = load_variant_catalog()
    if name_or_path.endswith(".toml"):
        try:
            with open(name_or_path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise ManifestError(f"cannot read recipe file: {exc.strerror}", value=name_or_path, document="recipe") from None
        return parse_recipe(text, catalog, document=name_or_path)
    names = recipe_names()
    if name_or_path not in names:
        raise ManifestError(
            f"no such recipe; shipped recipes are: {', '.join(names)} (or give a path to a .toml file)",
            value=name_or_path, document="recipe",
        )
    text = resources.files("phi_get.manifests.recipes").joinpath(name_or_path + ".toml").read_text("utf-8")
    return parse_recipe(text, catalog, document=f"recipe {name_or_path}")
