"""The builder seam: what every format backend provides, and what one build returns.

A backend (gguf, onnx_genai, openvino, mlx, pytorch) says whether it can
produce a variant here (and why not), which tool versions it would use, and
builds one variant into a temporary folder, running the artifact with its
real runtime and measuring its quality.  The orchestrator (``build.py``)
writes the manifest and renames the folder into place.

May import ``phi_get.manifests`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from phi_get.manifests.manifest import Quality
from phi_get.manifests.recipe import VariantSpec

from .checkpoint import Checkpoint
from .evaluate import Reference

__all__ = ["RUNNABLE_PROVIDERS", "Backend", "BuildContext", "BuildResult", "Outcome", "Produced", "Reporter",
           "runs_here"]

#: A progress hook: ``reporter(variant_id, message)``.
Reporter = Callable[[str, str], None]

#: Execution providers this (CPU-only) machine can run.  MLX runs on Linux
#: through mlx[cpu], so its "metal" variants are run here on the CPU.
RUNNABLE_PROVIDERS = frozenset({"cpu", "metal"})


def runs_here(spec: VariantSpec) -> bool:
    """Whether the variant's runtime provider exists on this CPU-only machine."""
    return spec.runtime.provider in RUNNABLE_PROVIDERS


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildContext:
    checkpoint: Checkpoint
    reference: Reference
    #: Shared intermediate work for this source (OUT/.work/<source digest>/).
    work: Path
    reporter: Reporter


@dataclass(frozen=True, kw_only=True, slots=True)
class Produced:
    """What a backend left in the temporary folder, measured."""

    weights_bytes: int
    #: Bytes per element of the runtime's KV cache (2 for f16, 4 for fp32).
    kv_element_bytes: int
    quality: Quality
    #: Tools that touched these bytes (distribution -> version), beyond tools().
    tools: Mapping[str, str] = field(default_factory=dict)
    #: Seconds spent in the toolchain itself (conversion, quantization, export).
    toolchain_seconds: float = 0.0


class Outcome(StrEnum):
    BUILT = "built"
    UP_TO_DATE = "up-to-date"
    UNAVAILABLE = "unavailable"
    FAILED = "failed"


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildResult:
    variant: str
    outcome: Outcome
    folder: Path | None = None
    reason: str = ""
    seconds: float = 0.0
    #: sha256 of each file, for determinism checks.
    digests: Mapping[str, str] = field(default_factory=dict)
    #: Seconds per phase: toolchain, check (runtime + quality), package (manifest, verify, rename).
    timings: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"variant": self.variant, "outcome": str(self.outcome),
                "folder": str(self.folder) if self.folder else None, "reason": self.reason,
                "seconds": round(self.seconds, 3), "digests": dict(self.digests),
                "timings": {k: round(v, 3) for k, v in self.timings.items()}}


class Backend(Protocol):
    """One artifact format's toolchain."""

    #: Short toolchain name shown in plans ("llama.cpp", "onnxruntime-genai" ...).
    toolchain: str

    def unavailable(self, spec: VariantSpec) -> str | None:
        """Why ``spec`` cannot be built and run here, or None when it can."""

    def tools(self, spec: VariantSpec) -> dict[str, str]:
        """Exact versions of the tools that would build ``spec`` (cheap: no build)."""

    def build(self, spec: VariantSpec, ctx: BuildContext, dest: Path) -> Produced:
        """Write the artifact's files into ``dest`` (empty, temporary) and check them."""
