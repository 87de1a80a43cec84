"""Publishing to an OCI registry: ``phi-get publish FOLDER --to oci://HOST/NAMESPACE``.

Every artifact folder at or under FOLDER (verified against its manifest
first) becomes, in the repository ``NAMESPACE/NAME``, the layout of
:mod:`phi_get.manifests.oci`:

1. its blobs (one per file, streamed from disk at constant memory; the
   ModelPack config; phi-get's manifest), each skipped when ``HEAD`` finds
   it, else uploaded monolithically (``POST .../blobs/uploads/`` then ``PUT
   <Location>&digest=``, distribution spec "pushing a blob monolithically");
2. the variant's image manifest, tagged ``VERSION-VARIANT``; a folder signed
   by its publisher (``model.sig``, ``phi-get sign``) has the signature as
   one more layer, as in a bundle (no public key on it: a client verifies
   with the keys it pinned, never with one the registry hands out);
3. the version's image index (tag ``VERSION``) and the repository's index of
   every variant (tag ``phi-get.index``), each read, merged and written back.
   Two publishers of the same model at the same moment can lose one's
   entry in step 3 (a registry has no compare-and-swap on tags); publishing
   again restores it, since every step is idempotent.

**Auth**: ``GET /v2/`` first; a ``Basic`` challenge gets the credentials; a
``Bearer`` one gets a token for ``repository:REPO:pull,push`` from the realm
(asked per repository, and again once when a request answers 401 because it
ran out).  Credentials: the URL's ``user:password@``, the environment or the
Docker config (:func:`phi_get.manifests.oci.credentials_for`); never printed.

**Why not oras-py** (checked for): it does not verify digests on
pull, a plain push reads each file whole into memory, it has no
``artifactType``, and with bearer auth it pushes with a pull-only token and
fails.  This client is the few calls above on httpx, which the registry side
already uses.  (httpx's ``params=`` would replace the upload URL's own query,
so ``digest=`` is appended by hand.)

Imports httpx and :mod:`phi_get.manifests`; :mod:`.client` for the report types.
"""

from __future__ import annotations

import base64
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

import httpx
from phi_get.manifests.artifact import find_artifact_folders, load_artifact_folder
from phi_get.manifests.canonical import digest_of
from phi_get.manifests.index import IndexEntry
from phi_get.manifests.manifest import FileEntry, Manifest
from phi_get.manifests.oci import (
    IMAGE_INDEX,
    IMAGE_MANIFEST,
    INDEX_TAG,
    MAX_OCI_DOC,
    Challenge,
    Reference,
    Variant,
    credentials_for,
    image_manifest,
    merge_index,
    model_config,
    parse_challenge,
    parse_reference,
    variant_tag,
    version_tag,
)
from phi_get.manifests.signing import MODEL_SIGNATURE_FILENAME
from phi_get.manifests.urls import redact_text

from .client import ArtifactReport, Progress, PublishReport
from .errors import AuthError, BadRequestError, ServiceError

__all__ = ["push_tree"]

_CHUNK: Final = 1 << 20
_HINT: Final = ("credentials: oci://USER:PASSWORD@HOST/..., PHI_GET_OCI_USERNAME and PHI_GET_OCI_PASSWORD, "
                "or `docker login` (~/.docker/config.json)")


