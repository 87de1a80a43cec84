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

Imports the standard library and :mod:`phi_get.manifests`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from phi_get.manifests.canonical import digest_of
from phi_get.manifests.index import (
    LAYOUT,
    ModelIndex,
    blob_path,
    index_path,
    manifest_path,
    parse_catalog,
    parse_model_index,
)
from phi_get.manifests.manifest import Manifest, parse_manifest

from .errors import IntegrityError, SourceError, SourceURLError

__all__ = [
    "OFFLINE_ENV",
    "REGISTRY_ENV",
    "TIMEOUT_S",
    "Source",
    "Sources",
    "http_get",
    "sources_from",
]

REGISTRY_ENV: Final = "PHI_GET_REGISTRY"
OFFLINE_ENV: Final = "PHI_GET_OFFLINE"
TIMEOUT_S: Final = 30.0
_MAX_DOC: Final = 64 << 20


def http_get(url: str, headers: dict[str, str] | None = None,
             timeout: float = TIMEOUT_S) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """Open a GET request; the caller reads the response and closes the connection."""
    parts = urllib.parse.urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "", parts.port, timeout=timeout)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("GET", path, headers={"User-Agent": "phi-get", **(headers or {})})
        return conn, conn.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise SourceError(f"cannot reach the source: {exc}", url=url,
                          hint="check the --registry URL or PHI_GET_REGISTRY; --offline uses the cache") from None


@dataclass(frozen=True, kw_only=True, slots=True)
class Source:
    """One base URL and where its cached indexes live."""

    base: str
    cache: Path
    offline: bool = False

    @property
    def is_file(self) -> bool:
        return self.base.startswith("file://")

    def url(self, relative: str) -> str:
        return f"{self.base.rstrip('/')}/{relative}"

    def read(self, relative: str, *, etag: str | None = None) -> tuple[int, bytes, str | None]:
        """(status, body, etag) of ``relative``; status 404 when absent, 304 when ``etag`` still holds."""
        if self.is_file:
            path = _file_path(self.url(relative))
            try:
                return 200, path.read_bytes(), None
            except FileNotFoundError:
                return 404, b"", None
            except OSError as exc:
                raise SourceError(f"cannot read the mirror: {exc.strerror}", url=self.url(relative)) from None
        if self.offline:
            raise SourceError("offline, and this is not in the local cache", url=self.url(relative),
                              hint="run once online, or use a file:// mirror")
        conn, resp = http_get(self.url(relative), {"If-None-Match": etag} if etag else None)
        try:
            body = resp.read(_MAX_DOC + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise SourceError(f"connection failed while reading: {exc}", url=self.url(relative)) from None
        finally:
            conn.close()
        if resp.status in (200, 304, 404):
            return resp.status, body, resp.getheader("ETag")
        raise SourceError(f"the source answered HTTP {resp.status}", url=self.url(relative))

    def index(self, name: str) -> ModelIndex | None:
        """The model's index, or None when this source does not list the model."""
        rel = index_path(name)
        if self.is_file:
            status, body, _ = self.read(rel)
            return parse_model_index(body, document=self.url(rel)) if status == 200 else None
        key = hashlib.sha256(self.base.encode()).hexdigest()[:16]
        cached, tag_file = self.cache / key / f"{name}.json", self.cache / key / f"{name}.etag"
        if self.offline:
            if not cached.exists():
                raise SourceError(f"offline, and {name} was never fetched from this source", url=self.url(rel))
            return parse_model_index(cached.read_bytes(), document=str(cached))
        etag = tag_file.read_text() if cached.exists() and tag_file.exists() else None
        status, body, new_tag = self.read(rel, etag=etag)
        if status == 404:
            return None
        if status == 304:
            return parse_model_index(cached.read_bytes(), document=str(cached))
        index = parse_model_index(body, document=self.url(rel))
        _write_atomic(cached, body)
        if new_tag:
            _write_atomic(tag_file, new_tag.encode())
        return index


def _file_path(url: str) -> Path:
    return Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(data):x}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


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

    def manifest(self, digest: str, *, first: Source | None = None) -> tuple[Manifest, bytes]:
        """A manifest by digest, from the first source that has it, verified against the digest."""
        rel = manifest_path(digest)
        last: SourceError | None = None
        for src in self._ordered(first):
            try:
                status, body, _ = src.read(rel)
            except SourceError as exc:
                last = exc
                continue
            if status != 200:
                continue
            actual = digest_of(body)
            if actual != digest:
                raise IntegrityError("manifest", expected=digest, actual=actual, where=src.url(rel))
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
            for name, latest in parse_catalog(body, document=src.url(LAYOUT["catalog"])).models:
                seen.setdefault(name, (name, latest, src.base))
        return sorted(seen.values())

    def blob_urls(self, sha256_hex: str, *, first: Source | None = None) -> list[str]:
        """Where a blob can be fetched from, in order; offline, only file:// mirrors."""
        urls = [src.url(blob_path(sha256_hex)) for src in self._ordered(first) if src.is_file or not src.offline]
        if not urls:
            raise SourceError(f"offline, and blob sha256:{sha256_hex} is not in the store",
                              url=", ".join(s.base for s in self.sources), hint="run once online")
        return urls

    def _ordered(self, first: Source | None) -> list[Source]:
        return [first, *(s for s in self.sources if s != first)] if first else list(self.sources)


def sources_from(registries: Sequence[str] | None, home: Path, *, offline: bool | None = None,
                 environ: dict[str, str] | None = None) -> Sources:
    """``--registry`` URLs, else ``PHI_GET_REGISTRY`` (space or comma separated)."""
    env = os.environ if environ is None else environ
    urls = list(registries or []) or env.get(REGISTRY_ENV, "").replace(",", " ").split()
    if not urls:
        raise SourceError("no registry configured", url="(none)",
                          hint=f"pass --registry URL (repeatable) or set {REGISTRY_ENV}")
    off = offline if offline is not None else env.get(OFFLINE_ENV, "") not in ("", "0")
    out = []
    for url in urls:
        if not url.startswith(("http://", "https://", "file://")):
            path = Path(url)
            if not path.is_dir():
                raise SourceURLError("a source is an http(s):// or file:// URL or a mirror folder", url=url)
            url = path.resolve().as_uri()
        out.append(Source(base=url.rstrip("/"), cache=home / "cache" / "index", offline=off))
    return Sources(sources=tuple(out))
