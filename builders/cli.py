"""Builder commands: ``phi-get tiny-phi`` and ``phi-get build``.

Imports only typer and the standard library at import time; the builders
(and through them torch, transformers, onnx, llama_cpp ...) are imported
inside the commands.  The libraries' own progress bars (transformers,
huggingface_hub: "Writing model shards", "Loading checkpoint shards") are
turned off before they are imported: phi-get says what it does itself, and
tqdm's carriage returns garble logs and pipes (``HF_HUB_DISABLE_PROGRESS_BARS=0``
brings them back).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def _quiet_libraries() -> None:
    """Before transformers or huggingface_hub is imported (they read it once); children inherit it."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def tiny_phi(
    out: Annotated[Path, typer.Argument(help="Folder to write the checkpoint to (Hugging Face layout).")],
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty OUT.")] = False,
    style: Annotated[str | None, typer.Option(
        "--style", help="phi3 (sentencepiece, multi-head attention; the default) or phi4 (byte-level BPE "
        "tokenizer.json, grouped-query attention, partial rotary, tied embeddings).")] = None,
    like: Annotated[str | None, typer.Option(
        "--like", help="phi-3.5-mini or phi-4-mini: that model's exact published config and vocabulary size "
        "(bf16) with --layers layers, instead of the tiny dimensions.")] = None,
    layers: Annotated[int | None, typer.Option("--layers", help="Number of layers (default 2).")] = None,
    layout: Annotated[str | None, typer.Option(
        "--layout", help="With --like: hub (rope_scaling, as the Hub's config.json; the default) or "
        "transformers5 (rope_parameters, as transformers 5 saves it).")] = None,
    trained: Annotated[bool, typer.Option(
        "--trained", help="The tiny Phi-3 with phi-get's shipped trained weights (bf16): the quality reference.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Generate a random-weight Phi checkpoint: the tiny one of tests and the demo, or a real model's dimensions."""
    _quiet_libraries()
    if trained:
        _tiny_phi_trained(out, force=force, as_json=as_json,
                          shape={"--seed": seed or None, "--style": style, "--like": like, "--layers": layers,
                                 "--layout": layout})
        return
    from phi_get.manifests.display import human_bytes

    from .errors import BuildError
    from .tiny import TinySpec, TinyStyle, make_tiny_phi

    n_layers = 2 if layers is None else layers
    if like is not None:
        if style is not None:
            raise BuildError("--style is for the tiny dimensions; --like takes the published model's")
        spec = TinySpec.like(like, layers=n_layers, seed=seed, layout=layout or "hub")
        label = f"{like} ({n_layers} layers)"
    else:
        if layout is not None:
            raise BuildError("--layout applies to --like checkpoints only")
        spec = TinySpec(seed=seed, style=style or "phi3", layers=n_layers)  # type: ignore[arg-type]  # checked (exit 2)
        label = "tiny Phi-3" if spec.style is TinyStyle.PHI3 else "tiny Phi-4-style"
    path = make_tiny_phi(out, spec, force=force)
    size = sum(p.stat().st_size for p in path.iterdir())
    if as_json:
        typer.echo(json.dumps({"path": str(path), "style": str(spec.style), "like": like, "layers": n_layers,
                               "layout": str(spec.layout) if like else None, "seed": seed, "size": size},
                              sort_keys=True))
        return
    typer.echo(f"wrote {label} checkpoint to {path} ({human_bytes(size)})")


def _tiny_phi_trained(out: Path, *, force: bool, as_json: bool, shape: dict[str, object]) -> None:
    """``tiny-phi --trained``: the shipped trained weights fix every dimension, so no shape option applies."""
    from phi_get.manifests.display import human_bytes

    from .errors import BuildError
    from .trained import make_trained_phi

    if given := [name for name, value in shape.items() if value is not None]:
        raise BuildError(f"--trained writes the one trained checkpoint phi-get ships; {', '.join(given)} cannot "
                         "change it")
    path = make_trained_phi(out, force=force)
    size = sum(p.stat().st_size for p in path.iterdir())
    if as_json:
        typer.echo(json.dumps({"path": str(path), "trained": True, "size": size}, sort_keys=True))
        return
    typer.echo(f"wrote the trained tiny Phi-3 checkpoint to {path} ({human_bytes(size)})")


def build(
    recipe: Annotated[str, typer.Argument(help="A shipped recipe name (tiny-phi, phi-3.5-mini ...) or a .toml path.")],
    source: Annotated[str | None, typer.Option(
        "--source", help="Checkpoint folder, or HF_REPO@REVISION (default: the recipe's repo and revision).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Output folder; artifacts go to OUT/<name>/<version>/<variant>/.")] = None,
    only: Annotated[str | None, typer.Option(
        "--only", help="Comma-separated variant ids or globs (gguf-*,onnx-cpu-int4).")] = None,
    plan: Annotated[bool, typer.Option("--plan", help="Print the plan (one entry per variant); build nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output: one JSON object a line.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Rebuild variants that are up to date.")] = False,
) -> None:
    """Plan and build a recipe's variant matrix into artifact folders with manifests."""
    _quiet_libraries()
    from phi_get.manifests.display import format_table
    from phi_get.manifests.recipe import load_recipe

    from .build import build_recipe
    from .errors import BuildError
    from .plan import check_here, plan_recipe

    loaded = load_recipe(recipe)
    if plan:
        entries = check_here(plan_recipe(loaded, recipe, only), loaded, source=source, out=out)
        if as_json:
            for entry in entries:
                typer.echo(json.dumps(entry.to_json(), sort_keys=True))
            return
        typer.echo(format_table(["VARIANT", "TOOLCHAIN", "CHECK", "HERE"],
                                [[e.spec.id, e.toolchain, e.check, "buildable" if e.buildable else
                                  f"cannot build here: {e.reason}"] for e in entries]))
        return
    if out is None:
        raise BuildError("--out is required to build (or pass --plan)")
    if source is None:
        if loaded.repo is None or loaded.revision is None:
            raise BuildError(f"recipe {loaded.name!r} has no hub source: pass --source DIR")
        source = f"{loaded.repo}@{loaded.revision}"

    def report(variant: str, message: str) -> None:
        typer.echo(f"[{variant}] {message}", err=True)

    results = build_recipe(loaded, source, out, only=only, reporter=report, force=force,
                           command=("phi-get", *sys.argv[1:]))
    for r in results:
        if as_json:
            typer.echo(json.dumps(r.to_json(), sort_keys=True))
        else:
            where = f" -> {r.folder}" if r.folder else ""
            why = f": {r.reason}" if r.reason else ""
            typer.echo(f"{r.variant:20} {r.outcome}{where}{why}")
    bad = [r.variant for r in results if r.outcome == "failed"]
    if bad:
        raise BuildError(f"{len(bad)} variant(s) failed: {', '.join(bad)} (nothing was left in their place)")


def register(app: typer.Typer) -> None:
    app.command("tiny-phi")(tiny_phi)
    app.command("build")(build)
