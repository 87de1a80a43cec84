"""``phi-get bundle export --lock phi.lock DIR``: an air-gapped bundle (:mod:`.bundle`).

Imports typer and the standard library at import time; the bundle code when the command runs.
"""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register"]

bundle_app = typer.Typer(name="bundle", help="Air-gapped bundles: what phi.lock pins, as an OCI image layout.",
                         no_args_is_help=True)


_FOLDER = typer.Argument(..., help="The bundle folder to write (new, empty, or an earlier bundle).")
_LOCK = typer.Option(Path("phi.lock"), "--lock", help="The lock whose artifacts go in.")
_REGISTRY = typer.Option(None, "--registry", "-r", help="Fetch from these sources instead of the lock's.")
_HOME = typer.Option(None, "--home", help="The store (default: PHI_GET_HOME).")
_JSON = typer.Option(False, "--json", help="Print JSON for scripts.")


@bundle_app.command("export")
def export(folder: Path = _FOLDER, lock: Path = _LOCK, registry: list[str] | None = _REGISTRY,
           home: Path | None = _HOME, json_out: bool = _JSON) -> None:
    """Write an OCI image layout of exactly what the lock pins, with its publisher signatures (install: sync
    --locked --from DIR)."""
    from .bundle import export_bundle
    from .store import default_home

    report = export_bundle(lock, folder, home or default_home(), registries=registry)
    if json_out:
        import json

        typer.echo(json.dumps({"folder": str(report.folder), "variants": report.variants, "blobs": report.blobs,
                               "bytes": report.bytes, "signatures": report.signatures,
                               "signed_sources": list(report.signed_sources)}))
        return
    tuf = (f"TUF metadata of {', '.join(report.signed_sources)}" if report.signed_sources else
           "no TUF metadata (unsigned sources: the installing side must accept them unsigned)")
    typer.echo(f"wrote {report.folder}: {report.variants} variant(s), {report.blobs} file blob(s), "
               f"{report.bytes} bytes, {report.signatures} publisher signature(s), {tuf}; install with "
               f"`phi-get sync --locked --from {report.folder}`")


def register(app: typer.Typer) -> None:
    app.add_typer(bundle_app)
