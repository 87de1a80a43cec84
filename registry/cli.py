"""Registry commands: ``phi-get publish``, ``phi-get import`` and ``phi-get registry serve|export|gc|token|yank``.

Imports only typer and the standard library at import time; the server
stack (sqlmodel, fastapi, uvicorn) and httpx are imported inside commands.
Errors are raised, never printed here: the root CLI renders PhiGetError.
The publish token comes from ``--token`` or ``PHI_GET_TOKEN`` and is never
echoed.

Where the registry lives (every administration command: serve, token,
export, gc) is found in one place, :func:`_locate`: ``--storage``/``--db``,
else ``PHI_GET_REGISTRY_STORAGE``/``PHI_GET_REGISTRY_DB``, else
``storage``/``db`` in the config file (``PHI_GET_REGISTRY_CONFIG``, default
``~/.config/phi-get/registry.toml``).  ``serve`` and ``token create`` create
a registry where they are told to; the other commands refuse a location that
holds no registry (exit 3) instead of creating an empty one.  The commands
that talk to a running registry (publish, yank) take ``--registry``/``-r``
or ``PHI_GET_REGISTRY``, as the device side does.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:  # only for annotations: never imported when the CLI starts
    from sqlalchemy.engine import Engine

    from .advice import Advisor
    from .service import Registry

__all__ = ["register"]

registry_app = typer.Typer(name="registry", help="Run and administer a phi-get registry.",
                           no_args_is_help=True, rich_markup_mode=None)
token_app = typer.Typer(name="token", help="Mint, list and revoke publish/admin tokens.",
                        no_args_is_help=True, rich_markup_mode=None)
registry_app.add_typer(token_app)

_STORAGE_ENV, _DB_ENV, _CONFIG_ENV = "PHI_GET_REGISTRY_STORAGE", "PHI_GET_REGISTRY_DB", "PHI_GET_REGISTRY_CONFIG"
_STORAGE_HELP = (f"The registry's blob storage folder (content-addressed). Default: {_STORAGE_ENV}, else "
                 f"'storage' in the config file ({_CONFIG_ENV}, default ~/.config/phi-get/registry.toml).")
_DB_HELP = ("Catalog database: sqlite:///PATH or postgresql://user@host:port/db. Default: "
            f"{_DB_ENV}, else 'db' in the config file, else a SQLite file in the storage folder.")
_TOKEN_ENV = "PHI_GET_TOKEN"
_URL_ENV = "PHI_GET_REGISTRY"
_URL_HELP = f"Registry base URL, e.g. http://127.0.0.1:8470. Default: {_URL_ENV}."
_JSON_HELP = "Print JSON for scripts."
_STORAGE = typer.Option(None, "--storage", help=_STORAGE_HELP)
_SCOPE = typer.Option(..., "--scope", help="admin, publish:* or publish:<model>; repeatable.")
_MIRROR_OUT = typer.Argument(..., help="Folder to write the static mirror to (created or updated).")
_PUBLISH_FOLDER = typer.Argument(..., help="An artifact folder, or a folder holding several.")
#: What the root CLI wires in through :func:`register` (the registry imports neither the resolver nor
#: the builders): ``advisor`` builds the web catalog's "what fits my device" advisor when ``serve``
#: starts; ``importer`` gives ``phi-get import`` the builders' function that fetches, checks and
#: packages an upstream prebuilt artifact (``phi_get.builders.prebuilt.import_prebuilt``).
_WIRED: dict[str, Callable[[], Any]] = {}


def _config_file() -> tuple[Path, dict[str, object]]:
    import os

    from phi_get.manifests.canonical import load_toml_document
    from phi_get.manifests.errors import ManifestError

    path = Path(os.environ.get(_CONFIG_ENV) or Path.home() / ".config" / "phi-get" / "registry.toml")
    try:
        doc = load_toml_document(path.read_bytes(), limit=1 << 20, document=str(path))
    except FileNotFoundError:
        if os.environ.get(_CONFIG_ENV):
            raise ManifestError("no such file", field=_CONFIG_ENV, value=str(path), document="environment") from None
        return path, {}
    except OSError as exc:
        raise ManifestError(f"cannot read it: {exc.strerror}", document=str(path)) from None
    unknown = sorted(set(doc) - {"storage", "db"})
    if unknown:
        raise ManifestError("unknown key; the keys are storage and db", field=unknown[0], document=str(path))
    return path, doc


def _locate(db: str | None, storage: Path | None, *, need_storage: bool, create: bool) -> tuple[str, Path | None]:
    """(catalog URL, storage folder) from flags, environment, config file; refuses a location that holds nothing."""
    import os

    from .errors import BadRequestError, NotFoundError
    from .server import default_db_url

    path, conf = _config_file()
    storage = storage or (Path(v) if (v := os.environ.get(_STORAGE_ENV) or conf.get("storage")) else None)
    db = db or os.environ.get(_DB_ENV) or (str(conf["db"]) if conf.get("db") else None)
    if storage is None and (need_storage or db is None):
        raise BadRequestError("which registry? no storage folder given",
                              hint=f"pass --storage DIR, set {_STORAGE_ENV}, or write storage = \"DIR\" in {path}")
    url = db or default_db_url(storage)  # type: ignore[arg-type]
    if create:
        if storage is not None and (need_storage or db is None):
            try:
                storage.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BadRequestError(f"cannot use {storage} as the registry's storage folder: "
                                      f"{exc.strerror or exc}") from None
        return url, storage
    missing = None
    if storage is not None and (need_storage or db is None) and storage.exists() and not storage.is_dir():
        raise BadRequestError(f"the registry's storage {storage} is a file, not a folder")
    if storage is not None and (need_storage or db is None) and not storage.is_dir():
        missing = f"storage folder {storage}"
    elif url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        missing = f"catalog {url.removeprefix('sqlite:///')}"
    if missing:
        raise NotFoundError(f"no registry at {missing}: it does not exist",
                            hint="check --storage/--db (or their environment variables); "
                                 "`phi-get registry serve` or `registry token create` create a new one")
    return url, storage


def _open(db: str | None, storage: Path | None) -> Registry:
    from .server import open_registry

    url, folder = _locate(db, storage, need_storage=True, create=False)
    assert folder is not None
    return open_registry(url, folder)


def _engine(db: str | None, storage: Path | None, *, create: bool = False) -> Engine:
    """The catalog alone (token commands): no blob store is opened or created."""
    from .db import create_schema, make_engine

    url, _folder = _locate(db, storage, need_storage=False, create=create)
    engine = make_engine(url)
    create_schema(engine)
    return engine


@registry_app.command("serve")
def serve(
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    storage: Path | None = _STORAGE,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8470, "--port", min=1, max=65535, help="TCP port to listen on (1-65535)."),
    max_blob_size: int = typer.Option(64 << 30, "--max-blob-size", help="Largest blob upload accepted, in bytes."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log",
                                    help="Log one line per request on stderr."),
) -> None:
    """Serve the registry over HTTP (the wire layout, publishing, OpenAPI at /docs)."""
    from .db import redact_url
    from .server import listen, open_registry
    from .server import serve as run

    listen(host, port).close()  # a busy port or a bad address is said before anything is created
    url, folder = _locate(db, storage, need_storage=True, create=True)
    assert folder is not None
    storage = folder
    registry = open_registry(url, storage, max_blob_size=max_blob_size)
    factory = _WIRED.get("advisor")
    typer.echo(f"phi-get registry: catalog {redact_url(url)}, blobs {storage}, http://{host}:{port}", err=True)
    typer.echo(f"phi-get registry: web catalog at http://{host}:{port}/", err=True)
    run(registry, host=host, port=port, access_log=access_log, advisor=factory() if factory else None)


@registry_app.command("export")
def export(
    out: Path = _MIRROR_OUT,
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    storage: Path | None = _STORAGE,
    json_out: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Write a static mirror (catalog, indexes, manifests, blobs) servable as plain files or file://."""
    from .export import export_mirror

    report = export_mirror(_open(db, storage), out)
    if json_out:
        _emit({"mirror": str(out), "models": report.models, "manifests": report.manifests,
               "blobs_written": report.blobs_written, "bytes_written": report.bytes_written,
               "blobs_kept": report.blobs_kept})
        return
    typer.echo(f"exported {report.models} model(s), {report.manifests} manifest(s), "
               f"{report.blobs_written} blob(s) written ({_size(report.bytes_written)}), "
               f"{report.blobs_kept} kept, to {out}")


