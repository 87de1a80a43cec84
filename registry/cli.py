"""Registry commands: ``phi-get publish`` and ``phi-get registry serve|export|gc|token|yank``.

Imports only typer and the standard library at import time; the server
stack (sqlmodel, fastapi, uvicorn) and httpx are imported inside commands.
Errors are raised, never printed here: the root CLI renders PhiGetError.
The publish token comes from ``--token`` or ``PHI_GET_TOKEN`` and is never
echoed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:  # only for annotations: never imported when the CLI starts
    from sqlalchemy.engine import Engine

    from .service import Registry

__all__ = ["register"]

registry_app = typer.Typer(name="registry", help="Run and administer a phi-get registry.",
                           no_args_is_help=True, rich_markup_mode=None)
token_app = typer.Typer(name="token", help="Mint, list and revoke publish/admin tokens.",
                        no_args_is_help=True, rich_markup_mode=None)
registry_app.add_typer(token_app)

_STORAGE_HELP = "Blob storage folder (content-addressed)."
_DB_HELP = "Catalog database: sqlite:///PATH or postgresql://user@host:port/db (default: a SQLite file in --storage)."
_TOKEN_ENV = "PHI_GET_TOKEN"


def _open(db: str | None, storage: Path) -> Registry:
    from .server import default_db_url, open_registry

    return open_registry(db or default_db_url(storage), storage)


def _engine(db: str | None, storage: Path) -> Engine:
    """The catalog alone (token commands): no blob store is opened or created."""
    from .db import create_schema, make_engine
    from .server import default_db_url

    if db is None:
        storage.mkdir(parents=True, exist_ok=True)
    engine = make_engine(db or default_db_url(storage))
    create_schema(engine)
    return engine


@registry_app.command("serve")
def serve(
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    storage: Path = typer.Option(Path("registry-data"), "--storage", help=_STORAGE_HELP),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8470, "--port", help="TCP port to listen on."),
    max_blob_size: int = typer.Option(64 << 30, "--max-blob-size", help="Largest blob upload accepted, in bytes."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="Log one line per request."),
) -> None:
    """Serve the registry over HTTP (the wire layout, publishing, OpenAPI at /docs)."""
    from .db import redact_url
    from .server import default_db_url, open_registry
    from .server import serve as run

    url = db or default_db_url(storage)
    registry = open_registry(url, storage, max_blob_size=max_blob_size)
    typer.echo(f"phi-get registry: catalog {redact_url(url)}, blobs {storage}, http://{host}:{port}", err=True)
    run(registry, host=host, port=port, access_log=access_log)


@registry_app.command("export")
def export(
    out: Path = typer.Argument(..., help="Folder to write the static mirror to (created or updated)."),
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    storage: Path = typer.Option(Path("registry-data"), "--storage", help=_STORAGE_HELP),
) -> None:
    """Write a static mirror (catalog, indexes, manifests, blobs) servable as plain files or file://."""
    from .export import export_mirror

    report = export_mirror(_open(db, storage), out)
    typer.echo(f"exported {report.models} model(s), {report.manifests} manifest(s), "
               f"{report.blobs_written} blob(s) written ({report.bytes_written} bytes), "
               f"{report.blobs_kept} kept, to {out}")


