"""The build plan: one entry per variant of a recipe, with the toolchain and why not.

``phi-get build RECIPE --plan --json`` prints these entries, one JSON object
per line, so that CI can fan the build out as a job matrix (each job runs
``command``).  A variant the toolchain cannot produce here is an entry with
``buildable: false`` and its reason, never dropped.  Variants for hardware
that is not here (CUDA, DirectML) are buildable but ``check: structural``.

May import ``phi_get.manifests``; the backends are looked up in
``backends.py``, which imports no model library at import time.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from phi_get.manifests.errors import ManifestError
from phi_get.manifests.recipe import Recipe, VariantSpec

from .backends import backend_for, runs_here

__all__ = ["PlanEntry", "plan_recipe", "select_variants"]


@dataclass(frozen=True, kw_only=True, slots=True)
class PlanEntry:
    recipe: str
    spec: VariantSpec
    toolchain: str
    reason: str | None  # None: buildable here
    check: str  # "runtime" or "structural"

    @property
    def buildable(self) -> bool:
        return self.reason is None

    def to_json(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe, "variant": self.spec.id, "format": str(self.spec.format),
            "precision": str(self.spec.precision), "quantization": self.spec.quantization,
            "toolchain": self.toolchain, "targets": list(self.spec.targets),
            "runtime": self.spec.runtime.to_json(), "buildable": self.buildable,
            "reason": self.reason, "check": self.check,
            "command": ["phi-get", "build", self.recipe, "--only", self.spec.id],
        }


def select_variants(recipe: Recipe, only: str | None) -> tuple[VariantSpec, ...]:
    """The recipe's variants matching ``only`` (comma-separated ids or globs; None: all).

    A pattern that matches no variant is an error, before any work starts.
    """
    if not only:
        return recipe.variants
    picked: list[VariantSpec] = []
    for pattern in (p.strip() for p in only.split(",")):
        if not pattern:
            continue
        hits = [v for v in recipe.variants if fnmatch.fnmatchcase(v.id, pattern)]
        if not hits:
            known = ", ".join(v.id for v in recipe.variants)
            raise ManifestError(f"no variant of recipe {recipe.name!r} matches; its variants are: {known}",
                                field="--only", value=pattern, document="build request")
        picked += [v for v in hits if v not in picked]
    return tuple(v for v in recipe.variants if v in picked)


def plan_recipe(recipe: Recipe, recipe_ref: str, only: str | None = None) -> list[PlanEntry]:
    entries = []
    for spec in select_variants(recipe, only):
        backend = backend_for(spec)
        entries.append(PlanEntry(
            recipe=recipe_ref, spec=spec, toolchain=backend.toolchain, reason=backend.unavailable(spec),
            check="runtime" if runs_here(spec) else "structural",
        ))
    return entries
