"""Sources: registries and static mirrors, read through the wire layout only.

A source is a base URL (``https://registry.example``, ``http://127.0.0.1:8080``
or ``file:///srv/mirror``) under which the layout of
:data:`phi_get.manifests.index.LAYOUT` is served.  Several sources are tried
in order: the first that lists a model provides its index (so a private
registry listed first cannot be shadowed by a public one); manifests and
blobs, being content-addressed and verified, may come from any of them.

Model indexes of http(s) sources are cached under ``HOME/cache/index/`` with
their ETag and revalidated with ``If-None-Match``; in offline mode (``--offline``
or ``PHI_GET_OFFLINE=1``) the cache is used without asking.  Manifests are
verified against the digest the index gave before use.

A source URL may carry credentials (``https://user:TOKEN@host``): the
:class:`Source` keeps them apart from its shown ``base`` (redacted,
``https://***@host``) and its ``stored`` form (``https://host``, for
``phi.lock`` and cache keys), and hands them only to :mod:`.transport`,
which sends them as HTTP Basic to that origin alone.  A URL without
credentials (say, one read back from ``phi.lock``) borrows those of a
``PHI_GET_REGISTRY`` URL of the same origin, so a committed lock needs no
secret in it.  Deadlines, size limits, redirects and retries:
:mod:`.transport`.

Imports the standard library and :mod:`phi_get.manifests`.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

from phi_get.manifests.canonical import digest_of
from phi_get.manifests.index import (
    LAYOUT,
    ModelIndex,
    blob_path,
    manifest_path,
    parse_catalog,
)
from phi_get.manifests.manifest import Manifest, parse_manifest
from phi_get.manifests.urls import origin, strip_credentials

from . import transport
from .errors import IntegrityError, NoRegistryError, SourceError, SourceURLError
from .source import Source
from .trust_store import is_pinned, pinned_publishers, unsigned_listed

if TYPE_CHECKING:
    from .trust import Verifier

__all__ = [
    "OFFLINE_ENV",
    "REGISTRY_ENV",
    "Source",
    "Sources",
    "sources_from",
]

REGISTRY_ENV: Final = "PHI_GET_REGISTRY"
OFFLINE_ENV: Final = "PHI_GET_OFFLINE"


@dataclass(frozen=True, kw_only=True, slots=True)
class Sources:
    """Several sources, in order."""

    sources: tuple[Source, ...]

    def find_index(self, name: str) -> tuple[Source, ModelIndex]:
        errors: list[SourceError] = []
        for src in self.sources:
            try:
                index = src.index(name)
            except SourceError as exc:
                errors.append(exc)
                continue
            if index is not None:
                return src, index
        if errors and len(errors) == len(self.sources):
            raise errors[0]
        from .errors import NoMatchError

        raise NoMatchError(f"no source lists the model {name!r} (searched {', '.join(s.base for s in self.sources)})",
                           hint="`phi-get list --available` shows the models the sources serve")

    def manifest(self, digest: str, *, first: Source | None = None,
                 name: str | None = None) -> tuple[Manifest, bytes]:
        """A manifest by digest, from the first source that has it, verified against the digest.

        ``name``: the model, when known (an OCI source needs it to find the repository).
        """
        rel = manifest_path(digest)
        last: SourceError | None = None
        for src in self._ordered(first):
            try:
                status, body, _ = src.read(rel, name=name)
            except SourceError as exc:
                last = exc
                continue
            if status != 200:
                continue
            actual = digest_of(body)
            if actual != digest:
                raise IntegrityError("manifest", expected=digest, actual=actual, where=src.url(rel))
            src.verify(rel, body)
            return parse_manifest(body, document=src.url(rel)), body
        if last is not None:
            raise last
        raise SourceError(f"no source has the manifest {digest}", url=", ".join(s.base for s in self.sources))

    def catalog(self) -> list[tuple[str, str, str]]:
        """(model, latest version, source) for every model the sources list; the first source wins a name."""
        seen: dict[str, tuple[str, str, str]] = {}
        for src in self.sources:
            status, body, _ = src.read(LAYOUT["catalog"])
            if status != 200:
                continue
            src.verify(LAYOUT["catalog"], body)
            for name, latest in parse_catalog(body, document=src.url(LAYOUT["catalog"])).models:
                seen.setdefault(name, (name, latest, src.base))
        return sorted(seen.values())

    def blob_urls(self, sha256_hex: str, *, first: Source | None = None, name: str | None = None) -> list[str]:
        """Where a blob can be fetched from, in order; offline, only file:// mirrors (``name``: the model's)."""
        urls = [url for src in self._ordered(first) if src.is_file or not src.offline
                if (url := src.fetch_url(blob_path(sha256_hex), name=name))]
        if not urls:
            raise SourceError(f"offline, and blob sha256:{sha256_hex} is not in the store",
                              url=", ".join(s.base for s in self.sources), hint="run once online")
        return urls

    def _ordered(self, first: Source | None) -> list[Source]:
        return [first, *(s for s in self.sources if s != first)] if first else list(self.sources)


