"""OCI registries and OCI image layouts as sources: ``--registry oci://HOST/NAMESPACE``.

The layout read here is :mod:`phi_get.manifests.oci`.  An
:class:`OciSource` answers what :class:`~.sources.Sources` asks of every
source, in OCI terms:

* a model's index: ``GET /v2/NAMESPACE/NAME/manifests/phi-get.index`` (one
  request; else the version tags from ``tags/list``, each version's index);
* a manifest by digest: ``GET /v2/NAMESPACE/NAME/blobs/<digest>`` (phi-get's
  manifest is a layer; :class:`~.sources.Sources` checks its digest);
* a blob: the same blob URL, handed to :func:`~.fetch.fetch_blob`, so OCI
  downloads get the same parallel ranged GETs, resume and
  verify-before-place as the HTTP wire layout (distribution answers ranges
  with 206).

**Auth** (distribution spec, "token authentication"): a request is sent
anonymously first (or with what was learnt for that repository); a 401's
``WWW-Authenticate`` says ``Basic`` (credentials are sent) or ``Bearer
realm=,service=,scope=`` (a pull token is asked of the realm, with the
credentials as Basic when there are any, and renewed before ``expires_in``
runs out).  The value reaches every GET of the repository (documents and the
fetcher's blob workers) through :func:`.transport.authorize`, which sends it
to the registry's origin only: a blob redirected to object storage goes
without it.  Credentials come from the URL, the environment or the Docker
config (:func:`phi_get.manifests.oci.credentials_for`); no message, lock or
cache file shows them (the source's ``stored`` form has none).

**The client is our own, on the standard library**, not oras-py: checked
for this, oras-py does not verify digests on pull, reads a whole file
into memory on a plain push, and reuses a pull-only token for a push; and
the resolver stays light (``resolve`` imports no HTTP library).  The calls
phi-get needs (a manifest, a tag list, a token, ranged blob GETs) are a
few dozen lines over :mod:`.transport`, which already has the deadlines,
retries, size limits and redirect rules.

:class:`OciLayoutSource`: an OCI image layout folder (a bundle written by
``phi-get bundle export``) read the same way, offline: its ``index.json``
lists the variants, ``blobs/sha256/`` holds the manifests and files, and
:meth:`OciLayoutSource.publisher_signature` finds a variant's signature layer
(any image manifest ``index.json`` lists, whatever wrote it: phi-get or skopeo).

Imports the standard library, :mod:`phi_get.manifests` and :mod:`.transport`,
:mod:`.sources`, :mod:`.errors`.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from phi_get.manifests.atomic import write_atomic
from phi_get.manifests.canonical import load_json_document
from phi_get.manifests.errors import ManifestError
from phi_get.manifests.index import LAYOUT, ModelIndex, parse_model_index
from phi_get.manifests.names import check_digest
from phi_get.manifests.oci import (
    IMAGE_INDEX,
    IMAGE_MANIFEST,
    INDEX_TAG,
    MAX_OCI_DOC,
    Challenge,
    Reference,
    SignatureLayer,
    Variant,
    credentials_for,
    parse_challenge,
    parse_index,
    parse_reference,
    signature_layer,
)
from phi_get.manifests.signing import signature_path
from phi_get.manifests.urls import redact, strip_credentials

from . import transport
from .errors import IntegrityError, SourceError
from .source import Source

__all__ = ["OciLayoutSource", "OciSource"]

_ACCEPT: Final = f"{IMAGE_INDEX}, {IMAGE_MANIFEST}"
_HINT: Final = ("credentials: oci://USER:PASSWORD@HOST/..., PHI_GET_OCI_USERNAME and PHI_GET_OCI_PASSWORD, "
                "or `docker login` (~/.docker/config.json)")
_MAX_TAGS: Final = 10_000
_MAX_TOKEN_DOC: Final = 1 << 20
#: A token is renewed when less than this share of its lifetime is left.
_RENEW_AT: Final = 0.2


#: The publisher signature's wire path around its manifest's hex (manifests/signing.py has the fact).
_SIGNATURE: Final = signature_path("sha256:" + "0" * 64).partition("0" * 64)[::2]


def _relative(relative: str) -> tuple[str, str]:
    """("manifest" | "blob" | "catalog" | "signature" | "", hex) for a path of the wire layout."""
    if relative == LAYOUT["catalog"]:
        return "catalog", ""
    if relative.startswith(_SIGNATURE[0]) and relative.endswith(_SIGNATURE[1]):
        return "signature", relative[len(_SIGNATURE[0]):len(relative) - len(_SIGNATURE[1])]
    for kind, template in (("manifest", LAYOUT["manifest"]), ("blob", LAYOUT["blob"])):
        head, _, tail = template.partition("{hex}")
        if relative.startswith(head) and relative.endswith(tail):
            return kind, relative[len(head):len(relative) - len(tail)]
    return "", ""


class _RepoAuth:
    """The ``Authorization`` value for one repository: none yet, Basic, or a bearer token renewed in time."""

    def __init__(self, creds: tuple[str, str] | None, repo: str) -> None:
        self._creds, self._repo = creds, repo
        self._lock = threading.Lock()
        self._value: str | None = None
        self._bearer: Challenge | None = None
        self._renew_at = float("inf")

    def header(self) -> str | None:
        with self._lock:
            if self._bearer is not None and time.monotonic() >= self._renew_at:
                self._value = self._token(self._bearer)
            return self._value

    def answer(self, header: str, where: str) -> None:
        """Take a 401's challenge; raise when it asks for what was already sent and refused."""
        challenge = parse_challenge(header)
        with self._lock:
            if challenge is None or challenge.scheme not in ("basic", "bearer"):
                raise SourceError("the registry answered HTTP 401 with no Basic or Bearer challenge", url=where)
            if challenge.scheme == "basic":
                if self._creds is None or self._value is not None:
                    raise SourceError("the registry refused the request (HTTP 401): credentials "
                                      + ("refused" if self._value else "needed"), url=where, hint=_HINT)
                pair = f"{self._creds[0]}:{self._creds[1]}".encode()
                self._value = "Basic " + base64.b64encode(pair).decode("ascii")
                return
            if self._bearer is not None and self._value is not None and time.monotonic() < self._renew_at:
                raise SourceError("the registry refused the token its token server gave (HTTP 401)",
                                  url=where, hint=_HINT)
            self._bearer = challenge
            self._value = self._token(challenge)

    def _token(self, challenge: Challenge) -> str:
        realm = challenge.params.get("realm", "")
        if urllib.parse.urlsplit(realm).scheme not in ("http", "https"):
            raise SourceError(f"the registry's token realm {realm!r} is not an http(s) URL", url=realm or "?")
        query = {"scope": f"repository:{self._repo}:pull"}
        if challenge.params.get("service"):
            query["service"] = challenge.params["service"]
        url = f"{realm}{'&' if '?' in realm else '?'}{urllib.parse.urlencode(query)}"
        if self._creds is not None:  # as Basic, to the realm's origin only (transport)
            user, password = (urllib.parse.quote(x, safe="") for x in self._creds)
            scheme, _, rest = url.partition("://")
            url = f"{scheme}://{user}:{password}@{rest}"
        try:
            doc = transport.get_document(url, limit=_MAX_TOKEN_DOC)
        except SourceError as exc:
            if "HTTP 401" not in str(exc) and "HTTP 403" not in str(exc):
                raise
            state = "refused" if self._creds else "needed"
            raise SourceError(f"the registry's token server refused a pull token for {self._repo}: credentials "
                              f"{state}", url=redact(realm), hint=_HINT) from None
        try:
            body = load_json_document(doc.body, limit=_MAX_TOKEN_DOC, document=redact(realm))
            token = body.get("token") or body.get("access_token")
            life = float(body.get("expires_in") or 60)
        except (ManifestError, ValueError, AttributeError, TypeError, OverflowError):
            token, life = None, 0.0
        if doc.status != 200 or not isinstance(token, str) or not token:
            raise SourceError(f"the token server answered HTTP {doc.status} without a token",
                              url=redact(realm), hint=_HINT)
        self._renew_at = time.monotonic() + max(1.0, life * (1 - _RENEW_AT))
        return f"Bearer {token}"


