"""One source: a registry or a static mirror at one base URL, read through the wire layout.

The base that every kind of source extends (:mod:`.oci`'s registries and
layouts too): its URL with the credentials kept apart (``base`` shown
redacted, ``stored`` without them, ``userinfo`` for :mod:`.transport` only),
its documents read with the transport's limits, and its model indexes cached
under ``HOME/cache/index/`` with their ETag.  Several sources in order, and
building them from the configuration: :mod:`.sources`.  Here, and not in
:mod:`.sources`, so that :mod:`.oci` extends it without importing what
imports :mod:`.oci` (no import cycle).

Imports the standard library and :mod:`phi_get.manifests`.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from phi_get.manifests.atomic import write_atomic
from phi_get.manifests.index import MAX_INDEX_BYTES, ModelIndex, index_path, parse_model_index
from phi_get.manifests.urls import redact, strip_credentials

from . import transport
from .errors import SourceError

if TYPE_CHECKING:  # the TUF client module loads only for a pinned source (resolver/sources.py)
    from .trust import Verifier

__all__ = ["Source"]

#: The most bytes one document (index, catalog, manifest) may have, from any transport.
_MAX_DOC: Final = MAX_INDEX_BYTES


@dataclass(frozen=True, kw_only=True, slots=True)
class Source:
    """One base URL and where its cached indexes live.

    ``base`` is the URL as shown: its credentials, if it had any, redacted
    (they move to ``userinfo`` on construction, which no message, repr or
    stored file shows).
    """

    base: str
    cache: Path
    offline: bool = False
    userinfo: str = field(default="", repr=False, compare=False)
    #: The TUF verifier of a signed source; None for one the user accepted unsigned (:mod:`.trust`).
    trust: Verifier | None = field(default=None, repr=False, compare=False)
    #: Publisher keys the user pinned per model (model -> key id -> PEM), for a source with no TUF metadata.
    publishers: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.base)
        if "@" in parts.netloc:
            object.__setattr__(self, "userinfo", self.userinfo or parts.netloc.rpartition("@")[0])
        if self.userinfo:
            object.__setattr__(self, "base", redact(f"{parts.scheme}://{self.userinfo}@"
                                                    f"{strip_credentials(self.base).partition('://')[2]}"))

    @property
    def is_file(self) -> bool:
        return self.base.startswith("file://")

    @property
    def stored(self) -> str:
        """The base URL without credentials: what phi.lock and cache keys record."""
        return strip_credentials(self.base)

    def url(self, relative: str, *, name: str | None = None) -> str:
        """The URL of ``relative`` under this source, as shown (credentials redacted).

        ``name``: the model it belongs to (an OCI source keeps each model in its own repository).
        """
        return f"{self.base.rstrip('/')}/{relative}"

    def fetch_url(self, relative: str, *, name: str | None = None) -> str:
        """The URL of ``relative`` with this source's credentials, for :mod:`.transport` and the fetcher only."""
        clean = f"{self.stored.rstrip('/')}/{relative}"
        if not self.userinfo:
            return clean
        scheme, _, rest = clean.partition("://")
        return f"{scheme}://{self.userinfo}@{rest}"

    @property
    def signed(self) -> bool:
        return self.trust is not None

    def verify(self, relative: str, body: bytes) -> None:
        """Refuse ``body`` unless it is the signed target ``relative`` (no-op for a source accepted unsigned)."""
        if self.trust is not None:
            self.trust.check(relative, body, self.url(relative))

    def _absent(self, relative: str) -> None:
        """A missing document; a signed source may not withhold one its signed targets list."""
        if self.trust is not None and self.trust.listed(relative):
            from .trust import TrustError

            raise TrustError(f"{self.url(relative)} is withheld: the signed targets list it", source=self.stored)

    def read(self, relative: str, *, etag: str | None = None,
             name: str | None = None) -> tuple[int, bytes, str | None]:
        """(status, body, etag) of ``relative``; status 404 when absent, 304 when ``etag`` still holds."""
        if self.is_file:
            doc = transport.read_file(self.url(relative), limit=_MAX_DOC)
            return doc.status, doc.body, None
        if self.offline:
            raise SourceError("offline, and this is not in the local cache", url=self.url(relative),
                              hint="run once online, or use a file:// mirror")
        doc = transport.get_document(self.fetch_url(relative), limit=_MAX_DOC, etag=etag)
        return doc.status, doc.body, doc.etag

    def index(self, name: str) -> ModelIndex | None:
        """The model's index, or None when this source does not list the model."""
        rel = index_path(name)
        if self.is_file:
            status, body, _ = self.read(rel)
            if status != 200:
                self._absent(rel)
                return None
            self.verify(rel, body)
            return parse_model_index(body, document=self.url(rel))
        key = hashlib.sha256(self.stored.encode()).hexdigest()[:16]
        cached, tag_file = self.cache / key / f"{name}.json", self.cache / key / f"{name}.etag"
        if self.offline:
            if not cached.exists():
                raise SourceError(f"offline, and {name} was never fetched from this source", url=self.url(rel))
            body = cached.read_bytes()
            self.verify(rel, body)
            return parse_model_index(body, document=str(cached))
        etag = tag_file.read_text() if cached.exists() and tag_file.exists() else None
        status, body, new_tag = self.read(rel, etag=etag)
        if status == 404:
            self._absent(rel)
            return None
        if status == 304:
            body = cached.read_bytes()
            self.verify(rel, body)
            return parse_model_index(body, document=str(cached))
        self.verify(rel, body)
        index = parse_model_index(body, document=self.url(rel))
        write_atomic(cached, body)
        if new_tag:
            write_atomic(tag_file, new_tag.encode())
        return index