def sources_from(registries: Sequence[str] | None, home: Path, *, offline: bool | None = None,
                 environ: dict[str, str] | None = None, locked: bool = False) -> Sources:
    """``--registry`` URLs, else ``PHI_GET_REGISTRY`` (space or comma separated).

    An http(s) URL without credentials borrows those of a ``PHI_GET_REGISTRY``
    URL of the same origin (a lock records its sources without them).
    ``locked``: for a locked install, whose lock pins every digest (an OCI layout needs no unsigned opt-out).
    """
    env = os.environ if environ is None else environ
    configured = env.get(REGISTRY_ENV, "").replace(",", " ").split()
    urls = list(registries or []) or configured
    if not urls:
        raise NoRegistryError(f"no registry configured: pass --registry URL (repeatable) or set {REGISTRY_ENV}")
    off = offline if offline is not None else env.get(OFFLINE_ENV, "") not in ("", "0")
    lenders = [u for u in configured if u.startswith(("http://", "https://")) and _userinfo(u)]
    out = []
    for url in urls:
        userinfo = ""
        if url.startswith(("oci://", "oci+http://")) or _is_oci_layout(url):
            out.append(_oci_source(url, home, off, env, locked=locked))
            continue
        if not url.startswith(("http://", "https://", "file://")):
            path = Path(url)
            if not path.is_dir():
                raise SourceURLError("a source is an http(s):// or file:// URL or a mirror folder", url=url)
            url = path.resolve().as_uri()
        elif not url.startswith("file://"):
            _check_http_url(url)
            userinfo = _userinfo(url) or next((_userinfo(u) for u in lenders if _same_origin(u, url)), "")
        src = Source(base=url.rstrip("/"), cache=home / "cache" / "index", offline=off, userinfo=userinfo)
        trust = _trust_policy(src.stored, src.fetch_url(""), home, offline=off, environ=env)
        out.append(src if trust is None else replace(src, trust=trust))
    return Sources(sources=tuple(out))


def _trust_policy(stored: str, fetch_base: str, home: Path, *, offline: bool,
                  environ: Mapping[str, str]) -> Verifier | None:
    """:func:`.trust.policy_for`, without loading the TUF client for a source the user accepts unsigned."""
    if not is_pinned(home, stored) and unsigned_listed(home, stored, environ):
        return None
    from .trust import policy_for

    return policy_for(stored, fetch_base, home, offline=offline, environ=environ)


def _is_oci_layout(url: str) -> bool:
    """A folder (or file:// URL) holding an ``oci-layout`` file: an OCI image layout, not a wire-layout mirror."""
    if url.startswith(("http://", "https://")):
        return False
    path = Path(transport.file_path(url)) if url.startswith("file://") else Path(url)
    return (path / "oci-layout").is_file()


