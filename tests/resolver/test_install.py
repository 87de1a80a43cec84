"""Install from a static mirror (file://) and a loopback HTTP server, with faults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import phi_get
import pytest
from phi_get.manifests.artifact import load_artifact_folder
from phi_get.resolver.errors import IntegrityError, SourceError
from phi_get.resolver.store import Store

X86 = "pi-board"  # any profile whose CPU the test artifacts target (cpu-arm64)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_install_from_file_mirror_places_verified_folder(mirror: Any, home: Path) -> None:
    root, manifests = mirror
    path = phi_get.install("tiny-model", registry=root.as_uri(), device=X86)
    m = load_artifact_folder(path)  # every file present, sizes and sha256 match, nothing extra
    assert m.digest == manifests[1].digest  # newest version
    assert path == home / "artifacts" / "sha256" / m.digest.removeprefix("sha256:")
    assert not any((home / "tmp").iterdir()) and not any((home / "partial").iterdir())


def test_install_over_http_shares_blobs_across_versions(served: Any, home: Path) -> None:
    new = phi_get.install("tiny-model", registry=served.url, device=X86)
    old = phi_get.install("tiny-model==0.1.0", registry=served.url, device=X86)
    assert new != old
    assert os.stat(new / "tokenizer.json").st_ino == os.stat(old / "tokenizer.json").st_ino
    blobs = list((home / "blobs" / "sha256").iterdir())
    assert len(blobs) == 4  # two weights, one shared tokenizer, one config
    tokenizer_gets = [p for p, _ in served.stats.requests if p.endswith(_sha_of(new / "tokenizer.json"))]
    assert len(tokenizer_gets) == 1


def _sha_of(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_reinstall_is_a_no_op(served: Any, home: Path) -> None:
    first = phi_get.install("tiny-model", registry=served.url, device=X86)
    count = len(served.stats.requests)
    assert phi_get.install("tiny-model", registry=served.url, device=X86) == first
    assert len(served.stats.requests) == count + 1  # only the index revalidation (304)


def test_server_ignoring_range_still_installs(served: Any, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("phi_get.resolver.fetch._part_size", lambda size, workers: 65536)
    served.faults.ignore_range = True
    path = phi_get.install("tiny-model", registry=served.url, device=X86)
    load_artifact_folder(path)


def test_dropped_connections_are_resumed(served: Any, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("phi_get.resolver.fetch._part_size", lambda size, workers: 262144)
    served.faults.drop_after = 100_000
    served.faults.drop_count = 3
    path = phi_get.install("tiny-model", registry=served.url, device=X86)
    load_artifact_folder(path)


def test_corrupt_bytes_are_refused_and_nothing_is_placed(served: Any, home: Path) -> None:
    served.faults.corrupt = True
    with pytest.raises(IntegrityError, match=r"does not match: expected sha256:[0-9a-f]{64}, got sha256:") as exc:
        phi_get.install("tiny-model", registry=served.url, device=X86)
    assert exc.value.exit_code == 4
    assert not any((home / "artifacts" / "sha256").iterdir())
    assert not any((home / "blobs" / "sha256").iterdir())
    assert not list((home / "refs").rglob("*.*.*"))
    served.faults.corrupt = False  # the next run recovers
    load_artifact_folder(phi_get.install("tiny-model", registry=served.url, device=X86))


def test_registry_down_is_a_clear_error(served: Any, home: Path) -> None:
    served.faults.down = True
    with pytest.raises(SourceError, match=r"the source answered HTTP 503 \(http://127\.0\.0\.1:\d+/v1/models/tiny-model/index\.json\)") as exc:
        phi_get.install("tiny-model", registry=served.url, device=X86)
    assert exc.value.exit_code == 5


def test_unreachable_source_falls_through_to_the_next(mirror: Any, home: Path) -> None:
    path = phi_get.install("tiny-model", registry=["http://127.0.0.1:9", mirror[0].as_uri()], device=X86)
    load_artifact_folder(path)


def test_offline_uses_the_cached_index(served: Any, home: Path) -> None:
    phi_get.install("tiny-model==0.1.0", registry=served.url, device=X86)
    served.faults.down = True
    path = phi_get.install("tiny-model==0.1.0", registry=served.url, device=X86, offline=True)
    assert Store(home).find("tiny-model").path == path


def test_install_without_fallocate_or_fdatasync(served: Any, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "posix_fallocate", raising=False)  # as on macOS
    monkeypatch.delattr(os, "fdatasync", raising=False)
    load_artifact_folder(phi_get.install("tiny-model", registry=served.url, device=X86))


def test_offline_never_touches_the_network(served: Any, home: Path) -> None:
    phi_get.install("tiny-model==0.1.0", registry=served.url, device=X86)
    before = len(served.stats.requests)
    with pytest.raises(SourceError, match=r"offline, and this is not in the local cache \(http://127\.0\.0\.1:\d+"
                                          r"/v1/manifests/sha256/[0-9a-f]{64}\.json\)"):
        phi_get.install("tiny-model==0.2.0", registry=served.url, device=X86, offline=True)
    assert len(served.stats.requests) == before
    assert [i.version for i in Store(home).installed()] == ["0.1.0"]