@dataclass(frozen=True, kw_only=True, slots=True)
class OciSource(Source):
    """An OCI registry: ``oci://[user:password@]HOST[:PORT][/NAMESPACE]``; model NAME is ``NAMESPACE/NAME``."""

    environ: Mapping[str, str] | None = field(default=None, repr=False, compare=False)
    ref: Reference = field(init=False, repr=False, compare=False)
    _creds: tuple[str, str] | None = field(init=False, repr=False, compare=False)
    _auths: dict[str, _RepoAuth] = field(init=False, repr=False, compare=False, default_factory=dict)
    _guard: threading.Lock = field(init=False, repr=False, compare=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        raw = self.base
        Source.__post_init__(self)
        clean = strip_credentials(raw)
        ref = parse_reference(clean)
        if self.userinfo:
            ref = Reference(scheme=ref.scheme, host=ref.host, namespace=ref.namespace, userinfo=self.userinfo)
        object.__setattr__(self, "ref", ref)
        object.__setattr__(self, "_creds", credentials_for(ref, self.environ))

    @property
    def is_file(self) -> bool:
        return False

    def _auth(self, repo: str) -> _RepoAuth:
        with self._guard:
            auth = self._auths.get(repo)
            if auth is None:
                auth = self._auths[repo] = _RepoAuth(self._creds, repo)
                transport.authorize(f"{self.ref.api}/{repo}/", auth.header)
            return auth

    def _api_url(self, name: str, tail: str) -> str:
        repo = self.ref.repository(name)
        self._auth(repo)
        return f"{self.ref.api}/{repo}/{tail}"

    def _get(self, name: str, tail: str, *, limit: int = MAX_OCI_DOC) -> tuple[int, bytes]:
        """(status, body) of a GET under the model's repository, a 401 answered once."""
        if self.offline:
            raise SourceError("offline, and this is not in the local cache", url=self.url(tail, name=name),
                              hint="run once online, or use a bundle (phi-get bundle export)")
        url = self._api_url(name, tail)
        auth = self._auth(self.ref.repository(name))
        for _ in range(3):  # anonymous (or what is known), after a challenge, after a second one (Basic -> Bearer)
            status, body, challenge = _get_document(url, limit)
            if status != 401:
                return status, body
            auth.answer(challenge, url)
        raise SourceError("the registry kept answering HTTP 401", url=url, hint=_HINT)

    def url(self, relative: str, *, name: str | None = None) -> str:
        kind, hex_ = _relative(relative)
        if name is None or kind not in ("manifest", "blob"):
            return f"{self.base.rstrip('/')}/{relative}"
        return f"{self.ref.api}/{self.ref.repository(name)}/blobs/sha256:{hex_}"

    def fetch_url(self, relative: str, *, name: str | None = None) -> str:
        """The blob URL under the model's repository ("" without a model: no repository to ask)."""
        kind, hex_ = _relative(relative)
        if name is None or kind not in ("manifest", "blob"):
            return ""
        return self._api_url(name, f"blobs/sha256:{hex_}")

    def read(self, relative: str, *, etag: str | None = None,
             name: str | None = None) -> tuple[int, bytes, str | None]:
        kind, hex_ = _relative(relative)
        if kind == "signature" and name is not None:
            return (*self._signature(name, f"sha256:{hex_}"), None)
        if kind != "manifest" or name is None:  # no catalog: many registries refuse /v2/_catalog
            return 404, b"", None
        status, body = self._get(name, f"blobs/sha256:{hex_}")
        return (status if status in (200, 404) else _refuse(status, self.url(relative, name=name))), body, None

    def index(self, name: str) -> ModelIndex | None:
        key = hashlib.sha256(self.stored.encode()).hexdigest()[:16]
        cached = self.cache / key / f"{name}.json"
        if self.offline:
            if not cached.exists():
                raise SourceError(f"offline, and {name} was never fetched from this source", url=self.base)
            return parse_model_index(cached.read_bytes(), document=str(cached))
        variants = self._variants(name)
        if variants is None:
            return None
        seen = {(v.entry.version, v.entry.variant): v.entry for v in variants if v.name == name}
        index = ModelIndex(name=name, entries=tuple(seen.values()))
        write_atomic(cached, index.to_bytes())
        return index

    def _signature(self, name: str, manifest_digest: str) -> tuple[int, bytes]:
        """(status, bytes) of the signature layer of the variant whose phi-get manifest is ``manifest_digest``."""
        image = next((v for v in self._variants(name) or [] if v.entry.manifest == manifest_digest), None)
        if image is None:
            return 404, b""
        where = f"{self.ref.api}/{self.ref.repository(name)}/manifests/{image.digest}"
        status, body = self._get(name, f"manifests/{image.digest}")
        if status != 200:
            return status, b""
        if hashlib.sha256(body).hexdigest() != image.digest.removeprefix("sha256:"):
            raise IntegrityError("image manifest", expected=image.digest,
                                 actual=f"sha256:{hashlib.sha256(body).hexdigest()}", where=where)
        layer = signature_layer(body, manifest_digest, document=where)
        if layer is None:
            return 404, b""
        status, sig = self._get(name, f"blobs/{layer.digest}", limit=layer.size)
        if status == 200 and hashlib.sha256(sig).hexdigest() != layer.digest.removeprefix("sha256:"):
            raise IntegrityError("blob", expected=layer.digest, actual=f"sha256:{hashlib.sha256(sig).hexdigest()}",
                                 where=self.url(f"blobs/{layer.digest}", name=name))
        return status, sig

    def _variants(self, name: str) -> list[Variant] | None:
        where = f"{self.ref.api}/{self.ref.repository(name)}/manifests/{INDEX_TAG}"
        status, body = self._get(name, f"manifests/{INDEX_TAG}")
        if status == 200:
            return list(parse_index(body, document=where))
        if status != 404:
            _refuse(status, where)
        status, body = self._get(name, f"tags/list?n={_MAX_TAGS}")
        if status == 404:
            return None
        if status != 200:
            _refuse(status, where)
        where_tags = f"{self.ref.api}/{self.ref.repository(name)}/tags/list"
        try:
            tags = load_json_document(body, limit=len(body) + 1, document=where_tags).get("tags") or []
        except (ManifestError, AttributeError):
            raise ManifestError("not a tag list", document=f"{self.ref.api}/{self.ref.repository(name)}/tags/list"
                                ) from None
        out: list[Variant] = []
        for tag in tags:
            if isinstance(tag, str) and tag[:1].isdigit() and "-" not in tag:  # a version's index
                status, body = self._get(name, f"manifests/{tag}")
                if status == 200:
                    out += parse_index(body, document=f"{self.ref.api}/{self.ref.repository(name)}/manifests/{tag}")
        return out


def _refuse(status: int, where: str) -> int:
    raise SourceError(f"the registry answered HTTP {status}", url=where)


def _get_document(url: str, limit: int) -> tuple[int, bytes, str]:
    """(status, body, WWW-Authenticate) of one GET with the transport's deadline, retries and limit."""
    lim = transport.limits()
    deadline = time.monotonic() + lim.doc_timeout_s
    for attempt in range(transport.DOC_TRIES):
        opened = transport.open_get(url, {"Accept": _ACCEPT}, deadline=deadline, seconds=lim.doc_timeout_s)
        try:
            resp = opened.resp
            if resp.status in transport.RETRY_STATUSES and attempt < transport.DOC_TRIES - 1:
                asked = transport.retry_after(resp.getheader("Retry-After"))
                time.sleep(min(transport.retry_delay(attempt, asked), max(0.0, deadline - time.monotonic())))
                continue
            body = resp.read(limit + 1)
            if len(body) > limit:
                raise SourceError(f"the answer is more than {limit} bytes, the limit", url=opened.shown)
            return resp.status, body, resp.getheader("WWW-Authenticate", "")
        except OSError as exc:
            raise SourceError(f"connection failed while reading: {exc}", url=opened.shown) from None
        finally:
            opened.close()
    raise SourceError(f"gave up after {transport.DOC_TRIES} tries", url=url)


@dataclass(frozen=True, kw_only=True, slots=True)
class OciLayoutSource(Source):
    """An OCI image layout folder (``file:///...``): ``index.json`` and ``blobs/sha256/``; read offline too."""

    def _file(self, hex_: str) -> str:
        return f"{self.base.rstrip('/')}/blobs/sha256/{hex_}"

    def url(self, relative: str, *, name: str | None = None) -> str:
        kind, hex_ = _relative(relative)
        return self._file(hex_) if kind in ("manifest", "blob") else f"{self.base.rstrip('/')}/{relative}"

    def fetch_url(self, relative: str, *, name: str | None = None) -> str:
        return self.url(relative)

    def read(self, relative: str, *, etag: str | None = None,
             name: str | None = None) -> tuple[int, bytes, str | None]:
        kind, hex_ = _relative(relative)
        if kind == "signature":  # the signature layer of that manifest's variant (a signed bundle's target)
            found = self.publisher_signature(f"sha256:{hex_}")
            return (200, found[0], None) if found is not None else (404, b"", None)
        if kind != "manifest":
            return 404, b"", None
        doc = transport.read_file(self.url(relative), limit=MAX_OCI_DOC)
        return doc.status, doc.body, None

    def index(self, name: str) -> ModelIndex | None:
        where = f"{self.base.rstrip('/')}/index.json"
        doc = transport.read_file(where, limit=MAX_OCI_DOC)
        if doc.status != 200:
            raise SourceError("not an OCI image layout: no index.json", url=where)
        entries = {(v.entry.version, v.entry.variant): v.entry
                   for v in parse_index(doc.body, document=where) if v.name == name}
        return ModelIndex(name=name, entries=tuple(entries.values())) if entries else None

    def publisher_signature(self, manifest_digest: str) -> tuple[bytes, SignatureLayer] | None:
        """The signature layer of the variant whose phi-get manifest is ``manifest_digest``, and its bytes.

        None when no image manifest of ``index.json`` is that variant with a signature layer.
        The layer's bytes are checked against its digest, as every blob of the layout is.
        """
        where = f"{self.base.rstrip('/')}/index.json"
        doc = transport.read_file(where, limit=MAX_OCI_DOC)
        if doc.status != 200:
            raise SourceError("not an OCI image layout: no index.json", url=where)
        top = load_json_document(doc.body, limit=MAX_OCI_DOC, document=where)
        items = top.get("manifests") if isinstance(top, dict) else None
        for i, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, dict) or item.get("mediaType") != IMAGE_MANIFEST:
                continue
            hex_ = check_digest(item.get("digest"), f"manifests[{i}].digest", where).removeprefix("sha256:")
            body = self._blob(hex_, MAX_OCI_DOC)
            layer = signature_layer(body, manifest_digest, document=self._file(hex_))
            if layer is not None:  # the first image of that variant with a signature (an older export may lack one)
                return self._blob(layer.digest.removeprefix("sha256:"), layer.size), layer
        return None

    def _blob(self, hex_: str, limit: int) -> bytes:
        """A blob of the layout, checked against its digest (a missing one is named)."""
        shown = self._file(hex_)
        doc = transport.read_file(shown, limit=limit)
        if doc.status != 200:
            raise SourceError("the OCI layout lacks this blob, which its manifests list", url=shown)
        actual = hashlib.sha256(doc.body).hexdigest()
        if actual != hex_:
            raise IntegrityError("blob", expected=f"sha256:{hex_}", actual=f"sha256:{actual}", where=shown)
        return doc.body