class _Auth:
    """The Authorization header for pushing to one registry, per repository."""

    def __init__(self, client: httpx.Client, ref: Reference, creds: tuple[str, str] | None) -> None:
        self.client, self.ref, self.creds = client, ref, creds
        self.lock = threading.Lock()
        self.values: dict[str, str] = {}
        self.challenge: Challenge | None = None
        self._probe()

    def _probe(self) -> None:
        r = self.client.get("/v2/")
        self.challenge = parse_challenge(r.headers.get("www-authenticate", "")) if r.status_code == 401 else None
        if r.status_code not in (200, 401):
            raise ServiceError(f"{self.ref.shown} is not an OCI registry: GET /v2/ answered HTTP {r.status_code}")

    def header(self, repo: str, *, renew: bool = False) -> dict[str, str]:
        if self.challenge is None:
            return {}
        with self.lock:
            if renew or repo not in self.values:
                self.values[repo] = self._value(repo)
            return {"authorization": self.values[repo]}

    def _basic(self) -> str:
        if self.creds is None:
            raise AuthError(f"{self.ref.shown} needs credentials to push", hint=_HINT)
        return "Basic " + base64.b64encode(f"{self.creds[0]}:{self.creds[1]}".encode()).decode("ascii")

    def _value(self, repo: str) -> str:
        assert self.challenge is not None
        if self.challenge.scheme == "basic":
            return self._basic()
        if self.challenge.scheme != "bearer" or not self.challenge.params.get("realm"):
            raise AuthError(f"{self.ref.shown} asks for {self.challenge.scheme!r} auth, which phi-get does not speak")
        query = {"scope": f"repository:{repo}:pull,push"}
        if self.challenge.params.get("service"):
            query["service"] = self.challenge.params["service"]
        headers = {"authorization": self._basic()} if self.creds else {}
        realm = self.challenge.params["realm"]
        r = httpx.get(realm, params=query, headers=headers, timeout=60.0, follow_redirects=False)
        if r.status_code != 200:
            raise AuthError(f"the token server {redact_text(realm)} answered HTTP {r.status_code} for a push token "
                            f"to {repo}", hint=_HINT)
        try:
            body = r.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise AuthError(f"the token server {redact_text(realm)} answered without a token")
        return f"Bearer {token}"


def _chunks(path: Path, on_chunk: Callable[[int], None]) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            on_chunk(len(chunk))
            yield chunk