def _oci_source(url: str, home: Path, offline: bool, env: Mapping[str, str], *, locked: bool = False) -> Source:
    """An OCI registry (``oci://``) or an OCI image layout folder (a bundle): :mod:`.oci`.

    Imported only when one is configured, so the HTTP sources' hot path (``resolve``) does not load it.
    Trust: OCI sources serve no TUF metadata, so, like any unsigned source, one is used only
    when the user accepted it unsigned (``phi-get trust allow-unsigned URL`` or ``PHI_GET_UNSIGNED``).
    Except a layout read by a locked install (``sync --locked --from DIR``): it is verified with
    the TUF metadata it carries, or accepted unsigned, as its lock source would be
    (:func:`.bundle.bundle_sources`), and nothing is resolved from the layout.  An OCI registry carries the
    publisher keys the user pinned for its models (``phi-get trust add-publisher``): see
    :func:`publisher_signature`.
    """
    from .oci import OciLayoutSource, OciSource
    from .trust import TrustError, policy_for

    cache = home / "cache" / "index"
    src: Source
    if url.startswith(("oci://", "oci+http://")):
        src = OciSource(base=url.rstrip("/"), cache=cache, offline=offline, environ=env,
                        publishers=pinned_publishers(home, strip_credentials(url).rstrip("/")))
    else:
        folder = Path(transport.file_path(url)) if url.startswith("file://") else Path(url)
        src = OciLayoutSource(base=folder.resolve().as_uri(), cache=cache, offline=offline)
    try:
        pinned = policy_for(src.stored, "", home, offline=offline, environ=env) is not None
    except TrustError:
        if locked and isinstance(src, OciLayoutSource):
            return src
        raise
    if pinned:
        raise TrustError("a TUF root is pinned for this source, but OCI registries and layouts serve no TUF "
                         "metadata yet; refusing rather than using it unverified", source=src.stored,
                         hint=f"accept it unsigned instead: `phi-get trust allow-unsigned {src.stored}`")
    return src


def _userinfo(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc.rpartition("@")[0]


def _same_origin(a: str, b: str) -> bool:
    try:
        return origin(a) == origin(b)
    except ValueError:  # a bad port in PHI_GET_REGISTRY: reported when that URL is used
        return False


def _check_http_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number in 0-65535
    except ValueError:
        raise SourceURLError("a source URL's port must be a number in 0-65535", url=url) from None
    if not parts.hostname:
        raise SourceURLError("a source URL needs a host", url=url)


@dataclass(frozen=True, kw_only=True, slots=True)
class PublisherSignature:
    """A publisher signature that verified: the key id, its PEM (as signed metadata lists it), the bundle."""

    key_id: str
    pem: str
    bundle: bytes = field(repr=False)


def signed_files(manifest: Manifest, data: bytes) -> dict[str, str]:
    """What a publisher signature must sign (path -> sha256): the manifest's files and manifest.json itself."""
    from phi_get.manifests.artifact import MANIFEST_FILENAME

    files = {f.path: f.sha256 for f in manifest.files}
    files[MANIFEST_FILENAME] = digest_of(data).removeprefix("sha256:")
    return files


def check_publisher(sources: Sources, manifest: Manifest, data: bytes, *, first: Source | None = None) -> str | None:
    """Enforce the publisher keys a signed source lists for the model; returns the signing key id, or None."""
    found = publisher_signature(sources, manifest, data, first=first)
    return None if found is None else found.key_id


def publisher_signature(sources: Sources, manifest: Manifest, data: bytes, *,
                        first: Source | None = None) -> PublisherSignature | None:
    """The verified publisher signature of a manifest, None when no signed source asks for one.

    A signed source whose offline targets key lists publisher keys for the
    model requires the manifest's signature (``v1/signatures/...``, itself a
    signed target) to verify with one of them.  Sources that list none
    require nothing (the artifact is then bound by the signed index alone).
    A source without TUF metadata (an OCI registry) requires it where the
    user pinned publisher keys for the model (``phi-get trust add-publisher``).
    """
    from phi_get.manifests.signing import signature_path

    from .trust import TrustError, verify_bundle

    rel = signature_path(digest_of(data))
    for src in sources._ordered(first):
        pinned = src.publishers.get(manifest.name)
        keys = src.trust.publishers(manifest.name) if src.trust is not None else \
            (dict(pinned) if pinned else None)
        if keys is None:
            continue
        status, body, _ = src.read(rel, name=manifest.name)
        if status != 200:
            why = "the source requires one" if src.trust is not None else \
                f"publisher keys are pinned for {manifest.name} ({', '.join(sorted(keys))})"
            raise TrustError(f"{manifest.name} {manifest.version} {manifest.variant} has no publisher signature "
                             f"({src.url(rel)} answered {status}), and {why}", source=src.stored)
        src.verify(rel, body)
        key_id = verify_bundle(body, files=signed_files(manifest, data), keys=keys, shown=src.url(rel),
                               source=src.stored)
        return PublisherSignature(key_id=key_id, pem=keys[key_id], bundle=body)
    return None
