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
estimates come from the recipe's ``architecture.parameters``.

May import ``phi_get.manifests``; the backends are looked up in
``backends.py``, which imports no model library at import time.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import shutil
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phi_get.manifests.display import human_bytes
from phi_get.manifests.errors import ManifestError
from phi_get.manifests.recipe import Recipe, VariantSpec

from .backends import backend_for
from .base import runs_here

__all__ = ["PlanEntry", "check_here", "plan_recipe", "select_variants"]


@dataclass(frozen=True, kw_only=True, slots=True)
class PlanEntry:
    recipe: str
    spec: VariantSpec
    toolchain: str
    reason: str | None  # None: buildable here
    check: str  # "runtime" or "structural"
    #: What this machine needs for it, when known (check_here): memory and disk in bytes.
    needs: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def buildable(self) -> bool:
        return self.reason is None

    def to_json(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe, "variant": self.spec.id, "format": str(self.spec.format),
            "precision": str(self.spec.precision), "quantization": self.spec.quantization,
            "toolchain": self.toolchain, "targets": list(self.spec.targets),
            "runtime": self.spec.runtime.to_json(), "buildable": self.buildable,
            "reason": self.reason, "check": self.check, "needs": dict(self.needs),
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


#: Bytes of memory per parameter a conversion holds: the model in fp32, and a converted copy.
_BUILD_MEMORY_PER_PARAM = 8
#: Bytes per parameter of the source snapshot (bf16 safetensors).
_SOURCE_BYTES_PER_PARAM = 2


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
        if isinstance(params, int) and params > 0:
            needs["memory_bytes"] = params * _BUILD_MEMORY_PER_PARAM
            needs["disk_bytes"] = params * e.spec.precision.bits // 8 + (0 if local else
                                                                          params * _SOURCE_BYTES_PER_PARAM)
            if memory is not None and memory < needs["memory_bytes"]:
                problems.append(f"not enough memory: the conversion needs about {human_bytes(needs['memory_bytes'])}, "
                                f"this machine has {human_bytes(memory)} -> build on a larger machine")
            if disk is not None and disk < needs["disk_bytes"]:
                problems.append(f"not enough disk: about {human_bytes(needs['disk_bytes'])} needed, "
                                f"{human_bytes(disk)} free -> free space or pass --out on a larger disk")
        checked.append(dataclasses.replace(e, reason="; ".join(problems) or None, needs=needs))
    return checked
