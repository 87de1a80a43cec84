"""Resolution scenarios as data files: index + device profile + policy -> expected choice or error.

Each file in tests/data/resolver/scenarios/ names a catalog, a device (a
shipped sample profile or an inline profile), a requirement, a policy, and
the expected choice (with reason fragments) or the expected error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from phi_get.manifests.device import device_profile_from_json
from phi_get.manifests.index import model_index_from_json
from phi_get.manifests.manifest import Format, Precision
from phi_get.resolver.detect import load_device
from phi_get.resolver.explain import no_match_error, render_text
from phi_get.resolver.resolve import Policy, Prefer, Verdict, parse_requirement, resolve

DATA = Path(__file__).parents[1] / "data" / "resolver"
SCENARIOS = sorted((DATA / "scenarios").glob("*.json"))


def _catalog(kit: Any) -> Any:
    doc = json.loads((DATA / "phi35-catalog.json").read_text())
    index = {"schema": "phi-get.index/v1", "name": doc["name"], "variants": [kit.compact_entry(v) for v in doc["variants"]]}
    return model_index_from_json(index)


def _policy(d: dict[str, Any]) -> Policy:
    return Policy(
        prefer=Prefer(d.get("prefer", "quality")),
        format=Format(d["format"]) if "format" in d else None,
        precision=Precision(d["precision"]) if "precision" in d else None,
        context=d.get("context"), require_runtime=d.get("require_runtime", False),
    )


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path, kit: Any) -> None:
    sc = json.loads(path.read_text())
    device = (load_device(sc["device"], environ={}) if isinstance(sc["device"], str)
              else device_profile_from_json(sc["device"]))
    res = resolve(parse_requirement(sc["requirement"]), device, _catalog(kit).entries, _policy(sc["policy"]))
    expect = sc["expect"]
    assert len(res.candidates) == 12  # every candidate gets a verdict
    if "error" in expect:
        assert res.chosen is None, render_text(res, explain=True)
        message = str(no_match_error(res))
        assert expect["error"] in message
        for fragment in expect["misses"]:
            assert fragment in message, message
        return
    chosen = res.chosen
    assert chosen is not None, str(no_match_error(res))
    assert chosen.label == expect["chosen"], render_text(res, explain=True)
    assert chosen.target is not None and chosen.target.tag == expect["target"]
    by_label = {c.label: c for c in res.candidates}
    for label, fragment in expect.get("reasons", {}).items():
        assert fragment in by_label[label].reason, (label, by_label[label].reason)
    for fragment in expect.get("notes", []):
        assert any(fragment in n for n in res.notes), res.notes
    assert all(c.verdict is not Verdict.CHOSEN for c in res.candidates[1:])
