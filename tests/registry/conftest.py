"""Fixtures of the registry tests: catalogs on SQLite and on a real PostgreSQL.

``catalog_url`` is parametrized over both backends, so every test that uses
it (the conformance suite) runs against each.  PostgreSQL is Debian's
``postgresql`` package, started here on 127.0.0.1 with an ephemeral port in
a temporary data folder (as the ``postgres`` user when running as root:
initdb refuses root) and stopped at the end of the session.  Locally the
PostgreSQL cases skip when the binaries are absent; in CI (``CI=true``) they
fail instead, so they cannot silently stop running.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from phi_get.demo import free_port

sys.path.insert(0, str(Path(__file__).parents[1] / "kit"))  # the test kit: shared with tests/resolver and bench/

pytest.importorskip("sqlmodel")
pytest.importorskip("fastapi")


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if found:
        return Path(found[-1]).parent
    exe = shutil.which("postgres")
    return Path(exe).parent if exe else None


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server for the session; yields its admin URL."""
    bindir = _pg_bin()
    if bindir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL binaries not found; CI must install the Debian package postgresql")
        pytest.skip("PostgreSQL binaries not found (apt-get install postgresql) - PostgreSQL cases skipped")
    if os.environ.get("CI") != "true":
        pytest.importorskip("psycopg")
    data = Path(tempfile.mkdtemp(prefix="phi-get-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres",
                                 "--no-sync", "-E", "UTF8"]), check=True, capture_output=True)
    port = free_port()
    log = open(data / "postgres.log", "wb")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        _as_postgres([str(bindir / "postgres"), "-D", str(data / "db"), "-p", str(port), "-k", str(data),
                      "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"]),
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        _wait_for_postgres(url, proc, data / "postgres.log")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


def _wait_for_postgres(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            err = log.read_text(errors="replace")
            raise RuntimeError(f"postgres exited with {proc.returncode}: {err[-2000:]}")
        try:
            with psycopg.connect(url, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture()
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's server."""
    import psycopg

    name = "t_" + secrets.token_hex(6)
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/catalog.sqlite3"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture()
def server(tmp_path: Path, catalog_url: str) -> Iterator[object]:
    """The real registry server on loopback over the parametrized catalog."""
    from phi_get.registry.testing import registry_server

    with registry_server(tmp_path / "registry", catalog_url) as running:
        yield running
