"""TUF's attack classes, as real attacks on loopback, against the live registry and a static mirror.

Each test runs twice: ``live`` puts a tampering proxy (a hostile network or
CDN) in front of the real registry; ``mirror`` edits the files of a static
mirror exported by ``phi-get registry export`` and read over ``file://``
(a hostile mirror or USB stick).  The client is the real resolver with the
operator's root pinned; every refusal is a :class:`TrustError` that names
the source.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from phi_get.manifests.index import index_path
from phi_get.manifests.signing import TUF_PREFIX
from phi_get.resolver.trust import TrustError

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("tuf") is None,
    reason="the registry or the signing dependencies are not installed")]

from trustkit import SignedRegistry, TamperProxy, client_sources


@pytest.fixture(autouse=True)
def _signed_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PHI_GET_UNSIGNED", raising=False)


@dataclass
class Channel:
    """How the attacker reaches the client: ``plant`` replaces what a layout path serves."""

    kind: str
    url: str
    reg: SignedRegistry
    plant: Callable[[str, object], None]
    refresh: Callable[[], None]
    current: Callable[[str], bytes]


@pytest.fixture(params=["live", "mirror"])
def channel(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Channel]:
    reg = SignedRegistry(tmp_path / "r")
    reg.publish("0.1.0")
    if request.param == "live":
        proxy = TamperProxy(reg.url)

        def plant(path: str, value: object) -> None:
            proxy.overrides["/" + path] = value  # type: ignore[assignment]

        def current(path: str) -> bytes:
            import urllib.request

            with urllib.request.urlopen(f"{reg.url}/{path}") as r:
                return r.read()

        yield Channel("live", proxy.url, reg, plant, lambda: None, current)
        proxy.close()
    else:
        mirror = reg.export(tmp_path / "mirror")

        def plant(path: str, value: object) -> None:
            target = mirror / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(value, bytes):
                target.write_bytes(value)
            elif isinstance(value, int):
                target.unlink(missing_ok=True)
            else:  # "never ends": a sparse file far past any metadata limit
                with open(target, "wb") as fh:
                    fh.truncate(8 << 30)

        yield Channel("mirror", mirror.as_uri(), reg, plant, lambda: reg.export(mirror),
                      lambda p: (mirror / p).read_bytes())
    reg.close()


def versions(ch: Channel, home: Path, *, pin: bool = True) -> list[str]:
    src = client_sources(home, ch.url, ch.reg.root() if pin else None)
    _, index = src.find_index("tiny-phi")
    return sorted(str(e.version) for e in index.entries)


def _resign(ch: Channel, role: str, mutate: Callable[[object], None], *, keys: list[object] | None = None) -> bytes:
    """Metadata of ``role`` changed by ``mutate`` and signed with the registry's own online key (or ``keys``)."""
    from phi_get.registry.tuf_repo import _load_signer
    from tuf.api.serialization.json import JSONSerializer

    md = ch.reg.repo._load(role)
    mutate(md.signed)
    md.signatures.clear()
    for signer in keys or [_load_signer(ch.reg.repo.online / f"{role}.pem")]:
        md.sign(signer, append=True)
    return md.to_bytes(JSONSerializer(compact=True))


def test_signed_source_verifies(channel: Channel, tmp_path: Path) -> None:
    """Baseline: an untampered signed source resolves, from the registry and from its mirror."""
    assert versions(channel, tmp_path / "home") == ["0.1.0"]


def test_rollback_to_an_older_state_is_refused(channel: Channel, tmp_path: Path) -> None:
    """Rollback: an older index, and an older (validly signed) timestamp, after the client saw a newer one."""
    old_index = channel.current(index_path("tiny-phi"))
    old_timestamp = channel.current(TUF_PREFIX + "timestamp.json")
    channel.reg.publish("0.2.0")
    channel.refresh()
    home = tmp_path / "home"
    assert versions(channel, home) == ["0.1.0", "0.2.0"]
    channel.plant(index_path("tiny-phi"), old_index)
    with pytest.raises(TrustError, match="does not match its signed target"):
        versions(channel, home, pin=False)
    channel.plant(TUF_PREFIX + "timestamp.json", old_timestamp)
    with pytest.raises(TrustError, match="went back a version|rollback"):
        versions(channel, home, pin=False)


