"""Running the registry: open a catalog and a store, serve them with uvicorn.

:func:`open_registry` is the one place a :class:`~.service.Registry` is built
from a database URL and a storage folder (the CLI, the exporter, tests and
benches all use it).  :func:`serve` runs uvicorn in the foreground;
:func:`running_server` runs the real server on a loopback socket in a
background thread (tests, benches) and yields its base URL.

Imports uvicorn/fastapi and the registry only.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .db import create_schema, make_engine
from .service import DEFAULT_MAX_BLOB_SIZE, Registry
from .storage import FilesystemBlobStore

__all__ = ["default_db_url", "open_registry", "running_server", "serve"]


def default_db_url(storage: str | os.PathLike[str]) -> str:
    """The zero-set-up catalog: a SQLite file beside the blobs."""
    return f"sqlite:///{os.path.abspath(os.fspath(storage))}/catalog.sqlite3"


def open_registry(db_url: str, storage: str | os.PathLike[str], *,
                  max_blob_size: int = DEFAULT_MAX_BLOB_SIZE) -> Registry:
    """A Registry on ``db_url`` (schema created if missing) and a filesystem store."""
    store = FilesystemBlobStore(storage)
    engine = make_engine(db_url)
    create_schema(engine)
    return Registry(engine, store, max_blob_size=max_blob_size)


def _config(registry: Registry, *, access_log: bool) -> object:
    import uvicorn

    from .api import registry_asgi_app

    return uvicorn.Config(registry_asgi_app(registry), log_level="warning", access_log=access_log,
                          timeout_keep_alive=30, lifespan="off")


def serve(registry: Registry, *, host: str, port: int, access_log: bool = True) -> None:
    """Serve in the foreground until interrupted."""
    import uvicorn

    config = _config(registry, access_log=access_log)
    config.host, config.port = host, port  # type: ignore[attr-defined]
    config.log_level = "info"  # type: ignore[attr-defined]
    uvicorn.Server(config).run()  # type: ignore[arg-type]


@contextmanager
def running_server(registry: Registry, *, host: str = "127.0.0.1") -> Iterator[str]:
    """The real HTTP server on an ephemeral loopback port, in a thread.

    Yields the base URL (``http://127.0.0.1:PORT``); stops the server on exit.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(_config(registry, access_log=False))  # type: ignore[arg-type]
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
