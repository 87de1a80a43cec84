"""The client's trust in its sources: a pinned TUF root per source, or an explicit "unsigned".

**Where trust is stored.**  ``HOME/trust/<key>/`` per source (``<key>`` is
the first 16 hex digits of the sha256 of the source's stored URL):
``source`` (the URL, for people), ``metadata/`` (python-tuf's cache:
``root.json``, ``root_history/``, ``timestamp.json``, ``snapshot.json``,
``targets.json`` and the bins).  ``phi-get trust add URL ROOT.json`` pins a
root that the operator handed over out of band (its sha256 is printed, to
compare with the one the operator published); nothing is trusted on first
use.  ``HOME/trust/unsigned`` lists, one a line, the sources the user
accepted without signatures (``phi-get trust allow-unsigned URL``);
``PHI_GET_UNSIGNED`` (URLs separated by spaces or commas, or ``*``) does the
same for one process.

**Policy.**  A source with a pinned root is verified: before any index,
catalog, manifest or publisher signature of it is used, TUF's client
workflow runs once per process (python-tuf's ``ngclient.Updater``: root
rotation through every intermediate version, timestamp, snapshot,
targets and the hashed bins; versions never go back, expired metadata is
refused, thresholds count distinct keys), and the bytes must match the
length and sha256 of the signed target of their layout path.  A source
with no pinned root is refused unless it was marked unsigned; then lock
files and explanations say so.

The metadata is read through :mod:`.transport` (the same deadlines, size
limits, redirect and credential rules as every other document), from
``{base}/v1/tuf/``, whether the source is a live registry, a static mirror
over http or a ``file://`` folder.  Offline, an http source is checked
against its cached metadata (expiry still applies).

``tuf`` and ``securesystemslib`` are imported only when a signed source is
first read, so unsigned sources and ``--help`` never pay for them.
Imports the standard library, :mod:`phi_get.manifests` and the resolver's
:mod:`.transport` and :mod:`.errors`.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from phi_get.manifests.errors import DocumentTooLargeError, ExitCode
from phi_get.manifests.signing import PUBLISHERS_TARGET, TUF_PREFIX
from phi_get.manifests.urls import redact_text, strip_credentials

from . import transport
from .errors import ResolverError, SourceError
from .trust_store import UNSIGNED_ENV, trust_dir, unsigned_listed

if TYPE_CHECKING:
    from tuf.ngclient.updater import Updater

__all__ = [
    "UNSIGNED_ENV",
    "TrustError",
    "Verifier",
    "add_root",
    "allow_unsigned",
    "policy_for",
    "trust_dir",
]

_MAX_ROOT: Final = 512_000


class TrustError(ResolverError, ValueError):
    """A source's documents could not be verified, or the source is not trusted at all (exit 4)."""

    exit_code = ExitCode.INTEGRITY

    def __init__(self, message: str, *, source: str, hint: str | None = None) -> None:
        self.source = redact_text(source)
        super().__init__(redact_text(f"{message} (source {self.source})"))
        self.hint = hint


def policy_for(stored: str, fetch_base: str, home: Path, *, offline: bool,
               environ: Mapping[str, str] | None = None) -> Verifier | None:
    """The verifier of a source, None when the user marked it unsigned; refused when neither."""
    folder = trust_dir(home, stored)
    if (folder / "metadata" / "root.json").exists():
        # a file:// mirror is local: read even offline (a USB stick is how an offline device updates)
        return Verifier(stored=stored, fetch_base=fetch_base, folder=folder,
                        offline=offline and not stored.startswith("file://"))
    if unsigned_listed(home, stored, os.environ if environ is None else environ):
        return None
    raise TrustError("no root of trust is pinned for this source, and it was not marked unsigned",
                     source=stored,
                     hint=f"pin the operator's root: `phi-get trust add {stored} root.json`; or accept it unsigned: "
                          f"`phi-get trust allow-unsigned {stored}` (or {UNSIGNED_ENV}={stored})")


def add_root(home: Path, url: str, root_bytes: bytes) -> tuple[str, int, str]:
    """Pin ``root_bytes`` as the root of trust of ``url``; returns (stored URL, root version, sha256).

    The root must be valid TUF root metadata signed by its own threshold of
    root keys.  Pinning again replaces the pinned root and drops the cached
    metadata (a deliberate reset, e.g. after the operator lost the old keys).
    """
    from tuf.api.exceptions import RepositoryError
    from tuf.api.metadata import Metadata

    stored = strip_credentials(url).rstrip("/")
    if len(root_bytes) > _MAX_ROOT:
        raise TrustError(f"a root file is at most {_MAX_ROOT} bytes", source=stored)
    try:
        md: Metadata[Any] = Metadata.from_bytes(root_bytes)
        if md.signed.type != "root":
            raise TrustError(f"the file is {md.signed.type} metadata, not root", source=stored)
        md.signed.verify_delegate("root", md.signed_bytes, md.signatures)
    except (RepositoryError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, TrustError):
            raise
        raise TrustError(f"not a valid self-signed TUF root: {exc}", source=stored) from None
    folder = trust_dir(home, stored)
    meta = folder / "metadata"
    if meta.exists():
        import shutil

        shutil.rmtree(meta)
    meta.mkdir(parents=True)
    tmp = meta / ".root.json.tmp"
    tmp.write_bytes(root_bytes)
    os.replace(tmp, meta / "root.json")
    (folder / "source").write_text(stored + "\n")
    return stored, int(md.signed.version), hashlib.sha256(root_bytes).hexdigest()