@registry_app.command("gc")
def gc(
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    storage: Path = typer.Option(Path("registry-data"), "--storage", help=_STORAGE_HELP),
    grace: float = typer.Option(3600.0, "--grace-seconds",
                                help="Spare unreferenced blobs and uploads younger than this (publishes in flight)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only report what would be deleted."),
) -> None:
    """Delete blobs no committed manifest references, and abandoned uploads."""
    report = _open(db, storage).gc(grace_s=grace, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    typer.echo(f"{verb} {len(report.blobs_deleted)} blob(s) ({report.bytes_freed} bytes), "
               f"removed {report.uploads_removed} abandoned upload(s), kept {report.blobs_kept} blob(s)")


@token_app.command("create")
def token_create(
    scope: list[str] = typer.Option(..., "--scope", help="admin, publish:* or publish:<model>; repeatable."),
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    storage: Path = typer.Option(Path("registry-data"), "--storage", help=_STORAGE_HELP),
    expires_in: float | None = typer.Option(None, "--expires-in", help="Seconds until it expires."),
    note: str = typer.Option("", "--note", help="What the token is for."),
) -> None:
    """Mint a token and print it (only it) to stdout; it is shown once and stored hashed."""
    from .tokens import mint_token

    token = mint_token(_engine(db, storage), scope, expires_in_s=expires_in, note=note)
    sys.stdout.write(token + "\n")


@token_app.command("list")
def token_list(
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    storage: Path = typer.Option(Path("registry-data"), "--storage", help=_STORAGE_HELP),
) -> None:
    """List tokens (id, scopes, note, times); secrets are never stored or shown."""
    from .tokens import list_tokens

    for row in list_tokens(_engine(db, storage)):
        typer.echo(json.dumps(row, sort_keys=True))


@token_app.command("revoke")
def token_revoke(
    token_id: str = typer.Argument(..., help="The token's id (the hex after 'phig_')."),
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    storage: Path = typer.Option(Path("registry-data"), "--storage", help=_STORAGE_HELP),
) -> None:
    """Revoke a token: requests with it get 401 from now on."""
    from .tokens import revoke_token

    revoke_token(_engine(db, storage), token_id)
    typer.echo(f"revoked token {token_id}")


@registry_app.command("yank")
def yank(
    name: str = typer.Argument(..., help="Model name."),
    version: str = typer.Argument(..., help="Version to yank."),
    reason: str | None = typer.Option(None, "--reason", help="Why (shown to resolvers)."),
    variant: str | None = typer.Option(None, "--variant", help="Only this variant."),
    undo: bool = typer.Option(False, "--undo", help="Un-yank instead."),
    registry: str = typer.Option(..., "--registry", help="Registry base URL."),
    token: str | None = typer.Option(None, "--token", envvar=_TOKEN_ENV, show_envvar=True,
                                        help="Publish token for the model (or admin)."),
) -> None:
    """Yank a version (hidden from new resolutions, still installable by exact pin), or --undo it."""
    import httpx

    from .client import raise_for_error
    from .errors import BadRequestError

    if not undo and not reason:
        raise BadRequestError("yanking needs --reason (it is shown to everyone resolving this model)")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    path = f"/v1/models/{name}/versions/{version}/yank"
    with httpx.Client(base_url=registry.rstrip("/"), headers=headers, timeout=60) as client:
        if undo:
            r = client.delete(path, params={"variant": variant} if variant else None)
        else:
            r = client.post(path, json={"reason": reason, "variant": variant})
    raise_for_error(r, f"{'un-yanking' if undo else 'yanking'} {name} {version}")
    typer.echo(f"{'un-yanked' if undo else 'yanked'} {name} {version}: {r.json()}")


def publish(
    folder: Path = typer.Argument(..., help="An artifact folder, or a folder holding several."),
    registry: str = typer.Option(..., "--registry", help="Registry base URL, e.g. http://127.0.0.1:8470."),
    token: str | None = typer.Option(None, "--token", envvar=_TOKEN_ENV, show_envvar=True,
                                        help="Publish token (prefer the environment variable)."),
    parallel: int = typer.Option(4, "--parallel", min=1, max=32, help="Concurrent blob uploads."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """Publish every artifact folder at or under FOLDER: missing blobs first, then the manifest."""
    from .client import publish_tree

    progress = None if quiet else _progress_printer()
    report = publish_tree(folder, registry, token, progress=progress, parallel=parallel)
    for a in report.artifacts:
        state = "published" if a.created else "already published"
        typer.echo(f"{state} {a.name} {a.version} {a.variant} {a.digest} "
                   f"(uploaded {a.blobs_uploaded} blob(s), {a.bytes_uploaded} bytes; {a.blobs_skipped} present)")


def _progress_printer() -> Callable[[str, str, int], None]:
    """Progress on stderr: one line per blob event, bytes summed per file."""
    import threading

    lock = threading.Lock()
    sent: dict[str, int] = {}

    def report(event: str, detail: str, n: int) -> None:
        with lock:
            if event == "upload":
                before = sent.get(detail, 0)
                sent[detail] = before + n
                if before == 0:
                    typer.echo(f"uploading {detail}", err=True)
            elif event == "skip":
                typer.echo(f"present   {detail} ({n} bytes), not sent", err=True)
            elif event == "commit":
                total = sum(sent.values())
                typer.echo(f"committed {detail} after uploading {total} bytes", err=True)
                sent.clear()

    return report


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app)
    app.command("publish")(publish)
