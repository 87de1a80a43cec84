"""The build plan: one entry per variant of a recipe, with the toolchain and why not.

``phi-get build RECIPE --plan --json`` prints these entries, one JSON object
per line, so that CI can fan the build out as a job matrix (each job runs
``command``).  A variant the toolchain cannot produce here is an entry with
``buildable: false`` and its reason, never dropped.  Variants for hardware
that is not here (CUDA, DirectML) are buildable but ``check: structural``.

:func:`check_here` adds what this machine lacks for each buildable entry
(``build --plan`` shows it): access to the Hugging Face Hub when the source
is the recipe's repo, memory to hold the model in fp32 while converting,
and disk for the source snapshot and the artifact, each with the fix.  The
figures come from the recipe's ``architecture.parameters``: for a variant
``data/build_costs.json`` has measurements of (``bench/build_real_scale.py
--write-costs``: peak memory of the build's whole process tree and peak disk
of its output at two layer counts of a real-dimension checkpoint), the line
through them in the parameter count; else an estimate (the model in fp32 and
a converted copy).  ``needs_basis`` says which, and from what.

May import ``phi_get.manifests``; the backends are looked up in
``backends.py``, which imports no model library at import time.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import shutil
import socket
import urllib.parse
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from phi_get.manifests.display import human_bytes
from phi_get.manifests.errors import ManifestError
from phi_get.manifests.recipe import Recipe, VariantSpec

from .backends import backend_for
from .base import runs_here

__all__ = ["PlanEntry", "build_costs", "check_here", "expected_needs", "plan_recipe", "select_variants"]


@dataclass(frozen=True, kw_only=True, slots=True)
class PlanEntry:
    recipe: str
    spec: VariantSpec
    toolchain: str
    reason: str | None  # None: buildable here
    check: str  # "runtime" or "structural"
    #: What this machine needs for it, when known (check_here): memory and disk in bytes.
    needs: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Where ``needs`` comes from ("measured: ..." or "estimated: ..."); "" when there are none.
    needs_basis: str = ""

    @property
    def buildable(self) -> bool:
        return self.reason is None

    def to_json(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe, "variant": self.spec.id, "format": str(self.spec.format),
            "precision": str(self.spec.precision), "quantization": self.spec.quantization,
            "toolchain": self.toolchain, "targets": list(self.spec.targets),
            "runtime": self.spec.runtime.to_json(), "buildable": self.buildable,
            "reason": self.reason, "check": self.check, "needs": dict(self.needs), "needs_basis": self.needs_basis,
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


#: Bytes of memory per parameter a conversion holds, where nothing was measured: the model in fp32, and a converted copy.
_BUILD_MEMORY_PER_PARAM = 8
#: Bytes per parameter of the source snapshot (bf16 safetensors).
_SOURCE_BYTES_PER_PARAM = 2
#: The model whose measurements stand in for a recipe with none of its own.
_DEFAULT_COST_MODEL = "phi-3.5-mini"


@cache
def build_costs() -> dict[str, Any]:
    """data/build_costs.json: per model and variant, two measured points (parameters, peak memory, peak disk)."""
    text = resources.files("phi_get.builders").joinpath("data/build_costs.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _line(points: list[list[int]], x: int) -> int:
    """The value at ``x`` of the line through two (x, y) points, never below the larger measured y: two
    nearly equal measurements (the noise larger than one layer's share) can make the line fall, and a
    bigger model does not need less than a smaller one was measured to take."""
    (x1, y1), (x2, y2) = points
    return max(round(y1 + (y2 - y1) * (x - x1) / (x2 - x1)), y1, y2)


def expected_needs(recipe: Recipe, spec: VariantSpec, params: int) -> tuple[dict[str, int], str]:
    """(memory_bytes, disk_bytes of the build's output) for ``params`` parameters, and their basis."""
    costs = build_costs()["costs"]
    model = recipe.name if spec.id in costs.get(recipe.name, {}) else _DEFAULT_COST_MODEL
    measured = costs.get(model, {}).get(spec.id)
    if measured is None:
        return ({"memory_bytes": params * _BUILD_MEMORY_PER_PARAM, "disk_bytes": params * spec.precision.bits // 8},
                f"estimated: {_BUILD_MEMORY_PER_PARAM} bytes of memory per parameter, the artifact's bits per weight")
    p1, p2 = measured["parameters"]
    needs = {"memory_bytes": _line([[p1, measured["memory_bytes"][0]], [p2, measured["memory_bytes"][1]]], params),
             "disk_bytes": _line([[p1, measured["disk_bytes"][0]], [p2, measured["disk_bytes"][1]]], params)}
    layers = " and ".join(str(n) for n in measured["layers"])
    return needs, (f"measured: peak of the build's process tree and of its output folder with {layers} layers of "
                   f"{model}'s real dimensions, extrapolated linearly in the parameter count")


def _hub_reachable(timeout: float = 2.0) -> str | None:
    """None when the Hub answers a TCP connection; else why not (offline mode, DNS, refused)."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return "HF_HUB_OFFLINE is set"
    endpoint = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"{host}:{port} cannot be reached ({exc.strerror or exc})"
    return None


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _free_disk(out: Path | None) -> int | None:
    folder = (out or Path.cwd()).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def check_here(entries: list[PlanEntry], recipe: Recipe, *, source: str | None, out: Path | None) -> list[PlanEntry]:
    """The entries with what this machine lacks added to their reasons, each with its fix."""
    local = source is not None and ("@" not in source or Path(source).is_dir())
    # A recipe without a repo is always built from --source DIR: no Hub to reach.
    hub_problem = _hub_reachable() if not local and recipe.repo is not None else None
    params = recipe.architecture.get("parameters")
    memory, disk = _memory_bytes(), _free_disk(out)
    checked = []
    for e in entries:
        problems = [e.reason] if e.reason else []
        needs: dict[str, int] = {}
        if hub_problem:
            problems.append(f"no Hugging Face Hub access ({hub_problem}) -> pass --source DIR (a local checkpoint)")
        basis = ""
        if isinstance(params, int) and params > 0:
            needs, basis = expected_needs(recipe, e.spec, params)
            if not local:
                needs["disk_bytes"] += params * _SOURCE_BYTES_PER_PARAM
            if memory is not None and memory < needs["memory_bytes"]:
                problems.append(f"not enough memory: the build needs about {human_bytes(needs['memory_bytes'])}, "
                                f"this machine has {human_bytes(memory)} -> build on a larger machine")
            if disk is not None and disk < needs["disk_bytes"]:
                problems.append(f"not enough disk: about {human_bytes(needs['disk_bytes'])} needed, "
                                f"{human_bytes(disk)} free -> free space or pass --out on a larger disk")
        checked.append(dataclasses.replace(e, reason="; ".join(problems) or None, needs=needs, needs_basis=basis))
    return checked
