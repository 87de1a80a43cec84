"""The sample fleet shipped in resolver/profiles/fleet: phi.toml and its phi.lock.

The lock was written by `phi-get lock` against the demo's registry on the
default port; its artifacts' digests belong to that build, so this test checks
what stays true on any machine: the lock parses, it is up to date with
phi.toml and the shipped profiles (so `sync --locked` would not refuse it),
it pins one artifact per device class, and writing it again from its parsed
form gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

from phi_get.manifests.lockfile import lock_bytes, parse_lock
from phi_get.resolver.lock import load_project

FLEET = Path(__file__).resolve().parents[2] / "resolver" / "profiles" / "fleet"


def test_sample_lock_matches_its_project() -> None:
    project = load_project(FLEET)
    data = (FLEET / "phi.lock").read_bytes()
    lock = parse_lock(data)
    assert lock.inputs == project.inputs_digest
    assert sorted(dc.name for dc in lock.device_classes) == sorted(project.profiles)
    assert sorted(a.device_class for a in lock.artifacts) == sorted(project.profiles)
    assert lock_bytes(lock) == data
    chosen = {a.device_class: (a.variant, a.target) for a in lock.artifacts}
    assert chosen["gpu-server"][1].startswith("cuda")
    assert chosen["mac-laptop"][1] == "metal"
    assert chosen["edge-board"][1].startswith("cpu-arm64")
