"""Fuzz the registry's HTTP API from its own OpenAPI description (schemathesis).

The real server runs on loopback with one published artifact; every
operation of ``/openapi.json`` gets generated requests (with an admin token,
so the publishing routes are exercised past authentication).  The one check:
no response is a 5xx.  Bounded (a few examples per operation, no deadline) to
stay well under a minute.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings
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
        @given(case=operation.as_strategy())  # type: ignore[attr-defined]
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case: object) -> None:
            response = case.call(base_url=running.url,  # type: ignore[attr-defined]
                                 headers={"Authorization": f"Bearer {admin}"})
            statuses.append(response.status_code)
            case.validate_response(response, checks=[schemathesis.checks.not_a_server_error])  # type: ignore[attr-defined]

        fuzz()
        checked.append(operation.label)  # type: ignore[attr-defined]
    assert "PUT /v1/uploads/sha256/{hex}" in checked and "POST /v1/publish" in checked
    assert len(statuses) >= 5 * len(operations), len(statuses)
    assert max(statuses) < 500 and {200, 400, 404} <= set(statuses), sorted(set(statuses))
