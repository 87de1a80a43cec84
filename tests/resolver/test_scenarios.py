"""Resolution scenarios as data files: index + device profile + policy -> expected choice or error.

Each file in tests/data/resolver/scenarios/ names a catalog (``catalog``:
a file of tests/data/resolver/catalogs/, default the small phi35-catalog.json),
a device (a profile of tests/data/resolver/devices/, a shipped sample profile,
or an inline profile), a requirement, a policy (default: the default policy,
``balanced``), and the expected choice (with reason fragments, notes and the
rule that decided between the top two) or the expected error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phi_get.manifests.device import device_profile_from_json
from phi_get.manifests.index import model_index_from_json
from phi_get.manifests.manifest import Format, Precision
from phi_get.resolver.detect import load_device
from phi_get.resolver.explain import no_match_error, render_text
from phi_get.resolver.resolve import Policy, Prefer, Verdict, parse_requirement, resolve

DATA = Path(__file__).parents[1] / "data" / "resolver"
SCENARIOS = sorted((DATA / "scenarios").glob("*.json"))


def _catalog(kit: Any, name: str | None = None) -> Any:
    doc = json.loads((DATA / "phi35-catalog.json" if name is None else DATA / "catalogs" / f"{name}.json").read_text())
    variants = []
    for v in doc["variants"]:
        entry = kit.compact_entry(v)
        if "source_precision" in doc:  # the checkpoint's dtype, recorded per entry as the index carries it
            entry["source_precision"] = doc["source_precision"]
        variants.append(entry)
    return model_index_from_json({"schema": "phi-get.index/v1", "name": doc["name"], "variants": variants})


def _device(spec: Any) -> Any:
    if not isinstance(spec, str):
        return device_profile_from_json(spec)
    path = DATA / "devices" / f"{spec}.json"
    return load_device(str(path) if path.is_file() else spec, environ={})


def _policy(d: dict[str, Any]) -> Policy:
    return Policy(
        prefer=Prefer(d.get("prefer", Policy().prefer)),
        format=Format(d["format"]) if "format" in d else None,
        precision=Precision(d["precision"]) if "precision" in d else None,
        context=d.get("context"), require_runtime=d.get("require_runtime", False),
        max_kl=d.get("max_kl"), min_top1=d.get("min_top1"),
    )


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path, kit: Any) -> None:
    sc = json.loads(path.read_text())
    catalog = _catalog(kit, sc.get("catalog"))
    res = resolve(parse_requirement(sc["requirement"]), _device(sc["device"]), catalog.entries,
                  _policy(sc.get("policy", {})))
    expect = sc["expect"]
    assert len(res.candidates) == len(catalog.entries)  # every candidate gets a verdict
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
    if "decided_by" in expect:
        assert f"by rule '{expect['decided_by']}'" in chosen.reason, chosen.reason
    assert res.candidates[0] == chosen  # the newest-first shortcut agrees with the full ranking
    assert all(c.verdict is not Verdict.CHOSEN for c in res.candidates[1:])


_VARIANT = st.fixed_dictionaries({
    "version": st.sampled_from(["0.9.0", "1.0.0", "1.1.0", "2.0.0rc1"]),
    "format": st.sampled_from(["gguf", "onnx", "mlx", "openvino"]),
    "precision": st.sampled_from(["int4", "int8", "fp16", "fp32"]),
    "weights_gb": st.floats(0.5, 20),
    "targets": st.lists(st.sampled_from(["cuda", "cuda-sm80", "metal", "qnn-npu", "intel-gpu", "cpu-x86_64",
                                         "cpu-x86_64-v3", "cpu-arm64"]), min_size=1, max_size=3, unique=True),
    "runtime": st.sampled_from(["llama-cpp-python>=0.3", "onnxruntime-genai>=0.5", "mlx-lm>=0.2"]),
    "yanked": st.sampled_from([None, None, None, "bad"]),
})


@settings(max_examples=150, deadline=None)
@given(variants=st.lists(_VARIANT, min_size=1, max_size=12),
       device=st.sampled_from(["gpu-server", "apple-laptop", "pi-board", "intel-ai-pc", "snapdragon-laptop",
                               *(str(p) for p in sorted((DATA / "devices").glob("*.json")))]),
       prefer=st.sampled_from(list(Prefer)), context=st.sampled_from([None, 512, 8192]))
def test_shortcut_matches_full_ranking(variants: list[dict[str, Any]], device: str, prefer: Prefer,
                                       context: int | None) -> None:
    import wirekit

    docs = []
    for i, v in enumerate(variants):
        d = {k: val for k, val in v.items() if val is not None}
        docs.append(wirekit.compact_entry({**d, "variant": f"v{i}"}))
    index = model_index_from_json({"schema": "phi-get.index/v1", "name": "m", "variants": docs})
    res = resolve(parse_requirement("m"), load_device(device, environ={}), index.entries,
                  Policy(prefer=prefer, context=context))
    full = res.candidates
    assert len(full) == len(variants)
    if res.chosen is None:
        assert all(c.verdict is Verdict.REJECTED for c in full)
    else:
        assert full[0] == res.chosen
        assert sum(c.verdict is Verdict.CHOSEN for c in full) == 1
