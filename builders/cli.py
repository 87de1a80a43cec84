"""Builder commands: ``phi-get tiny-phi`` (and, with the builders, ``build``).

Imports only typer and the standard library at import time.
"""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register"]


def tiny_phi(
    out: Path = typer.Argument(..., help="Folder to write the checkpoint to (Hugging Face layout)."),
    seed: int = typer.Option(0, help="Seed of the random weights."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty OUT."),
) -> None:
    """Generate the tiny random-weight Phi-3 checkpoint used by tests and the demo."""
    from .tiny import TinySpec, make_tiny_phi

    path = make_tiny_phi(out, TinySpec(seed=seed), force=force)
    size = sum(p.stat().st_size for p in path.iterdir())
    typer.echo(f"wrote tiny Phi-3 checkpoint to {path} ({size / 1e6:.1f} MB)")


def register(app: typer.Typer) -> None:
    app.command("tiny-phi")(tiny_phi)