def allow_unsigned(home: Path, url: str) -> str:
    """Record that the user accepts ``url`` without signatures; returns the stored URL."""
    stored = strip_credentials(url).rstrip("/")
    path = home / "trust" / "unsigned"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text().splitlines() if path.exists() else []
    if stored not in lines:
        with open(path, "a") as fh:
            fh.write(stored + "\n")
    return stored


def _fetcher(fetch_base: str, local: Path, offline: bool) -> Any:
    """A python-tuf fetcher over phi-get's transport (built lazily: it subclasses a tuf class)."""
    from tuf.api import exceptions as tuf_exc
    from tuf.ngclient.fetcher import FetcherInterface

    class _TransportFetcher(FetcherInterface):
        def _fetch(self, url: str) -> Iterator[bytes]:
            yield self.download_bytes(url, 16 << 20)

        def download_bytes(self, url: str, max_length: int) -> bytes:
            name = url.rpartition("/")[2]
            plain = urllib.parse.unquote(name)
            if "/" in plain or "\\" in plain or plain.startswith("."):
                # a role named "../x": python-tuf quotes it, but a file:// path would be unquoted again
                raise tuf_exc.DownloadHTTPError(f"no metadata file may be named {plain!r}", 404)
            if offline:
                return self._cached(name)
            try:
                if url.startswith("file://"):
                    doc = transport.read_file(url, limit=max_length)
                else:
                    doc = transport.get_document(url, limit=max_length)
            except DocumentTooLargeError:
                raise tuf_exc.DownloadLengthMismatchError(f"{redact_text(url)} is over {max_length} bytes") from None
            except SourceError as exc:
                raise tuf_exc.DownloadError(str(exc)) from None
            if doc.status != 200:
                raise tuf_exc.DownloadHTTPError(f"{redact_text(url)} answered {doc.status}", doc.status)
            return doc.body

        def _cached(self, name: str) -> bytes:
            # Offline: serve what an earlier refresh verified; a newer root "does not exist".
            role = name.split(".", 1)[1] if name.split(".", 1)[0].isdigit() else name
            path = local / role
            if role == "root.json" or not path.is_file():
                raise tuf_exc.DownloadHTTPError(f"offline: {name} is not cached", 404)
            return path.read_bytes()

    return _TransportFetcher()


