"""The catalog database: engine factory and schema creation (no globals).

A catalog is a SQLite file by default (``sqlite:///PATH``: zero set-up) or a
PostgreSQL server (``postgresql://user@host:port/db``; the psycopg 3 driver is
chosen for a bare ``postgresql://`` URL).  Every caller makes its own engine
with :func:`make_engine` and passes it down; nothing is read at import time.

SQLite is opened in WAL mode with a busy timeout, so readers never wait for
the one writer and concurrent publishes queue instead of failing; foreign
keys are switched on.

Imports sqlmodel/sqlalchemy and :mod:`phi_get.manifests` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlmodel import SQLModel, create_engine

from . import tables  # noqa: F401 - registers the tables on SQLModel.metadata
from .errors import BadRequestError, ServiceError

__all__ = ["create_schema", "make_engine", "normalize_db_url", "redact_url"]


def normalize_db_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` use psycopg 3; others pass through."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def redact_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for a catalog URL; raises BadRequestError naming a bad URL."""
    url = normalize_db_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise BadRequestError(f"not a database URL: {url!r} (expected sqlite:///PATH or postgresql://...)") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if backend == "postgresql":
        return create_engine(url, pool_size=16, max_overflow=16, pool_pre_ping=True)
    raise BadRequestError(f"unsupported database {backend!r} in {redact_url(url)}: use sqlite:/// or postgresql://")


def create_schema(engine: Engine) -> None:
    """Create the tables that do not exist yet (idempotent)."""
    try:
        SQLModel.metadata.create_all(engine)
    except OperationalError as exc:
        first = str(exc.orig or exc).strip().splitlines()[0] if str(exc.orig or exc).strip() else type(exc).__name__
        raise ServiceError(f"cannot open the catalog database {redact_url(str(engine.url))}: {first}") from None
