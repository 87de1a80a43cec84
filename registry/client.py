"""Publishing from a builder's machine: ``phi-get publish DIR --registry URL``.

For every artifact folder at or under DIR (manifests/artifact.py), verified
against its manifest first:

1. ask the registry which blobs it already has (``HEAD /v1/blobs/sha256/{hex}``);
2. upload only the missing ones, in parallel, streamed from disk
   (``PUT /v1/uploads/sha256/{hex}?model=NAME`` with the exact Content-Length);
3. commit the manifest (``POST /v1/publish``), which the registry accepts
   only when every blob is there.

Every step is idempotent, so a rerun after an interruption finishes the job
and uploads nothing twice.  The token is sent only in the Authorization
header; it is never printed, logged or put in an error message.  Credentials
in the registry URL (``https://user:password@host``, for a proxy in front of
the registry) are sent as HTTP Basic instead of a token, and shown redacted
(:mod:`phi_get.manifests.urls`).

Redirects are refused, not followed: a PUT or POST that a redirect turned
into another request (or a GET, for 301-303) would upload or commit nothing
while looking like success.  The error names the URL and the ``Location``,
so the user can pass the registry's final URL.

Imports httpx and :mod:`phi_get.manifests` only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
from phi_get.manifests.artifact import find_artifact_folders, load_artifact_folder
from phi_get.manifests.canonical import load_json_document
from phi_get.manifests.errors import ManifestError
from phi_get.manifests.manifest import FileEntry, Manifest
from phi_get.manifests.signing import MODEL_SIGNATURE_FILENAME
from phi_get.manifests.urls import redact, redact_text, split_credentials

from .errors import BadRequestError, ServiceError, error_for_code

__all__ = ["TOKEN_ENV", "ArtifactReport", "PublishReport", "publish_tree", "raise_for_error"]

TOKEN_ENV: Final = "PHI_GET_TOKEN"
_CHUNK: Final = 1 << 20

#: progress(event, detail, bytes): "upload" per chunk sent, "skip" per blob present, "commit" per manifest.
Progress = Callable[[str, str, int], None]


@dataclass(frozen=True, kw_only=True, slots=True)
class ArtifactReport:
    folder: str
    name: str
    version: str
    variant: str
    digest: str
    created: bool
    blobs_uploaded: int
    blobs_skipped: int
    bytes_uploaded: int


@dataclass(kw_only=True, slots=True)
class PublishReport:
    artifacts: list[ArtifactReport] = field(default_factory=list)

    @property
    def bytes_uploaded(self) -> int:
        return sum(a.bytes_uploaded for a in self.artifacts)


def raise_for_error(response: httpx.Response, doing: str) -> None:
    """Turn an error response, or a redirect (never followed), into the registry error class it stands for."""
    status = response.status_code
    if 300 <= status < 400:
        location = response.headers.get("location")
        to = f"redirecting to {redact(location)}" if location else "a redirect without a Location"
        raise ServiceError(f"{doing}: the registry answered HTTP {status}, {to} ({redact(str(response.url))}); "
                           "publishing does not follow redirects",
                           hint="pass the registry's own URL (the one it redirects to, if you trust it) as --registry")
    if status < 400:
        return
    try:
        body: Any = response.json()
        code, message = body["error"], body["message"]
    except (ValueError, KeyError, TypeError):
        raise ServiceError(redact_text(f"{doing}: HTTP {status} from {redact(str(response.url))}: "
                                       f"{response.text[:200]!r}")) from None
    cls = error_for_code(str(code))
    raise cls(f"{doing}: {message}")


def _file_chunks(path: Path, on_chunk: Callable[[int], None]) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            on_chunk(len(chunk))
            yield chunk


class _Publisher:
    def __init__(self, client: httpx.Client, progress: Progress, parallel: int) -> None:
        self.client = client
        self.progress = progress
        self.parallel = parallel

    def has_blob(self, entry: FileEntry) -> bool:
        r = self.client.head(f"/v1/blobs/sha256/{entry.sha256}")
        if r.status_code == 404:
            return False
        raise_for_error(r, f"checking blob sha256:{entry.sha256}")
        return int(r.headers.get("content-length", "-1")) == entry.size

    def upload(self, folder: Path, model: str, entry: FileEntry) -> int:
        def sent(n: int) -> None:
            self.progress("upload", entry.path, n)

        r = self.client.put(
            f"/v1/uploads/sha256/{entry.sha256}",
            params={"model": model},
            content=_file_chunks(folder / entry.path, sent),
            headers={"content-length": str(entry.size), "content-type": "application/octet-stream"},
        )
        raise_for_error(r, f"uploading {folder / entry.path}")
        return entry.size

    def publish_folder(self, folder: Path) -> ArtifactReport:
        manifest: Manifest = load_artifact_folder(folder, verify=True)
        unique = list({f.sha256: f for f in manifest.files}.values())
        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            present = list(pool.map(self.has_blob, unique))
            missing = [f for f, ok in zip(unique, present, strict=True) if not ok]
            for f, ok in zip(unique, present, strict=True):
                if ok:
                    self.progress("skip", f.path, f.size)
            sizes = list(pool.map(lambda f: self.upload(folder, manifest.name, f), missing))
        body = manifest.to_bytes()
        r = self.client.post("/v1/publish", content=body, headers={"content-type": "application/json"})
        doing = f"committing {manifest.name} {manifest.version} {manifest.variant}"
        raise_for_error(r, doing)
        try:
            result = load_json_document(r.content, limit=1 << 20, document=f"the answer of {redact(str(r.url))}")
            digest, created = str(result["digest"]), bool(result["created"])
        except (ManifestError, KeyError, TypeError):
            raise ServiceError(f"{doing}: HTTP {r.status_code} from {redact(str(r.url))} is not the registry's "
                               f"answer (no JSON with digest and created): {r.text[:200]!r}") from None
        self.progress("commit", f"{manifest.name} {manifest.version} {manifest.variant}", 0)
        signature = folder / MODEL_SIGNATURE_FILENAME
        if signature.is_file():  # the publisher's model-signing bundle goes beside the manifest
            hex_ = digest.removeprefix("sha256:")
            raise_for_error(self.client.put(f"/v1/signatures/sha256/{hex_}.sig", content=signature.read_bytes(),
                                            headers={"content-type": "application/json"}),
                            f"uploading the signature {signature}")
        return ArtifactReport(
            folder=str(folder), name=manifest.name, version=str(manifest.version), variant=manifest.variant,
            digest=digest, created=created, blobs_uploaded=len(missing),
            blobs_skipped=len(unique) - len(missing), bytes_uploaded=sum(sizes),
        )


def publish_tree(top: str | os.PathLike[str], registry_url: str, token: str | None, *,
                 progress: Progress | None = None, parallel: int = 4, timeout_s: float = 300.0) -> PublishReport:
    """Publish every artifact folder at or under ``top``; stop at the first failure."""
    folders = list(find_artifact_folders(top))
    if not folders:
        raise BadRequestError(f"no artifact folder (with manifest.json) at or under {top}")
    base, basic = split_credentials(registry_url.rstrip("/"))
    if basic and token:
        raise BadRequestError(f"the registry URL {redact(registry_url)} carries credentials and a token was given: "
                              "only one can be sent as Authorization", hint="drop the user:password@ or the token")
    headers = {"authorization": f"Bearer {token}"} if token else {"authorization": basic} if basic else {}
    report = PublishReport()
    with httpx.Client(base_url=base, headers=headers, timeout=timeout_s, follow_redirects=False,
                      limits=httpx.Limits(max_connections=parallel + 2)) as client:
        publisher = _Publisher(client, progress or (lambda *_: None), parallel)
        try:
            for folder in folders:
                report.artifacts.append(publisher.publish_folder(folder))
        except httpx.TransportError as exc:
            raise ServiceError(redact_text(f"registry {redact(registry_url)} unreachable or the connection broke: "
                                           f"{type(exc).__name__}: {exc}")) from None
    return report