def test_freeze_with_expired_metadata_is_refused(channel: Channel, tmp_path: Path) -> None:
    """Freeze: a replayed timestamp that was validly signed but has expired."""
    def expire(signed: object) -> None:
        signed.version += 1  # type: ignore[attr-defined]
        signed.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)  # type: ignore[attr-defined]

    channel.plant(TUF_PREFIX + "timestamp.json", _resign(channel, "timestamp", expire))
    with pytest.raises(TrustError, match="expired"):
        versions(channel, tmp_path / "home")


def test_mix_and_match_is_refused(channel: Channel, tmp_path: Path) -> None:
    """Mix-and-match: an index the snapshot does not list, and an old bin served under the current version."""
    old_index = channel.current(index_path("tiny-phi"))
    repo = channel.reg.repo
    succinct = repo._load("targets").signed.delegations.succinct_roles
    bin_name = succinct.get_role_for_target(index_path("tiny-phi"))
    old_bin = (repo.metadata / f"{repo._version(bin_name)}.{bin_name}.json").read_bytes()
    channel.reg.publish("0.2.0")
    channel.refresh()
    channel.plant(index_path("tiny-phi"), old_index)
    with pytest.raises(TrustError, match="does not match its signed target"):
        versions(channel, tmp_path / "home")
    channel.plant(index_path("tiny-phi"), _fresh_index(channel))  # the index is genuine again ...
    channel.plant(f"{TUF_PREFIX}{repo._version(bin_name)}.{bin_name}.json", old_bin)  # ... its bin is not
    with pytest.raises(TrustError, match="version|snapshot|refused|could not be read"):
        versions(channel, tmp_path / "home2")


def _fresh_index(ch: Channel) -> bytes:
    return ch.reg.registry.index("tiny-phi")[0]


def test_endless_metadata_is_cut_off(channel: Channel, tmp_path: Path) -> None:
    """Endless data: a timestamp file that never ends is read to its limit, then refused."""
    def forever() -> Iterator[bytes]:
        while True:
            yield b"{" * 65536

    channel.plant(TUF_PREFIX + "timestamp.json", forever)
    with pytest.raises(TrustError, match="over|length|exceed"):
        versions(channel, tmp_path / "home")


def test_threshold_is_not_met_by_one_key_counted_twice(channel: Channel, tmp_path: Path) -> None:
    """Threshold abuse: root asks two timestamp keys; one key's signature listed twice is not two."""
    from phi_get.registry.tuf_repo import _load_signer
    from securesystemslib.signer import CryptoSigner

    repo = channel.reg.repo
    second = CryptoSigner.generate_ed25519()
    first = _load_signer(repo.online / "timestamp.pem")

    def two_keys(signed: object) -> None:
        signed.add_key(second.public_key, "timestamp")  # type: ignore[attr-defined]
        signed.roles["timestamp"].threshold = 2  # type: ignore[attr-defined]
        signed.version += 1  # type: ignore[attr-defined]

    root2 = _resign(channel, "root", two_keys, keys=[_load_signer(channel.reg.keys / "root.pem")])
    channel.plant(TUF_PREFIX + "2.root.json", root2)

    def bump(signed: object) -> None:
        signed.version += 1  # type: ignore[attr-defined]

    good = _resign(channel, "timestamp", bump, keys=[first, second])
    channel.plant(TUF_PREFIX + "timestamp.json", good)
    assert versions(channel, tmp_path / "home") == ["0.1.0"]  # both keys: accepted

    def bump2(signed: object) -> None:
        signed.version += 2  # type: ignore[attr-defined]

    import json

    doubled = json.loads(_resign(channel, "timestamp", bump2, keys=[first]))
    doubled["signatures"] = doubled["signatures"] * 2
    channel.plant(TUF_PREFIX + "timestamp.json", json.dumps(doubled).encode())
    with pytest.raises(TrustError, match="threshold|signature|refused"):
        versions(channel, tmp_path / "home", pin=False)


