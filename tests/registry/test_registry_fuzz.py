"""Fuzz the registry's HTTP API from its own OpenAPI description (schemathesis).

The real server runs on loopback with one published artifact; every
operation of ``/openapi.json`` gets generated requests (with an admin token,
so the publishing routes are exercised past authentication), each also
carrying a hostile ``Range`` header (SECURITY.md, hostile requests: oversized positions, garbage,
many ranges).  The check: no response is a 5xx.  Beyond the schema, which
describes the publish body only as bytes, hypothesis sends hostile publish
bodies (integers past 64 bits and past Python's int-string limit, nesting
past 64 and past the recursion limit, lone surrogates, look-alike names) and
hostile Range headers straight at the routes: every answer is a 4xx or the
RFC's Range answer, with at most one server log line.  Bounded (a few
examples per operation, no deadline) to stay well under a minute.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phi_get.registry.client import publish_tree
from phi_get.registry.testing import RunningRegistry, registry_server, write_artifact
from phi_get.registry.tokens import mint_token


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningRegistry, str]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    with registry_server(tmp / "registry") as running:
        admin = mint_token(running.registry.engine, ["admin"])
        write_artifact(tmp / "a", {"model.gguf": b"fuzz" * 256})
        publish_tree(tmp / "a", running.url, admin)
        yield running, admin


digits = st.integers(0, 30).map(lambda n: "9" * n) | st.sampled_from(["9" * 5000, "0" * 40 + "7", ""])
hostile_ranges = st.one_of(
    st.builds(lambda a, b: f"bytes={a}-{b}", digits, digits),
    st.builds(lambda a, b, c: f"bytes={a}-{b},{c}-", digits, digits, digits),
    st.sampled_from(["bytes=abc", "bytes=5-1", "bytes=-0", "items=0-1", "bytes=", "bytes=--", "bytes=\u00b9-\u00b2",
                     "bytes=0-0," * 500, "bytes= 1-2", "bytes=" + "-" * 100]),
)


def _deep(levels: int, opener: str = "[") -> str:
    if opener == "[":
        return "[" * levels + "1" + "]" * levels
    return '{"a":' * levels + "1" + "}" * levels


hostile_values = st.one_of(
    st.integers(min_value=2**63, max_value=10**60).map(str), st.just("9" * 5000), st.just("-" + "9" * 4400),
    st.integers(65, 3000).map(_deep), st.integers(65, 3000).map(lambda n: _deep(n, "{")),
    st.sampled_from(['"\\ud800"', '"tiny-ph\u0131"', '"tiny-phi\\n"', "1e999", "-1", "true", "null", '"" ', "[]"]),
)
manifest_fields = st.sampled_from(["name", "version", "variant", "files", "memory", "architecture", "quality",
                                   "provenance", "size", "schema"])


@st.composite
def hostile_publish_bodies(draw: st.DrawFn) -> bytes:
    """A publish body: a manifest-shaped object with one field hostile, or hostile JSON whole."""
    if draw(st.booleans()):
        return draw(hostile_values).encode("utf-8", "surrogatepass")
    doc = {"schema": "phi-get.manifest/v1", "name": "tiny-phi", "version": "0.1.0", "variant": "gguf-q4_k_m"}
    field = draw(manifest_fields)
    doc.pop(field, None)
    return (json.dumps(doc)[:-1] + f', "{field}": {draw(hostile_values)}' + "}").encode("utf-8", "surrogatepass")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture()
def server_log() -> Iterator[_Lines]:
    """Every record the in-process server logs (uvicorn's loggers do not propagate)."""
    handler = _Lines()
    loggers = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


@pytest.mark.slow
def test_hostile_publish_bodies_are_quiet_4xx(fuzz_server: tuple[RunningRegistry, str], server_log: _Lines) -> None:
    """Hostile numbers, nesting and names in publish bodies: 4xx with a JSON error, one log line at most."""
    running, admin = fuzz_server

    @given(body=hostile_publish_bodies())
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def fuzz(body: bytes) -> None:
        before = len(server_log.records)
        r = httpx.post(f"{running.url}/v1/publish", content=body, headers={"Authorization": f"Bearer {admin}"},
                       timeout=60)
        assert 400 <= r.status_code < 500, (body[:200], r.status_code, r.text[:300])
        assert r.json()["error"] and r.json()["message"], r.text[:300]
        assert len(server_log.records) - before <= 1, [x.getMessage() for x in server_log.records[before:]]

    fuzz()


@pytest.mark.slow
def test_hostile_ranges_are_never_a_server_error(fuzz_server: tuple[RunningRegistry, str], server_log: _Lines) -> None:
    """Hostile Range headers on an unauthenticated blob request: 200, 206 or 416, one log line at most."""
    running, _admin = fuzz_server
    entry = httpx.get(f"{running.url}/v1/models/tiny-phi/index.json").json()["variants"][0]
    manifest = httpx.get(f"{running.url}/v1/manifests/sha256/{entry['manifest'].split(':')[1]}.json").json()
    url = f"{running.url}/v1/blobs/sha256/{manifest['files'][0]['sha256']}"

    @given(header=hostile_ranges, method=st.sampled_from(["GET", "HEAD"]))
    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def fuzz(header: str, method: str) -> None:
        before = len(server_log.records)
        r = httpx.request(method, url, headers={"Range": header.encode("latin-1")})
        assert r.status_code in (200, 206, 416), (header[:80], r.status_code)
        assert len(server_log.records) - before <= 1

    fuzz()


def _operations(url: str) -> list[object]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.slow
def test_no_server_errors(fuzz_server: tuple[RunningRegistry, str]) -> None:
    # Driven by hand (as_strategy + given) rather than schemathesis' pytest
    # plugin, whose fixture loader does not work with pytest 9.
    running, admin = fuzz_server
    operations = _operations(running.url)
    assert len(operations) >= 10
    checked: list[str] = []
    statuses: list[int] = []
    for operation in operations:
        @given(case=operation.as_strategy(), hostile_range=hostile_ranges)  # type: ignore[attr-defined]
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case: object, hostile_range: str) -> None:
            response = case.call(base_url=running.url,  # type: ignore[attr-defined]
                                 headers={"Authorization": f"Bearer {admin}",
                                          "Range": hostile_range.encode("latin-1")})
            statuses.append(response.status_code)
            case.validate_response(response, checks=[schemathesis.checks.not_a_server_error])  # type: ignore[attr-defined]

        fuzz()
        checked.append(operation.label)  # type: ignore[attr-defined]
    assert "PUT /v1/uploads/sha256/{hex}" in checked and "POST /v1/publish" in checked
    assert len(statuses) >= 5 * len(operations), len(statuses)
    assert max(statuses) < 500 and {200, 400, 404} <= set(statuses), sorted(set(statuses))
