"""Building a recipe: validate, plan, skip what is up to date, build, check, rename into place.

``build_recipe`` is the one entry point (the CLI and the demo call it).
Each variant is built in a hidden temporary folder beside its final place
(``OUT/<name>/<version>/.<variant>.<host>-<pid>-<random>.tmp``, named as
:mod:`phi_get.manifests.atomic` names temps: the next build of the variant
removes one left by a build killed with ``kill -9``), checked by its runtime, given
held to the quality gate (``evaluate.quality_gate``: a runtime that computes
wrong numbers fails the variant), given its manifest, verified with
:func:`load_artifact_folder`, and only then renamed to
``OUT/<name>/<version>/<variant>/``: a folder with a ``manifest.json`` is
always a finished artifact.  A variant whose inputs (source identity, recipe
entry, tool versions) match its existing manifest is not rebuilt; an
existing artifact whose recorded quality fails today's gate is removed and
rebuilt.  Shared work lives in ``OUT/.work/<source digest>/``.

May import ``phi_get.manifests``; model libraries are imported by backends.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from phi_get import __version__
from phi_get.manifests.artifact import MANIFEST_FILENAME, file_entry, load_artifact_folder
from phi_get.manifests.atomic import fresh_temp, temp_beside
from phi_get.manifests.errors import PhiGetError
from phi_get.manifests.manifest import Manifest, MemoryNeeds, Provenance, QualityCheck
from phi_get.manifests.recipe import Recipe, VariantSpec, load_recipe
from phi_get.manifests.runtimes import run_overhead

from .backends import backend_for
from .base import BuildContext, BuildResult, Outcome, Reporter
from .checkpoint import Checkpoint, open_source
from .evaluate import METRICS, QualityGateError, Reference, load_reference, quality_gate
from .plan import plan_recipe

__all__ = ["BUILDER", "artifact_folder", "artifact_path", "build_recipe", "install_folder", "work_folder"]

BUILDER = f"phi-get {__version__}"


def _quiet(variant: str, message: str) -> None:
    pass


def artifact_path(out: Path, name: str, version: object, variant: str) -> Path:
    """Where an artifact lives under an output folder: ``OUT/<name>/<version>/<variant>/``."""
    return Path(out) / name / str(version) / variant


def work_folder(out: Path, ckpt: Checkpoint) -> Path:
    """Shared work of one source under an output folder (conversions, the reference logits)."""
    return Path(out) / ".work" / ckpt.digest[:16]


def artifact_folder(out: Path, recipe: Recipe, variant: str) -> Path:
    return artifact_path(out, recipe.name, recipe.version, variant)


def _up_to_date(folder: Path, ckpt: Checkpoint, spec: VariantSpec, tools: dict[str, str]) -> Manifest | None:
    if not (folder / MANIFEST_FILENAME).is_file():
        return None
    try:
        manifest = load_artifact_folder(folder, verify=True)
    except PhiGetError:
        return None  # damaged or foreign: rebuild
    prov = manifest.provenance
    # Keys the build itself added (phi-get-*-fixup) follow from the same
    # inputs; the tools the backend declares must all match.  The source
    # includes its precision, and a runtime check must have measured every
    # metric today's evaluation writes: manifests from before either are
    # rebuilt, not carried forward without them.
    same = (prov.source == ckpt.source and dict(prov.recipe) == spec.to_json()
            and {k: prov.tools.get(k) for k in tools} == tools
            and (manifest.quality.check is not QualityCheck.RUNTIME or METRICS <= manifest.quality.metrics.keys()))
    return manifest if same else None


def _drop_refused(folder: Path, spec: VariantSpec) -> str | None:
    """Remove an existing artifact whose recorded quality fails today's gate; the gate's reason, or None.

    It was built before the gate (or under looser limits): it must not stay
    in place looking finished, whether or not its rebuild succeeds.
    """
    if not (folder / MANIFEST_FILENAME).is_file():
        return None
    try:
        quality_gate(spec, load_artifact_folder(folder).quality)
    except QualityGateError as exc:
        old = folder.with_name(f".{folder.name}.refused-{os.getpid()}")
        os.replace(folder, old)
        shutil.rmtree(old, ignore_errors=True)
        return str(exc)
    except PhiGetError:
        return None  # damaged or foreign: _up_to_date rebuilds it
    return None


def _manifest(recipe: Recipe, spec: VariantSpec, ckpt: Checkpoint, tmp: Path, tools: dict[str, str],
              produced: object, command: tuple[str, ...]) -> Manifest:
    from .base import Produced

    assert isinstance(produced, Produced)
    rels = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
    # The runtime's own memory beyond weights + KV, as measured (manifests/runtimes.py).
    overhead, compute = run_overhead(spec.runtime.distribution, str(spec.precision),
                                     weights_bytes=produced.weights_bytes, vocab=ckpt.vocab_size,
                                     heads=ckpt.heads)
    return Manifest(
        name=recipe.name, version=recipe.version, variant=spec.id, format=spec.format,
        precision=spec.precision, quantization=spec.quantization, targets=spec.targets, runtime=spec.runtime,
        memory=MemoryNeeds(weights_bytes=produced.weights_bytes,
                           kv_bytes_per_token=ckpt.kv_bytes_per_token(produced.kv_element_bytes),
                           max_context=ckpt.max_context, overhead_bytes=overhead, compute_bytes_per_token=compute),
        files=tuple(file_entry(tmp, rel) for rel in rels),
        provenance=Provenance(
            source=ckpt.source, recipe=spec.to_json(), builder=BUILDER, tools={**tools, **produced.tools},
            command=command, created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        ),
        quality=produced.quality,
        architecture=ckpt.architecture(),
    )


def install_folder(tmp: Path, final: Path) -> None:
    """Rename a finished temporary folder into place, replacing an older build.

    The older build is moved aside under a temp name first, so a kill
    between the two renames leaves it where the next build removes it.
    """
    old = None
    if final.exists():
        old = temp_beside(final)
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _build_one(recipe: Recipe, spec: VariantSpec, ctx: BuildContext, final: Path, tools: dict[str, str],
               command: tuple[str, ...]) -> BuildResult:
    tmp = fresh_temp(final, folder=True)
    start = time.perf_counter()
    try:
        produced = backend_for(spec).build(spec, ctx, tmp)
        quality_gate(spec, produced.quality)
        built_at = time.perf_counter()
        manifest = _manifest(recipe, spec, ctx.checkpoint, tmp, tools, produced, command)
        (tmp / MANIFEST_FILENAME).write_bytes(manifest.to_bytes())
        load_artifact_folder(tmp, verify=True)
        tmp.chmod(0o755)
        install_folder(tmp, final)
    except Exception as exc:  # noqa: BLE001 - any failure of one variant is reported, its folder removed
        shutil.rmtree(tmp, ignore_errors=True)
        reason = str(exc) if isinstance(exc, PhiGetError) else f"{type(exc).__name__}: {exc}"
        return BuildResult(variant=spec.id, outcome=Outcome.FAILED, reason=reason,
                           seconds=time.perf_counter() - start)
    end = time.perf_counter()
    timings = {"toolchain": produced.toolchain_seconds,
               "check": built_at - start - produced.toolchain_seconds, "package": end - built_at}
    return BuildResult(variant=spec.id, outcome=Outcome.BUILT, folder=final, seconds=end - start,
                       digests={f.path: f.sha256 for f in manifest.files}, timings=timings)


def build_recipe(recipe: Recipe | str, source: str | Path, out: str | Path, *, only: str | None = None,
                 reporter: Reporter | None = None, force: bool = False,
                 command: tuple[str, ...] | None = None) -> list[BuildResult]:
    """Build every selected variant of ``recipe`` from ``source`` into ``out``.

    Returns one result per selected variant: built, up-to-date, unavailable
    (with the reason) or failed (with the reason; nothing left behind).
    Bad input (unknown recipe or variant, unusable source) raises before any
    long work starts.
    """
    report = reporter or _quiet
    recipe_ref = recipe if isinstance(recipe, str) else recipe.name
    if isinstance(recipe, str):
        recipe = load_recipe(recipe)
    plan = plan_recipe(recipe, recipe_ref, only)
    ckpt = open_source(source)
    out = Path(out).resolve()  # toolchains run in other working folders
    work = work_folder(out, ckpt)
    cmd = command or tuple(["phi_get.builders.build.build_recipe", recipe_ref, str(source), str(out)]
                           + ([f"--only={only}"] if only else []))
    reference: Reference | None = None
    results: list[BuildResult] = []
    for entry in plan:
        spec = entry.spec
        if entry.reason is not None:
            report(spec.id, f"unavailable: {entry.reason}")
            results.append(BuildResult(variant=spec.id, outcome=Outcome.UNAVAILABLE, reason=entry.reason))
            continue
        final = artifact_folder(out, recipe, spec.id)
        tools = backend_for(spec).tools(spec)
        if (refused := _drop_refused(final, spec)) is not None:
            report(spec.id, f"removed the existing artifact, which fails today's gate: {refused}")
        if not force and (done := _up_to_date(final, ckpt, spec, tools)) is not None:
            report(spec.id, "up to date")
            results.append(BuildResult(variant=spec.id, outcome=Outcome.UP_TO_DATE, folder=final,
                                       digests={f.path: f.sha256 for f in done.files}))
            continue
        if reference is None:
            report(spec.id, "loading (or computing) the PyTorch reference logits")
            reference = load_reference(ckpt.folder, work / "reference")
        ctx = BuildContext(checkpoint=ckpt, reference=reference, work=work, reporter=report)
        report(spec.id, f"building with {entry.toolchain}")
        result = _build_one(recipe, spec, ctx, final, tools, cmd)
        report(spec.id, f"{result.outcome} in {result.seconds:.1f}s" + (f": {result.reason}" if result.reason else ""))
        results.append(result)
    return results


def failed(results: list[BuildResult]) -> list[BuildResult]:
    return [r for r in results if r.outcome is Outcome.FAILED]


if __name__ == "__main__":  # pragma: no cover - debugging aid
    for r in build_recipe(sys.argv[1], sys.argv[2], sys.argv[3], only=sys.argv[4] if len(sys.argv) > 4 else None,
                          reporter=lambda v, m: print(v, m, file=sys.stderr)):
        print(r.to_json())