def test_root_rotation_old_keys_refused_and_skipped_versions_caught_up(channel: Channel, tmp_path: Path) -> None:
    """Root rotation: a client pinned to v1 walks v2, v3, v4; then the rotated-out timestamp key is refused."""
    from phi_get.registry.tuf_repo import _load_signer, create_keys

    reg = channel.reg
    home = tmp_path / "home"
    assert versions(channel, home) == ["0.1.0"]
    new1, new2 = tmp_path / "k1", tmp_path / "k2"
    create_keys(new1, ["root"])
    create_keys(new2, ["root"])
    old_timestamp_key = _load_signer(reg.repo.online / "timestamp.pem")
    assert reg.repo.rotate_root(reg.keys, new1) == 2
    assert reg.repo.rotate_root(new1, new2) == 3
    reg.repo.rotate_online("timestamp", new2, reg.registry)  # root v4, signed by the newest root key
    channel.refresh()
    assert versions(channel, home, pin=False) == ["0.1.0"]  # the client skipped v2-v4 and caught up
    assert versions(channel, tmp_path / "fresh") == ["0.1.0"]  # a client pinned to v1 today, too

    def bump(signed: object) -> None:
        signed.version += 5  # type: ignore[attr-defined]

    channel.plant(TUF_PREFIX + "timestamp.json", _resign(channel, "timestamp", bump, keys=[old_timestamp_key]))
    with pytest.raises(TrustError, match="threshold|signature"):
        versions(channel, home, pin=False)
    # a root v5 signed by the rotated-out v1 key only: refused as well
    def bump_root(signed: object) -> None:
        signed.version += 1  # type: ignore[attr-defined]

    channel.plant(TUF_PREFIX + "timestamp.json", channel.current(TUF_PREFIX + "timestamp.json")
                  if channel.kind == "live" else (reg.repo.metadata / "timestamp.json").read_bytes())
    channel.plant(TUF_PREFIX + "5.root.json",
                  _resign(channel, "root", bump_root, keys=[_load_signer(reg.keys / "root.pem")]))
    with pytest.raises(TrustError, match="threshold|signature"):
        versions(channel, home, pin=False)


def test_refresh_failing_halfway_uses_nothing_new(channel: Channel, tmp_path: Path) -> None:
    """A refresh that fails halfway (new timestamp, snapshot unreadable): nothing of the new state is used."""
    home = tmp_path / "home"
    assert versions(channel, home) == ["0.1.0"]
    channel.reg.publish("0.2.0")
    channel.refresh()
    snap = f"{TUF_PREFIX}{channel.reg.repo._version('snapshot')}.snapshot.json"
    good = channel.current(snap)
    channel.plant(snap, b'{"signed": "cut off')
    with pytest.raises(TrustError):
        versions(channel, home, pin=False)
    channel.plant(snap, good)
    if channel.kind == "live":
        channel.plant(snap, good)
    assert versions(channel, home, pin=False) == ["0.1.0", "0.2.0"]