class Verifier:
    """Checks a signed source's documents against its TUF targets; refreshes once per process."""

    def __init__(self, *, stored: str, fetch_base: str, folder: Path, offline: bool) -> None:
        self.stored = stored
        self.fetch_base = fetch_base
        self.folder = folder
        self.offline = offline
        self._updater: Updater | None = None
        self._fast: dict[str, Any] | None = None
        self._fast_tried = False

    def __repr__(self) -> str:  # never shows credentials
        return f"Verifier({self.stored!r})"

    def _ready(self) -> Updater:
        if self._updater is not None:
            return self._updater
        from tuf.api import exceptions as tuf_exc
        from tuf.ngclient.config import UpdaterConfig
        from tuf.ngclient.updater import Updater

        meta = self.folder / "metadata"
        base = f"{self.fetch_base.rstrip('/')}/{TUF_PREFIX}"
        try:
            updater = Updater(metadata_dir=str(meta), metadata_base_url=base, bootstrap=None,
                              fetcher=_fetcher(base, meta, self.offline),
                              config=UpdaterConfig(max_root_rotations=64, max_delegations=32))
            updater.refresh()
        except tuf_exc.ExpiredMetadataError as exc:
            raise TrustError(f"signed metadata has expired: {exc} (a frozen or stale source)", source=self.stored,
                             hint="ask the operator to re-sign, or use another mirror") from None
        except tuf_exc.BadVersionNumberError as exc:
            raise TrustError(f"signed metadata went back a version: {exc} (a rollback)", source=self.stored) from None
        except tuf_exc.UnsignedMetadataError as exc:
            raise TrustError(f"signed metadata lacks its threshold of valid signatures: {exc}",
                             source=self.stored) from None
        except tuf_exc.DownloadError as exc:
            raise TrustError(f"signed metadata could not be fetched: {exc}", source=self.stored) from None
        except (tuf_exc.RepositoryError, ValueError, OSError) as exc:
            raise TrustError(f"signed metadata was refused: {type(exc).__name__}: {exc}", source=self.stored) from None
        self._updater = updater
        return updater

    # ---- the warm path: what an earlier full refresh verified, while the source's timestamp is unchanged ----
    #
    # ``verified.json`` records, after a full TUF refresh, the sha256 of the trusted timestamp.json, the
    # trusted root version, the earliest expiry of every metadata file trusted, and the target infos looked
    # up.  A later process fetches timestamp.json (as TUF would) and probes the next root version: when the
    # timestamp is byte-identical to the verified one (so its signatures were checked already), no newer
    # root exists and nothing has expired, the recorded target infos are the ones TUF would return, with no
    # tuf import and no signature check.  Anything else runs the full workflow.

    def _get(self, name: str, limit: int) -> bytes | None:
        """A metadata file of the source, or None when absent or unreadable (the full workflow reports why)."""
        if self.offline:
            path = self.folder / "metadata" / name
            return path.read_bytes() if name == "timestamp.json" and path.is_file() else None
        url = f"{self.fetch_base.rstrip('/')}/{TUF_PREFIX}{name}"
        try:
            doc = transport.read_file(url, limit=limit) if url.startswith("file://") else \
                transport.get_document(url, limit=limit)
        except (SourceError, DocumentTooLargeError):
            return None
        return doc.body if doc.status == 200 else None

    def _fast_table(self) -> dict[str, Any] | None:
        if self._fast_tried:
            return self._fast
        self._fast_tried = True
        try:
            record = json.loads((self.folder / "verified.json").read_bytes())
            expires = datetime.fromisoformat(record["expires"])
            digest, root_version, table = record["timestamp_sha256"], int(record["root_version"]), record["targets"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(table, dict) or datetime.now(UTC) >= expires:
            return None
        timestamp = self._get("timestamp.json", 16384)
        if timestamp is None or hashlib.sha256(timestamp).hexdigest() != digest:
            return None
        if self._get(f"{root_version + 1}.root.json", _MAX_ROOT) is not None:
            return None  # a root rotation: the full workflow walks it
        self._fast = table
        return table

    def _remember(self, rel: str, info: dict[str, Any] | None) -> None:
        meta = self.folder / "metadata"
        try:
            timestamp = (meta / "timestamp.json").read_bytes()
            docs = [json.loads(p.read_bytes())["signed"] for p in meta.glob("*.json")]
            root_version = json.loads((meta / "root.json").read_bytes())["signed"]["version"]
            expires = min(datetime.fromisoformat(d["expires"]) for d in docs)
            old = json.loads((self.folder / "verified.json").read_bytes())
        except FileNotFoundError:
            old = {}
        except (OSError, ValueError, KeyError, TypeError):
            return
        digest = hashlib.sha256(timestamp).hexdigest()
        table = dict(old.get("targets", {})) if old.get("timestamp_sha256") == digest else {}
        table[rel] = info
        record = {"timestamp_sha256": digest, "root_version": root_version, "expires": expires.isoformat(),
                  "targets": table}
        tmp = self.folder / f".verified.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(record, sort_keys=True))
        os.replace(tmp, self.folder / "verified.json")

    def _info(self, rel: str) -> dict[str, Any] | None:
        """The signed target info of ``rel`` (length, sha256, custom), or None when the targets do not list it."""
        fast = self._fast_table()
        if fast is not None and rel in fast:
            found = fast[rel]
            return found if isinstance(found, dict) else None
        from tuf.api import exceptions as tuf_exc

        updater = self._ready()
        try:
            target = updater.get_targetinfo(rel)
        except (tuf_exc.RepositoryError, tuf_exc.DownloadError, ValueError, OSError) as exc:
            raise TrustError(f"the signed targets of {rel} could not be read: {exc}", source=self.stored) from None
        info = None if target is None else {"length": target.length, "sha256": target.hashes.get("sha256"),
                                            "custom": target.custom if isinstance(target.custom, dict) else {}}
        self._remember(rel, info)
        return info

    def check(self, rel: str, body: bytes, shown: str) -> None:
        """Accept ``body`` as the document at layout path ``rel`` only if it is the signed target."""
        info = self._info(rel)
        if info is None:
            raise TrustError(f"{shown} is not listed by the source's signed targets (mix-and-match or a document "
                             f"the operator never signed)", source=self.stored)
        if info["length"] != len(body) or info["sha256"] != hashlib.sha256(body).hexdigest():
            raise TrustError(f"{shown} does not match its signed target (length {len(body)}, signed "
                             f"{info['length']}): an altered, older or newer copy", source=self.stored)

    def listed(self, rel: str) -> bool:
        """Whether the signed targets list ``rel`` (a signed source that lists no model really has none)."""
        return self._info(rel) is not None

    def write_metadata(self, out: Path, rels: Iterable[str]) -> None:
        """Write into ``out`` (served as ``{base}/v1/tuf/``) the metadata that verifies ``rels``.

        For a bundle: after a full refresh that looks every path up (so the bins
        listing them are current), the files are written under the names TUF's
        update workflow asks for (consistent snapshots: ``N.role.json``,
        ``timestamp.json``): the root chain from version 1 (each known version:
        the cache's history, else the source's copy; a client checks every
        link), the timestamp, the snapshot, targets and every bin the snapshot
        lists at the version cached.  Nothing here is trusted by the reader:
        it verifies them against its own pinned root.
        """
        from tuf.api import exceptions as tuf_exc

        updater = self._ready()
        for rel in rels:
            try:
                updater.get_targetinfo(rel)
            except (tuf_exc.RepositoryError, tuf_exc.DownloadError, ValueError, OSError) as exc:
                raise TrustError(f"the signed targets of {rel} could not be read: {exc}", source=self.stored) from None
        meta = self.folder / "metadata"
        files: dict[str, bytes] = {"timestamp.json": (meta / "timestamp.json").read_bytes()}
        snapshot = (meta / "snapshot.json").read_bytes()
        listed = json.loads(snapshot)["signed"]["meta"]
        files[f"{json.loads(snapshot)['signed']['version']}.snapshot.json"] = snapshot
        for name, info in listed.items():
            path = meta / name
            if path.is_file() and json.loads(path.read_bytes())["signed"]["version"] == info.get("version"):
                files[f"{info['version']}.{name}"] = path.read_bytes()
        current = int(json.loads((meta / "root.json").read_bytes())["signed"]["version"])
        for n in range(1, current + 1):
            kept = meta / "root_history" / f"{n}.root.json"
            body = kept.read_bytes() if kept.is_file() else self._get(f"{n}.root.json", _MAX_ROOT)
            if body is not None:
                files[f"{n}.root.json"] = body
        out.mkdir(parents=True, exist_ok=True)
        for name, body in sorted(files.items(), key=lambda kv: kv[0] == "timestamp.json"):  # timestamp last
            tmp = out / f".{name}.{os.getpid()}.tmp"
            tmp.write_bytes(body)
            os.replace(tmp, out / name)

    def publishers(self, model: str) -> dict[str, str] | None:
        """The publisher keys (key id -> PEM) the offline targets key allows for ``model``; None when unlisted."""
        info = self._info(PUBLISHERS_TARGET)
        if info is None:
            return None
        table = info["custom"].get("publishers", {})
        keys = table.get(model)
        return dict(keys) if isinstance(keys, dict) else None


def verify_bundle(bundle_bytes: bytes, *, files: Mapping[str, str], keys: Mapping[str, str], shown: str,
                  source: str) -> str:
    """Check a model-signing bundle against the allowed publisher ``keys``; returns the signing key id.

    The key hint must be one of ``keys`` (an artifact re-signed by another key
    is refused, naming that key), the ECDSA signature over the DSSE envelope
    must verify, and the signed files must be exactly ``files`` (path ->
    sha256: the manifest's files plus manifest.json itself).
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from phi_get.manifests.errors import ManifestError
    from phi_get.manifests.signing import pae, parse_signature_bundle

    try:
        bundle = parse_signature_bundle(bundle_bytes, document=shown)
    except ManifestError as exc:
        raise TrustError(f"the publisher signature is malformed: {exc}", source=source) from None
    if bundle.key_hint not in keys:
        raise TrustError(f"{shown} is signed by key {bundle.key_hint}, which is not a publisher key of this model "
                         f"(allowed: {', '.join(sorted(keys)) or 'none'})", source=source)
    public = load_pem_public_key(keys[bundle.key_hint].encode())
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise TrustError(f"publisher key {bundle.key_hint} is not an elliptic-curve key", source=source)
    algo = {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}.get(public.curve.key_size,
                                                                                 hashes.SHA256())
    try:
        public.verify(bundle.signature, pae(bundle.payload), ec.ECDSA(algo))
    except InvalidSignature:
        raise TrustError(f"{shown}: the signature does not verify with publisher key {bundle.key_hint}",
                         source=source) from None
    if dict(bundle.files) != dict(files):
        extra = sorted(set(bundle.files) ^ set(files)) or sorted(p for p in files if files[p] != bundle.files[p])
        raise TrustError(f"{shown} signs other files than the manifest lists (first: {extra[0]!r})", source=source)
    return bundle.key_hint
