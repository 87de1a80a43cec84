"""Running the registry: open a catalog and a store, serve them with uvicorn.

:func:`open_registry` is the one place a :class:`~.service.Registry` is built
from a database URL and a storage folder (the CLI, the exporter, tests and
benches all use it).  :func:`serve` runs uvicorn in the foreground;
:func:`running_server` runs the real server on a loopback socket in a
background thread (tests, benches) and yields its base URL.

Imports uvicorn/fastapi and the registry only.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .advice import Advisor
from .db import create_schema, make_engine
from .errors import ServeError
from .service import DEFAULT_MAX_BLOB_SIZE, Registry
from .storage import FilesystemBlobStore

__all__ = ["default_db_url", "listen", "open_registry", "running_server", "serve"]


def default_db_url(storage: str | os.PathLike[str]) -> str:
    """The zero-set-up catalog: a SQLite file beside the blobs."""
    return f"sqlite:///{os.path.abspath(os.fspath(storage))}/catalog.sqlite3"


def open_registry(db_url: str, storage: str | os.PathLike[str], *,
                  max_blob_size: int = DEFAULT_MAX_BLOB_SIZE) -> Registry:
    """A Registry on ``db_url`` (schema created if missing) and a filesystem store."""
    store = FilesystemBlobStore(storage)
    engine = make_engine(db_url)
    create_schema(engine)
    registry = Registry(engine, store, max_blob_size=max_blob_size)
    from .tuf_repo import TufRepository  # stdlib-only at import; tuf itself loads when signing

    registry.tuf = TufRepository.of(storage)
    return registry


def _config(registry: Registry, *, access_log: bool, advisor: Advisor | None = None,
            log_level: str = "warning") -> object:
    import uvicorn

    from .http_api import registry_asgi_app

    # uvicorn sets its loggers' levels when the Config is made: a level set afterwards is ignored.
    return uvicorn.Config(registry_asgi_app(registry, advisor=advisor), log_level=log_level, access_log=access_log,
                          timeout_keep_alive=30, lifespan="off")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a :class:`ServeError` that says why not (busy port, bad address)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except (socket.gaierror, UnicodeError, OverflowError) as exc:
        raise ServeError(f"cannot listen on {host}:{port}: {host!r} is not an address or host name ({exc})",
                         bad_input=True) from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        why = {errno.EADDRINUSE: "the port is in use by another process",
               errno.EACCES: "this user may not listen on that port",
               errno.EADDRNOTAVAIL: "that address is not one of this machine's"}.get(exc.errno or 0, str(exc))
        raise ServeError(f"cannot listen on {host}:{port}: {why}",
                         hint="choose another --port, or stop the server that holds it") from None
    return sock


def serve(registry: Registry, *, host: str, port: int, access_log: bool = True,
          advisor: Advisor | None = None) -> None:
    """Serve in the foreground until interrupted; ``advisor`` answers the web catalog's device page."""
    import uvicorn

    sock = listen(host, port)  # bound here, so a busy port is a clear error, not uvicorn's exit
    config = _config(registry, access_log=access_log, advisor=advisor, log_level="info")
    config.host, config.port = host, port  # type: ignore[attr-defined]
    try:
        uvicorn.Server(config).run(sockets=[sock])  # type: ignore[arg-type]
    finally:
        sock.close()


@contextmanager
def running_server(registry: Registry, *, host: str = "127.0.0.1", advisor: Advisor | None = None) -> Iterator[str]:
    """The real HTTP server on an ephemeral loopback port, in a thread.

    Yields the base URL (``http://127.0.0.1:PORT``); stops the server on exit.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(_config(registry, access_log=False, advisor=advisor))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"registry-{port}")
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the registry server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