def test_hostile_names_reach_no_file(channel: Channel, tmp_path: Path) -> None:
    """Hostile role and target names: traversal in metadata names served nothing; a hostile model name is refused."""
    import urllib.error
    import urllib.request

    for name in ("..%2Fcatalog.sqlite3", "..%2F..%2FLAYOUT", "%2E%2E%2Fonline%2Ftimestamp.pem", ".lock",
                 "a%00.json", "x" * 300 + ".json"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{channel.reg.url}/v1/tuf/{name}")
        assert err.value.code in (400, 404)
        err.value.close()
    src = client_sources(tmp_path / "home", channel.url, channel.reg.root())
    from phi_get.manifests.errors import ManifestError

    with pytest.raises(ManifestError):
        src.find_index("../../v1/tuf/timestamp")
    # a target the operator never signed (mix of an unsigned path into a signed source) is refused
    with pytest.raises(TrustError, match="not listed"):
        src.sources[0].verify("v1/models/../../etc/passwd", b"x")


def test_mirror_removing_a_yank_mark_is_refused(channel: Channel, tmp_path: Path) -> None:
    """A mirror that removes a yank mark (so the yanked version installs again): refused."""
    import json

    from phi_get.registry.tokens import Principal

    channel.reg.registry.yank(Principal(token_id="t", scopes=frozenset({"admin"})), "tiny-phi", "0.1.0", "broken")
    channel.refresh()
    doc = json.loads(channel.current(index_path("tiny-phi")))
    assert doc["variants"][0]["yanked"] == "broken"
    del doc["variants"][0]["yanked"]
    channel.plant(index_path("tiny-phi"), json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    with pytest.raises(TrustError, match="does not match its signed target"):
        versions(channel, tmp_path / "home")


def test_mirror_dropping_the_newest_version_is_refused(channel: Channel, tmp_path: Path) -> None:
    """A mirror that drops the newest version (a silent rollback of one model): refused."""
    import json

    channel.reg.publish("0.2.0")
    channel.refresh()
    doc = json.loads(channel.current(index_path("tiny-phi")))
    doc["variants"] = [v for v in doc["variants"] if v["version"] != "0.2.0"]
    channel.plant(index_path("tiny-phi"), json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    with pytest.raises(TrustError, match="does not match its signed target"):
        versions(channel, tmp_path / "home")


def test_withheld_index_is_refused(channel: Channel, tmp_path: Path) -> None:
    """Withholding: a source that answers 404 for an index its signed targets list (to push a client to the
    next source, or to hide a model) is refused, not taken for "this source does not list it"."""
    channel.plant(index_path("tiny-phi"), 404)
    with pytest.raises(TrustError, match="withheld"):
        versions(channel, tmp_path / "home")


def test_unsigned_source_refused_unless_accepted(channel: Channel, tmp_path: Path) -> None:
    """No pinned root and no opt-out: refused; the opt-out is per source (another URL stays refused)."""
    home = tmp_path / "home"
    with pytest.raises(TrustError, match="no root of trust is pinned"):
        versions(channel, home, pin=False)
    from phi_get.resolver.sources import sources_from
    from phi_get.resolver.trust import allow_unsigned

    allow_unsigned(home, "http://127.0.0.1:1/other")
    with pytest.raises(TrustError, match="no root of trust is pinned"):
        versions(channel, home, pin=False)
    allow_unsigned(home, channel.url)
    srcs = sources_from([channel.url], home, environ={})
    assert not srcs.sources[0].signed
    assert os.environ.get("PHI_GET_UNSIGNED") is None


def test_warm_cache_still_refuses_expiry(channel: Channel, tmp_path: Path) -> None:
    """Freeze against a warm client: the verified cache is used only while every metadata file is unexpired."""
    import time

    def soon(signed: object) -> None:
        signed.version += 1  # type: ignore[attr-defined]
        signed.expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)  # type: ignore[attr-defined]

    channel.plant(TUF_PREFIX + "timestamp.json", _resign(channel, "timestamp", soon))
    home = tmp_path / "home"
    assert versions(channel, home) == ["0.1.0"]
    assert versions(channel, home, pin=False) == ["0.1.0"]  # warm: same timestamp bytes, not expired
    time.sleep(2.5)
    with pytest.raises(TrustError, match="expired"):
        versions(channel, home, pin=False)


def test_warm_cache_follows_a_root_rotation_that_revokes_the_timestamp_key(channel: Channel, tmp_path: Path) -> None:
    """Root rotation against a warm client: a new root that revokes the timestamp key makes the unchanged
    timestamp (signed by the revoked key) unacceptable, even though its bytes were verified before."""
    from phi_get.registry.tuf_repo import _load_signer
    from securesystemslib.signer import CryptoSigner

    home = tmp_path / "home"
    assert versions(channel, home) == ["0.1.0"]
    fresh = CryptoSigner.generate_ed25519()

    def revoke(signed: object) -> None:
        for keyid in list(signed.roles["timestamp"].keyids):  # type: ignore[attr-defined]
            signed.revoke_key(keyid, "timestamp")  # type: ignore[attr-defined]
        signed.add_key(fresh.public_key, "timestamp")  # type: ignore[attr-defined]
        signed.version += 1  # type: ignore[attr-defined]

    channel.plant(TUF_PREFIX + "2.root.json",
                  _resign(channel, "root", revoke, keys=[_load_signer(channel.reg.keys / "root.pem")]))
    with pytest.raises(TrustError, match="threshold|signature"):
        versions(channel, home, pin=False)


def test_warm_resolve_imports_no_tuf(channel: Channel, tmp_path: Path) -> None:
    """Cost: a warm, already-verified cache answers without importing tuf or checking a signature."""
    import json
    import subprocess
    import sys

    home = tmp_path / "home"
    assert versions(channel, home) == ["0.1.0"]
    script = ("import sys, json; from pathlib import Path; from phi_get.resolver.sources import sources_from;"
              f"s = sources_from([{channel.url!r}], Path({str(home)!r}), environ={{}});"
              "s.find_index('tiny-phi'); print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
              "('tuf', 'securesystemslib', 'cryptography'))))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout) == []


def test_hostile_role_name_writes_nothing_outside_the_trust_folder(channel: Channel, tmp_path: Path) -> None:
    """Hostile role names: metadata delegating to a role named ``../../../escape`` (even signed with the right
    keys) is never fetched (a ``file://`` path would unquote it) nor cached; the lookup is refused."""
    import urllib.parse

    from phi_get.registry.tuf_repo import _load_signer
    from tuf.api.metadata import DelegatedRole, Delegations, Metadata, MetaFile, Targets
    from tuf.api.serialization.json import JSONSerializer

    repo = channel.reg.repo
    evil = "../../../escape"
    bins_key = _load_signer(repo.online / "bins.pem")

    def delegate(signed: object) -> None:
        signed.delegations = Delegations(  # type: ignore[attr-defined]
            keys={bins_key.public_key.keyid: bins_key.public_key},
            roles={evil: DelegatedRole(name=evil, keyids=[bins_key.public_key.keyid], threshold=1,
                                       terminating=True, paths=["v1/models/*/index.json"])})
        signed.version += 1  # type: ignore[attr-defined]

    targets = _resign(channel, "targets", delegate, keys=[_load_signer(channel.reg.keys / "targets.pem")])
    role = Metadata(Targets(expires=datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)))
    role.sign(bins_key)
    quoted = urllib.parse.quote(evil, "")
    tv = repo._version("targets") + 1

    def snapshot(signed: object) -> None:
        signed.meta = {"targets.json": MetaFile(version=tv), f"{evil}.json": MetaFile(version=1)}  # type: ignore[attr-defined]
        signed.version += 1  # type: ignore[attr-defined]

    snap = _resign(channel, "snapshot", snapshot)
    sv = repo._version("snapshot") + 1

    def timestamp(signed: object) -> None:
        signed.snapshot_meta = MetaFile(version=sv)  # type: ignore[attr-defined]
        signed.version += 1  # type: ignore[attr-defined]

    channel.plant(f"{TUF_PREFIX}{tv}.targets.json", targets)
    channel.plant(f"{TUF_PREFIX}{sv}.snapshot.json", snap)
    channel.plant(f"{TUF_PREFIX}1.{quoted}.json", role.to_bytes(JSONSerializer(compact=True)))
    channel.plant(TUF_PREFIX + "timestamp.json", _resign(channel, "timestamp", timestamp))
    home = tmp_path / "home"
    with pytest.raises(TrustError):  # the hostile role lists no target: the index is "not listed"
        versions(channel, home)
    written = {p.relative_to(home).as_posix() for p in home.rglob("*escape*")}
    assert written == set(), written  # the hostile name was never even fetched
    assert not (tmp_path / "escape.json").exists() and not (home.parent / "escape.json").exists()