@registry_app.command("gc")
def gc(
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    storage: Path | None = _STORAGE,
    grace: float = typer.Option(3600.0, "--grace-seconds",
                                help="Spare unreferenced blobs and uploads younger than this (publishes in flight)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only report what would be deleted."),
    json_out: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Delete blobs no committed manifest references, and abandoned uploads."""
    report = _open(db, storage).gc(grace_s=grace, dry_run=dry_run)
    if json_out:
        _emit({"dry_run": dry_run, "blobs_deleted": list(report.blobs_deleted), "freed_bytes": report.freed_bytes,
               "uploads_removed": report.uploads_removed, "blobs_kept": report.blobs_kept})
        return
    verb, freed = ("would delete", "would free") if dry_run else ("deleted", "freed")
    typer.echo(f"{verb} {len(report.blobs_deleted)} blob(s) ({freed} {_size(report.freed_bytes)}), "
               f"removed {report.uploads_removed} abandoned upload(s), kept {report.blobs_kept} blob(s)")


@token_app.command("create")
def token_create(
    scope: list[str] = _SCOPE,
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    storage: Path | None = _STORAGE,
    expires_in: float | None = typer.Option(None, "--expires-in", help="Seconds until it expires."),
    note: str = typer.Option("", "--note", help="What the token is for."),
) -> None:
    """Mint a token and print it (only it) to stdout; it is shown once and stored hashed."""
    from .tokens import mint_token

    token = mint_token(_engine(db, storage, create=True), scope, expires_in_s=expires_in, note=note)
    sys.stdout.write(token + "\n")


@token_app.command("list")
def token_list(
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    storage: Path | None = _STORAGE,
    json_out: bool = typer.Option(False, "--json", help=_JSON_HELP + " Times are ISO 8601 UTC."),
) -> None:
    """List tokens (id, scopes, note, times); secrets are never stored or shown."""
    from phi_get.manifests.display import format_table

    from .tokens import list_tokens

    rows = [{k: _iso(v) if k in ("created", "expires", "revoked") else v for k, v in row.items()}
            for row in list_tokens(_engine(db, storage))]
    if json_out:
        _emit(rows)
        return
    if not rows:
        typer.echo("no tokens (phi-get registry token create --scope ...)", err=True)
        return
    typer.echo(format_table(["ID", "SCOPES", "CREATED", "EXPIRES", "REVOKED", "NOTE"],
                            [[r["id"], ",".join(map(str, r["scopes"])) if isinstance(r["scopes"], list)  # type: ignore[arg-type]
                              else r["scopes"], r["created"], r["expires"], r["revoked"], r["note"] or None]
                             for r in rows]))


def _iso(value: object) -> object:
    """Epoch seconds as ISO 8601 UTC (None stays None; a bool stays as it is)."""
    import datetime

    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return datetime.datetime.fromtimestamp(value, datetime.UTC).isoformat(timespec="seconds")


def _emit(doc: object) -> None:
    typer.echo(json.dumps(doc, indent=2, sort_keys=True))


def _size(n: int) -> str:
    from phi_get.manifests.display import human_bytes

    return human_bytes(n)


@token_app.command("revoke")
def token_revoke(
    token_id: str = typer.Argument(..., help="The token's id (the hex after 'phig_')."),
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    storage: Path | None = _STORAGE,
    json_out: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Revoke a token: requests with it get 401 from now on."""
    from .tokens import revoke_token

    revoke_token(_engine(db, storage), token_id)
    if json_out:
        _emit({"revoked": token_id})
        return
    typer.echo(f"revoked token {token_id}")


@registry_app.command("yank")
def yank(
    name: str = typer.Argument(..., help="Model name."),
    version: str = typer.Argument(..., help="Version to yank."),
    reason: str | None = typer.Option(None, "--reason", help="Why (shown to resolvers)."),
    variant: str | None = typer.Option(None, "--variant", help="Only this variant."),
    undo: bool = typer.Option(False, "--undo", help="Un-yank instead."),
    registry: str | None = typer.Option(None, "--registry", "-r", help=_URL_HELP),
    token: str | None = typer.Option(None, "--token", envvar=_TOKEN_ENV, show_envvar=True,
                                        help="Publish token for the model (or admin)."),
    json_out: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Yank a version (hidden from new resolutions, still installable by exact pin), or --undo it."""
    import httpx

    from .client import raise_for_error
    from .errors import BadRequestError

    if not undo and not reason:
        raise BadRequestError("yanking needs --reason (it is shown to everyone resolving this model)")
    base = _registry_url(registry)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    path = f"/v1/models/{name}/versions/{version}/yank"
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        if undo:
            r = client.delete(path, params={"variant": variant} if variant else None)
        else:
            r = client.post(path, json={"reason": reason, "variant": variant})
    raise_for_error(r, f"{'un-yanking' if undo else 'yanking'} {name} {version}")
    answer = r.json()
    if json_out:
        _emit(answer)
        return
    which = f" {variant}" if variant else " (every variant)"
    typer.echo(f"{'un-yanked' if undo else 'yanked'} {name} {version}{which}"
               + (f": {reason}" if reason and not undo else ""))


def _registry_url(registry: str | None) -> str:
    """--registry, else PHI_GET_REGISTRY (its first URL), as the device side reads it; checked before use."""
    import os
    import urllib.parse

    from phi_get.manifests.urls import redact

    from .errors import BadRequestError

    url = registry or (os.environ.get(_URL_ENV, "").replace(",", " ").split() or [""])[0]
    if not url:
        raise BadRequestError("which registry? no URL given", hint=f"pass --registry URL or set {_URL_ENV}")
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number in 0-65535
    except ValueError:
        raise BadRequestError(f"the registry URL's port must be a number in 0-65535 (got {redact(url)!r})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequestError(f"the registry URL must be http(s)://HOST[:PORT] (got {redact(url)!r})")
    return url.rstrip("/")


def publish(
    folder: Path = _PUBLISH_FOLDER,
    registry: str | None = typer.Option(None, "--registry", "-r", help=_URL_HELP),
    token: str | None = typer.Option(None, "--token", envvar=_TOKEN_ENV, show_envvar=True,
                                        help="Publish token (prefer the environment variable)."),
    parallel: int = typer.Option(4, "--parallel", min=1, max=32, help="Concurrent blob uploads."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    json_out: bool = typer.Option(False, "--json", help=_JSON_HELP + " (no progress output)"),
    to: str | None = typer.Option(None, "--to", help="Push to an OCI registry instead: oci://HOST[:PORT]/NAMESPACE "
                                  "(credentials: PHI_GET_OCI_USERNAME/PASSWORD or ~/.docker/config.json)."),
) -> None:
    """Publish every artifact folder at or under FOLDER: missing blobs first, then the manifest."""
    from .client import publish_tree

    progress = None if quiet or json_out else _progress_printer()
    if to is not None:
        from .oci_push import push_tree

        report = push_tree(folder, to, progress=progress, parallel=parallel)
    else:
        report = publish_tree(folder, _registry_url(registry), token, progress=progress, parallel=parallel)
    if json_out:
        _emit([{"name": a.name, "version": a.version, "variant": a.variant, "manifest": a.digest,
                "created": a.created, "blobs_uploaded": a.blobs_uploaded, "bytes_uploaded": a.bytes_uploaded,
                "blobs_skipped": a.blobs_skipped} for a in report.artifacts])
        return
    for a in report.artifacts:
        state = "published" if a.created else "already published"
        typer.echo(f"{state} {a.name} {a.version} {a.variant} {a.digest} "
                   f"(uploaded {a.blobs_uploaded} blob(s), {_size(a.bytes_uploaded)}; {a.blobs_skipped} present)")


#: A progress line at least this often while uploading, however fast the link (and at least once a second).
_PROGRESS_BYTES = 100_000_000


def _progress_printer() -> Callable[[str, str, int], None]:
    """Progress on stderr: one line per blob event, and while a large upload runs, the bytes sent so far
    every second or every :data:`_PROGRESS_BYTES`, whichever comes first."""
    import threading
    import time

    lock = threading.Lock()
    sent: dict[str, int] = {}
    said = {"at": time.monotonic(), "bytes": 0}

    def report(event: str, detail: str, n: int) -> None:
        with lock:
            now = time.monotonic()
            if event == "upload":
                before = sent.get(detail, 0)
                sent[detail] = before + n
                if before == 0:
                    typer.echo(f"uploading {detail}", err=True)
                elif now - said["at"] >= 1.0 or sum(sent.values()) - said["bytes"] >= _PROGRESS_BYTES:
                    typer.echo(f"  sent {_size(sum(sent.values()))} so far ({detail}: {_size(sent[detail])})",
                               err=True)
                else:
                    return
                said["at"], said["bytes"] = now, sum(sent.values())
            elif event == "skip":
                typer.echo(f"present   {detail} ({_size(n)}), not sent", err=True)
            elif event == "commit":
                total = sum(sent.values())
                typer.echo(f"committed {detail} after uploading {_size(total)}", err=True)
                sent.clear()

    return report


def import_prebuilt(
    source: str = typer.Argument(..., help="hf://OWNER/NAME@REVISION: a Hugging Face Hub repo holding a prebuilt "
                                 "artifact, at a branch, tag or commit (resolved to the commit and recorded)."),
    name: str = typer.Option(..., "--name", help="Model name to publish it under (e.g. phi-3.5-mini)."),
    version: str = typer.Option(..., "--version", help="Version to publish it as (PEP 440)."),
    variant: str = typer.Option(..., "--variant", help="Variant id. A catalog id (gguf-q4_k_m, ...) gives "
                                "precision, quantization, targets and runtime; otherwise they are inferred "
                                "from the files or declared below."),
    fmt: str | None = typer.Option(None, "--format", help="Declare the format (gguf, onnx, openvino, mlx, "
                                   "safetensors); it must agree with the files. Default: inferred."),
    precision: str | None = typer.Option(None, "--precision", help="Declare the precision (fp16, int4, ...)."),
    quantization: str | None = typer.Option(None, "--quantization", help="Declare the quantization "
                                            "(default: a GGUF's file type, else the catalog entry's)."),
    targets: str | None = typer.Option(None, "--targets", help="Declare the targets, comma-separated "
                                       "(cpu-x86_64,cuda ...)."),
    runtime: str | None = typer.Option(None, "--runtime", help="Declare the runtime: "
                                       "DISTRIBUTION[SPECIFIER][@PROVIDER], e.g. 'llama-cpp-python>=0.3@cpu'."),
    include: list[str] | None = typer.Option(None, "--include", help="Only the repo's files matching this glob "
                                             "(repeatable): pick one GGUF of several."),
    reference: str | None = typer.Option(None, "--reference", help="The unquantized checkpoint (folder or "
                                         "OWNER/NAME@REV) to measure quality against, as a build does. Without "
                                         "it: a load-and-generate check, recorded as quality.check = structural."),
    out: Path | None = typer.Option(None, "--out", help="Keep the artifact folder under OUT/<name>/<version>/"
                                    "<variant>/ (default: a temporary folder, removed after publishing)."),
    no_publish: bool = typer.Option(False, "--no-publish", help="Only write the checked artifact folder (needs --out)."),
    registry: str | None = typer.Option(None, "--registry", "-r", help=_URL_HELP),
    token: str | None = typer.Option(None, "--token", envvar=_TOKEN_ENV, show_envvar=True,
                                        help="Publish token (prefer the environment variable)."),
    to: str | None = typer.Option(None, "--to", help="Push to an OCI registry instead: oci://HOST[:PORT]/NAMESPACE."),
    json_out: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Import an upstream prebuilt artifact from a Hugging Face Hub repo at a commit, check it, publish it."""
    import shutil
    import tempfile

    from .errors import BadRequestError

    if no_publish and out is None:
        raise BadRequestError("--no-publish keeps nothing without --out DIR")
    url = None if no_publish or to is not None else _registry_url(registry)  # said before any download
    factory = _WIRED.get("importer")
    if factory is None:  # pragma: no cover - the root CLI wires it; a registry-only install has no builders
        raise BadRequestError("phi-get import needs phi-get's builders (pip install 'phi-get[build]')")
    work = out if out is not None else Path(tempfile.mkdtemp(prefix="phi-get-import-"))
    try:
        folder = factory()(source, name=name, version=version, variant=variant, out=work, reference=reference,
                           include=include or None, command=("phi-get", *sys.argv[1:]),
                           declared={"format": fmt, "precision": precision, "quantization": quantization,
                                     "targets": tuple(t for t in targets.split(",") if t) if targets else None,
                                     "runtime": runtime})
        if not json_out:
            typer.echo(f"checked {source} -> {folder}", err=True)
        published: list[dict[str, object]] = []
        if not no_publish:
            if to is not None:
                from .oci_push import push_tree

                report = push_tree(folder, to, progress=None)
            else:
                from .client import publish_tree

                assert url is not None
                report = publish_tree(folder, url, token, progress=None)
            published = [{"name": a.name, "version": a.version, "variant": a.variant, "manifest": a.digest,
                          "created": a.created} for a in report.artifacts]
        if json_out:
            _emit({"folder": str(folder) if out is not None else None, "published": published})
            return
        for a in published:
            typer.echo(f"{'published' if a['created'] else 'already published'} {a['name']} {a['version']} "
                       f"{a['variant']} {a['manifest']}")
    finally:
        if out is None:
            shutil.rmtree(work, ignore_errors=True)


def register(app: typer.Typer, *, advisor: Callable[[], Advisor] | None = None,
             importer: Callable[[], Any] | None = None) -> None:
    """Add the registry's commands; ``advisor`` (from the root CLI) answers the web catalog's device page,
    ``importer`` does ``phi-get import``'s fetching and checking."""
    if advisor is not None:
        _WIRED["advisor"] = advisor
    if importer is not None:
        _WIRED["importer"] = importer
    app.add_typer(registry_app)
    app.command("publish")(publish)
    app.command("import")(import_prebuilt)