class _Pusher:
    def __init__(self, client: httpx.Client, auth: _Auth, progress: Progress, parallel: int) -> None:
        self.client, self.auth, self.progress, self.parallel = client, auth, progress, parallel

    def send(self, method: str, url: str, repo: str, doing: str, *, ok: tuple[int, ...],
             body: Callable[[], bytes | Iterator[bytes]] | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
        """One request (again once with a fresh token after a 401); anything but ``ok`` is an error."""
        for renew in (False, True):
            r = self.client.request(method, url, content=body() if body else None,
                                    headers={**(headers or {}), **self.auth.header(repo, renew=renew)})
            if r.status_code != 401:
                break
        if r.status_code in ok:
            return r
        if r.status_code in (401, 403):
            raise AuthError(f"{doing}: {self.auth.ref.shown} answered HTTP {r.status_code}", hint=_HINT)
        raise ServiceError(redact_text(f"{doing}: {self.auth.ref.shown} answered HTTP {r.status_code}: "
                                       f"{r.text[:300]!r}"))

    def blob(self, repo: str, digest: str, size: int, content: Callable[[], bytes | Iterator[bytes]],
             label: str) -> int:
        """Upload one blob unless the repository has it; the bytes sent."""
        r = self.send("HEAD", f"/v2/{repo}/blobs/{digest}", repo, f"checking {label}", ok=(200, 404))
        if r.status_code == 200:
            self.progress("skip", label, size)
            return 0
        r = self.send("POST", f"/v2/{repo}/blobs/uploads/", repo, f"starting the upload of {label}", ok=(202,))
        location = r.headers.get("location", "")
        if not location:
            raise ServiceError(f"uploading {label}: the registry gave no upload Location")
        target = urllib.parse.urljoin(str(self.client.base_url), location)
        target += ("&" if "?" in target else "?") + urllib.parse.urlencode({"digest": digest})
        self.send("PUT", target, repo, f"uploading {label}", ok=(201,), body=content,
                  headers={"content-type": "application/octet-stream", "content-length": str(size)})
        return size

    def folder(self, ref: Reference, folder: Path) -> ArtifactReport:
        manifest: Manifest = load_artifact_folder(folder, verify=True)
        repo = ref.repository(manifest.name)
        data, config = manifest.to_bytes(), model_config(manifest)
        sig_path = folder / MODEL_SIGNATURE_FILENAME  # the publisher's signature travels as a layer
        signature = sig_path.read_bytes() if sig_path.is_file() else None
        oci = image_manifest(manifest, data, config, signature=signature)
        unique = list({f.sha256: f for f in manifest.files}.values())

        def file_blob(entry: FileEntry) -> int:
            path = folder / entry.path
            return self.blob(repo, f"sha256:{entry.sha256}", entry.size,
                             lambda: _chunks(path, lambda n: self.progress("upload", entry.path, n)), entry.path)

        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            sizes = list(pool.map(file_blob, unique))
        sizes.append(self.blob(repo, digest_of(config), len(config), lambda: config, "ModelPack config"))
        sizes.append(self.blob(repo, manifest.digest, len(data), lambda: data, "manifest.json"))
        if signature is not None:
            sizes.append(self.blob(repo, digest_of(signature), len(signature), lambda: signature,
                                   MODEL_SIGNATURE_FILENAME))
        tag = variant_tag(str(manifest.version), manifest.variant)
        before = self.send("HEAD", f"/v2/{repo}/manifests/{tag}", repo, f"checking {tag}", ok=(200, 404),
                           headers={"accept": IMAGE_MANIFEST})
        created = before.headers.get("docker-content-digest") != digest_of(oci)
        self.send("PUT", f"/v2/{repo}/manifests/{tag}", repo, f"tagging {tag}", ok=(201,), body=lambda: oci,
                  headers={"content-type": IMAGE_MANIFEST})
        new = Variant(name=manifest.name, entry=IndexEntry.from_manifest(manifest), digest=digest_of(oci),
                      size=len(oci))
        for index_tag in (version_tag(str(manifest.version)), INDEX_TAG):
            self.index(repo, index_tag, new)
        self.progress("commit", f"{manifest.name} {manifest.version} {manifest.variant}", 0)
        uploaded = [s for s in sizes if s]
        return ArtifactReport(folder=str(folder), name=manifest.name, version=str(manifest.version),
                              variant=manifest.variant, digest=manifest.digest, created=created,
                              blobs_uploaded=len(uploaded), blobs_skipped=len(sizes) - len(uploaded),
                              bytes_uploaded=sum(uploaded))

    def index(self, repo: str, tag: str, new: Variant) -> None:
        r = self.send("GET", f"/v2/{repo}/manifests/{tag}", repo, f"reading {tag}", ok=(200, 404),
                      headers={"accept": IMAGE_INDEX})
        existing = r.content if r.status_code == 200 and len(r.content) <= MAX_OCI_DOC else None
        doc = merge_index(existing, [new], document=f"{self.auth.ref.shown}/{repo}:{tag}")
        self.send("PUT", f"/v2/{repo}/manifests/{tag}", repo, f"tagging {tag}", ok=(201,), body=lambda: doc,
                  headers={"content-type": IMAGE_INDEX})


def push_tree(top: str | os.PathLike[str], target: str, *, progress: Progress | None = None,
              parallel: int = 4, timeout_s: float = 300.0) -> PublishReport:
    """Push every artifact folder at or under ``top`` to the OCI registry ``target``; stop at the first failure."""
    folders = list(find_artifact_folders(top))
    if not folders:
        raise BadRequestError(f"no artifact folder (with manifest.json) at or under {top}")
    ref = parse_reference(target)
    report = PublishReport()
    started = time.monotonic()
    with httpx.Client(base_url=f"{ref.scheme}://{ref.host}", timeout=timeout_s, follow_redirects=False,
                      limits=httpx.Limits(max_connections=parallel + 2)) as client:
        try:
            auth = _Auth(client, ref, credentials_for(ref))
            pusher = _Pusher(client, auth, progress or (lambda *_: None), parallel)
            for folder in folders:
                report.artifacts.append(pusher.folder(ref, folder))
        except httpx.TransportError as exc:
            raise ServiceError(redact_text(f"OCI registry {ref.shown} unreachable or the connection broke after "
                                           f"{time.monotonic() - started:.1f} s: {type(exc).__name__}: {exc}")
                               ) from None
    return report
