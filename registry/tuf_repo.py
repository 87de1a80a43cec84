"""The registry's TUF repository: keys, roles, hashed bins, and signing on publish and yank.

Key layout (see registry/README.md, "Signing"):

* **offline** (kept by the operator, never on the server): ``root`` (the
  trust anchor clients pin) and ``targets`` (delegates every document to
  hashed bins, and lists the publisher keys of each model in the target
  :data:`~phi_get.manifests.signing.PUBLISHERS_TARGET`);
* **online** (in ``STORAGE/tuf/online/``, mode 0600): ``snapshot``,
  ``timestamp`` and ``bins`` (one key for the :data:`BIN_BITS`-bit succinct
  hashed bins ``bins-0`` .. ``bins-f``).

A publish or yank re-signs only the bins whose documents changed (the
model's index, its new manifest and signature, the catalog) plus snapshot
and timestamp; :meth:`TufRepository.sync` finds them by comparing target
lengths and hashes.  Metadata is written with consistent snapshots
(``N.role.json``) under ``STORAGE/tuf/metadata/``, which the live registry
serves at ``/v1/tuf/`` and :mod:`.export` copies into every mirror.

Imports :mod:`phi_get.manifests`, ``tuf`` and ``securesystemslib`` (the
latter two only when a repository is opened: a registry without signing
never imports them).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from phi_get.manifests.atomic import write_atomic
from phi_get.manifests.index import LAYOUT, index_path, manifest_path
from phi_get.manifests.signing import PUBLISHERS_TARGET, key_id_of_pem, signature_path

from .errors import BadRequestError, RegistryError

if TYPE_CHECKING:
    from securesystemslib.signer import Signer
    from tuf.api.metadata import Metadata

__all__ = [
    "BIN_BITS",
    "EXPIRY",
    "OFFLINE_ROLES",
    "ONLINE_ROLES",
    "SigningError",
    "TufRepository",
    "create_keys",
    "mirror_documents",
    "signing_status",
]

BIN_BITS: Final = 4
BIN_PREFIX: Final = "bins"
OFFLINE_ROLES: Final = ("root", "targets")
ONLINE_ROLES: Final = ("snapshot", "timestamp", "bins")
#: How long each role's metadata stays valid: short online roles make a freeze attack short-lived.
EXPIRY: Final = {"root": timedelta(days=365), "targets": timedelta(days=90), "bins": timedelta(days=30),
                 "snapshot": timedelta(days=7), "timestamp": timedelta(days=1)}
#: Online metadata is re-signed when less than this share of its validity is left.
_RENEW_SHARE: Final = 0.5
SIGNATURES_DIR: Final = "signatures"


class Registry(Protocol):
    """What this repository signs of a registry: its wire documents (registry/service.py's Registry has them).

    A protocol, so that the service can hold its repository and the
    repository read the service without the two modules importing each other.
    """

    def catalog_bytes(self) -> bytes: ...

    def model_names(self) -> list[str]: ...

    def index(self, name: str) -> tuple[bytes, str]: ...

    def manifests(self) -> list[tuple[str, bytes]]: ...


class SigningError(RegistryError, ValueError):
    """The signing keys or metadata are missing or do not fit (an operator's mistake, exit 2)."""


def _atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Metadata world-readable, keys 0o600 from their first byte (manifests/atomic.py)."""
    write_atomic(path, data, mode=mode)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def create_keys(folder: str | os.PathLike[str], roles: Iterable[str] = (*OFFLINE_ROLES, *ONLINE_ROLES)) -> dict[str, str]:
    """Generate ed25519 keys ``folder/<role>.pem`` (0600, refused if present); returns role -> key id."""
    from securesystemslib.signer import CryptoSigner

    out = {}
    root = Path(folder)
    for role in roles:
        target = root / f"{role}.pem"
        if target.exists():
            raise SigningError(f"{target} already exists: a key is never overwritten", hint="move it away first")
        signer = CryptoSigner.generate_ed25519()
        _atomic(target, signer.private_bytes, 0o600)
        out[role] = signer.public_key.keyid
    return out


def _load_signer(path: Path) -> Signer:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    try:
        return CryptoSigner(load_pem_private_key(path.read_bytes(), None))
    except FileNotFoundError:
        raise SigningError(f"no signing key at {path}", hint="`phi-get registry trust init` creates the keys") from None
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{path} is not an unencrypted PEM private key: {exc}") from None


@dataclass(frozen=True, kw_only=True, slots=True)
class _Target:
    length: int
    sha256: str


class TufRepository:
    """The metadata of one registry, under ``STORAGE/tuf``."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.metadata = self.folder / "metadata"
        self.online = self.folder / "online"
        self.signatures = self.folder / SIGNATURES_DIR

    @classmethod
    def of(cls, storage: str | os.PathLike[str]) -> TufRepository | None:
        """The repository of a registry storage folder, or None when signing was never set up there."""
        repo = cls(Path(storage) / "tuf")
        return repo if (repo.metadata / "timestamp.json").is_file() else None

    # ---- reading -------------------------------------------------------------------

    def _load(self, role: str) -> Metadata[Any]:
        from tuf.api.metadata import Metadata

        if role == "timestamp":
            return Metadata.from_file(str(self.metadata / "timestamp.json"))
        return Metadata.from_file(str(self.metadata / f"{self._version(role)}.{role}.json"))

    def _version(self, role: str) -> int:
        versions = [int(p.name.split(".", 1)[0]) for p in self.metadata.glob(f"*.{role}.json")
                    if p.name.split(".", 1)[0].isdigit()]
        if not versions:
            raise SigningError(f"no {role} metadata in {self.metadata}")
        return max(versions)

    def root_bytes(self) -> bytes:
        """The newest root metadata: what a client pins with ``phi-get trust add``."""
        return (self.metadata / f"{self._version('root')}.root.json").read_bytes()

    def file(self, name: str) -> bytes | None:
        """A metadata file by its served name (``timestamp.json``, ``3.root.json``); None when absent."""
        if "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".json"):
            return None
        try:  # a NUL byte or a name too long for the filesystem is a hostile name: absent, never a 500
            path = self.metadata / name
            return path.read_bytes() if path.is_file() else None
        except (OSError, ValueError):
            return None

    def signature(self, digest: str) -> bytes | None:
        path = self.signatures / f"{digest.removeprefix('sha256:')}.sig"
        return path.read_bytes() if path.is_file() else None

    def files(self) -> list[tuple[str, bytes]]:
        """Every served metadata file (name, bytes), for exports."""
        return [(p.name, p.read_bytes()) for p in sorted(self.metadata.glob("*.json")) if p.is_file()]

    # ---- writing -------------------------------------------------------------------

    def _write(self, md: Metadata[Any], signers: Iterable[Signer], role: str | None = None) -> None:
        from tuf.api.serialization.json import JSONSerializer

        md.signatures.clear()
        for signer in signers:
            md.sign(signer, append=True)
        role = role or md.signed.type
        data = md.to_bytes(JSONSerializer(compact=True))
        if role == "timestamp":
            _atomic(self.metadata / "timestamp.json", data)
        else:
            _atomic(self.metadata / f"{md.signed.version}.{role}.json", data)

    def init(self, offline: str | os.PathLike[str], registry: Registry | None = None) -> str:
        """Create version 1 of every role from the keys in ``offline`` (the online ones are copied in).

        Returns the root's sha256, which the operator publishes out of band.
        """
        from tuf.api.metadata import (
            Delegations,
            Key,
            Metadata,
            Root,
            Snapshot,
            SuccinctRoles,
            Targets,
            Timestamp,
        )

        if (self.metadata / "timestamp.json").exists():
            raise SigningError(f"{self.folder} already holds TUF metadata", hint="rotate keys instead of re-creating")
        keys = Path(offline)
        signers = {role: _load_signer(keys / f"{role}.pem") for role in (*OFFLINE_ROLES, *ONLINE_ROLES)}
        for role in ONLINE_ROLES:
            _atomic(self.online / f"{role}.pem", (keys / f"{role}.pem").read_bytes(), 0o600)
        now = _now()
        root = Root(expires=now + EXPIRY["root"], consistent_snapshot=True)
        for role in ("root", "targets", "snapshot", "timestamp"):
            root.add_key(signers[role].public_key, role)
        self._write(Metadata(root), [signers["root"]])
        targets = Targets(expires=now + EXPIRY["targets"])
        succinct = SuccinctRoles(keyids=[], threshold=1, bit_length=BIN_BITS, name_prefix=BIN_PREFIX)
        targets.delegations = Delegations(keys={}, succinct_roles=succinct)
        bins_key: Key = signers["bins"].public_key
        targets.add_key(bins_key)
        self._write(Metadata(targets), [signers["targets"]])
        for name in succinct.get_roles():
            self._write(Metadata(Targets(expires=now + EXPIRY["bins"])), [signers["bins"]], name)
        snap = Snapshot(expires=now + EXPIRY["snapshot"])
        self._write(Metadata(snap), [signers["snapshot"]])
        self._write(Metadata(Timestamp(expires=now + EXPIRY["timestamp"])), [signers["timestamp"]])
        self.sync(registry)
        return hashlib.sha256(self.root_bytes()).hexdigest()

    def _targets_of(self, registry: Registry | None, documents: Mapping[str, bytes] | None) -> dict[str, _Target]:
        docs: dict[str, bytes] = dict(documents or {})
        if registry is not None:
            docs[LAYOUT["catalog"]] = registry.catalog_bytes()
            for name in registry.model_names():
                docs[index_path(name)] = registry.index(name)[0]
            for digest, content in registry.manifests():
                docs[manifest_path(digest)] = content
        for sig in sorted(self.signatures.glob("*.sig")) if self.signatures.is_dir() else ():
            docs[signature_path("sha256:" + sig.stem)] = sig.read_bytes()
        return {path: _Target(length=len(b), sha256=hashlib.sha256(b).hexdigest()) for path, b in docs.items()}

    def sync(self, registry: Registry | None, *, force: bool = False,
             documents: Mapping[str, bytes] | None = None) -> list[str]:
        """Re-sign what changed (bins, then snapshot, then timestamp); returns the roles re-signed.

        ``force`` re-signs every online role (after an online key rotation, or to renew before expiry).
        Serialized by an flock on ``tuf/.lock``, so registry processes sharing one storage folder never
        hand out one version number twice.
        """
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return self._sync(registry, force, documents)

    def _sync(self, registry: Registry | None, force: bool, documents: Mapping[str, bytes] | None) -> list[str]:
        from tuf.api.metadata import MetaFile, TargetFile

        wanted = self._targets_of(registry, documents)
        top = self._load("targets").signed
        succinct = top.delegations.succinct_roles if top.delegations else None
        if succinct is None:
            raise SigningError("the targets metadata delegates to no hashed bins")
        by_bin: dict[str, dict[str, _Target]] = {name: {} for name in succinct.get_roles()}
        for path, target in wanted.items():
            by_bin[succinct.get_role_for_target(path)][path] = target
        bins_signer = _load_signer(self.online / "bins.pem")
        now = _now()
        changed: list[str] = []
        for name, targets in by_bin.items():
            md = self._load(name)
            have = {p: _Target(length=t.length, sha256=t.hashes.get("sha256", "")) for p, t in md.signed.targets.items()}
            if have == targets and not force and not self._stale(md.signed.expires, "bins", now):
                continue
            md.signed.targets = {p: TargetFile(length=t.length, hashes={"sha256": t.sha256}, path=p)
                                 for p, t in sorted(targets.items())}
            md.signed.version += 1
            md.signed.expires = now + EXPIRY["bins"]
            self._write(md, [bins_signer], name)
            changed.append(name)
        snap_md = self._load("snapshot")
        meta = {"targets.json": MetaFile(version=self._version("targets"))}
        for name in by_bin:
            meta[f"{name}.json"] = MetaFile(version=self._version(name))
        if meta != snap_md.signed.meta or force or self._stale(snap_md.signed.expires, "snapshot", now):
            snap_md.signed.meta = meta
            snap_md.signed.version += 1
            snap_md.signed.expires = now + EXPIRY["snapshot"]
            self._write(snap_md, [_load_signer(self.online / "snapshot.pem")])
            changed.append("snapshot")
        ts_md = self._load("timestamp")
        snap_version = self._version("snapshot")
        if ts_md.signed.snapshot_meta.version != snap_version or force or \
                self._stale(ts_md.signed.expires, "timestamp", now):
            ts_md.signed.snapshot_meta = MetaFile(version=snap_version)
            ts_md.signed.version += 1
            ts_md.signed.expires = now + EXPIRY["timestamp"]
            self._write(ts_md, [_load_signer(self.online / "timestamp.pem")])
            changed.append("timestamp")
        return changed

    @staticmethod
    def _stale(expires: datetime, role: str, now: datetime) -> bool:
        return expires - now < EXPIRY[role] * _RENEW_SHARE

    def store_signature(self, digest: str, body: bytes) -> None:
        """Keep a publisher signature of the manifest ``digest`` (it becomes a target at the next sync)."""
        from phi_get.manifests.errors import ManifestError
        from phi_get.manifests.signing import parse_signature_bundle

        try:
            parse_signature_bundle(body, document="uploaded signature")
        except ManifestError as exc:
            raise BadRequestError(str(exc)) from None
        _atomic(self.signatures / f"{digest.removeprefix('sha256:')}.sig", body)

    # ---- operator ceremonies (offline keys) ------------------------------------------

    def rotate_root(self, old_keys: str | os.PathLike[str], new_keys: str | os.PathLike[str],
                    *, threshold: int = 1) -> int:
        """A new root version whose root key is ``new_keys/root.pem``, signed by the old and the new key."""
        old = _load_signer(Path(old_keys) / "root.pem")
        new = _load_signer(Path(new_keys) / "root.pem")
        md = self._load("root")
        for keyid in list(md.signed.roles["root"].keyids):
            md.signed.revoke_key(keyid, "root")
        md.signed.add_key(new.public_key, "root")
        md.signed.roles["root"].threshold = threshold
        md.signed.version += 1
        md.signed.expires = _now() + EXPIRY["root"]
        self._write(md, [old, new])
        return int(md.signed.version)

    def rotate_online(self, role: str, offline: str | os.PathLike[str], registry: Registry | None) -> str:
        """Replace an online key (snapshot, timestamp or bins): a new key, re-signed by root or targets."""
        from securesystemslib.signer import CryptoSigner

        if role not in ONLINE_ROLES:
            raise SigningError(f"{role!r} is not an online role; online roles: {', '.join(ONLINE_ROLES)}")
        fresh = CryptoSigner.generate_ed25519()
        if role == "bins":
            md = self._load("targets")
            for keyid in list(md.signed.delegations.succinct_roles.keyids):
                md.signed.revoke_key(keyid)
            md.signed.add_key(fresh.public_key)
            md.signed.version += 1
            self._write(md, [_load_signer(Path(offline) / "targets.pem")])
        else:
            md = self._load("root")
            for keyid in list(md.signed.roles[role].keyids):
                md.signed.revoke_key(keyid, role)
            md.signed.add_key(fresh.public_key, role)
            md.signed.version += 1
            self._write(md, [_load_signer(Path(offline) / "root.pem")])
        _atomic(self.online / f"{role}.pem", fresh.private_bytes, 0o600)
        self.sync(registry, force=True)
        return str(fresh.public_key.keyid)

    def set_publishers(self, model: str, public_pems: Iterable[bytes], offline: str | os.PathLike[str],
                       registry: Registry | None) -> list[str]:
        """Set (or, with no keys, remove) the publisher keys of ``model``; signed by the offline targets key.

        Revoking a publisher key is setting the list without it: from the next
        refresh on, clients refuse artifacts signed by it.
        """
        from tuf.api.metadata import TargetFile

        md = self._load("targets")
        current = md.signed.targets.get(PUBLISHERS_TARGET)
        table: dict[str, dict[str, str]] = dict(current.custom.get("publishers", {})) if current else {}
        keys = {key_id_of_pem(pem): pem.decode() for pem in public_pems}
        if keys:
            table[model] = keys
        else:
            table.pop(model, None)
        body = json.dumps(table, sort_keys=True, separators=(",", ":")).encode()
        md.signed.targets[PUBLISHERS_TARGET] = TargetFile(
            length=len(body), hashes={"sha256": hashlib.sha256(body).hexdigest()}, path=PUBLISHERS_TARGET,
            unrecognized_fields={"custom": {"publishers": table}})
        md.signed.version += 1
        md.signed.expires = _now() + EXPIRY["targets"]
        self._write(md, [_load_signer(Path(offline) / "targets.pem")])
        self.sync(registry, force=False)
        return sorted(keys)


def mirror_documents(root: str | os.PathLike[str]) -> dict[str, bytes]:
    """Every layout document of a static mirror folder (catalog, indexes, manifests, signatures), by path.

    ``TufRepository(...).sync(None, documents=mirror_documents(DIR))`` signs a
    mirror assembled without a registry (and the bench signs its mirror so).
    """
    top = Path(root)
    found: dict[str, bytes] = {}
    for pattern in ("v1/models.json", "v1/models/*/index.json", "v1/manifests/sha256/*.json",
                    "v1/signatures/sha256/*.sig"):
        for path in sorted(top.glob(pattern)):
            found[path.relative_to(top).as_posix()] = path.read_bytes()
    return found


def signing_status(storage: str | os.PathLike[str], digest: str | None = None) -> Mapping[str, object]:
    """What the web catalog shows: is this registry signed, until when, and is a manifest publisher-signed.

    Cheap (reads a few small JSON files, imports no crypto): ``{"signed": bool,
    "timestamp_expires": str | None, "root_version": int | None,
    "publisher_signed": bool | None}``.
    """
    repo = TufRepository.of(storage)
    if repo is None:
        return {"signed": False, "timestamp_expires": None, "root_version": None, "publisher_signed": None}
    try:
        ts = json.loads((repo.metadata / "timestamp.json").read_bytes())["signed"]["expires"]
        root_version = repo._version("root")
    except (OSError, ValueError, KeyError, SigningError):
        return {"signed": False, "timestamp_expires": None, "root_version": None, "publisher_signed": None}
    signed_by = None if digest is None else repo.signature(digest) is not None
    return {"signed": True, "timestamp_expires": ts, "root_version": root_version, "publisher_signed": signed_by}
