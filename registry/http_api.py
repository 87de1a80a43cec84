"""The registry's HTTP API (FastAPI): the wire layout plus publishing routes.

Reading (public; the wire layout of :data:`phi_get.manifests.index.LAYOUT`)::

    GET  /v1/models.json                       catalog
    GET  /v1/models/{name}/index.json          model index; ETag + If-None-Match -> 304
    GET  /v1/manifests/sha256/{hex}.json       canonical manifest bytes (counts a download)
    GET|HEAD /v1/blobs/sha256/{hex}            blob bytes; Range -> 206/416
    GET  /v1/tuf/{name}                        signed metadata (tuf_repo.py)
    GET  /v1/signatures/sha256/{hex}.sig       an artifact's publisher signature
    GET  /v1/search?q=                         models whose name contains q
    GET  /v1/models/{name}/stats.json          download counts
    GET  /v1/health                            liveness

Publishing (``Authorization: Bearer <token>``; see tokens.py)::

    PUT  /v1/uploads/sha256/{hex}?model=NAME   one blob for a model the token may publish
                                               to; Content-Length required, capped,
                                               verified before it is visible
    POST /v1/publish                           the manifest's canonical bytes; 201
                                               created, 200 identical, 409 different
    PUT  /v1/signatures/sha256/{hex}.sig       a model-signing bundle of an artifact
    POST   /v1/models/{name}/versions/{version}/yank   {"reason": "...", "variant": null}
    DELETE /v1/models/{name}/versions/{version}/yank   un-yank

The routes live at module level in two routers, :data:`read_router` and
:data:`publish_router`; each reaches the :class:`~.service.Registry` it serves
through ``request.app.state.registry`` (the :func:`registry_of` dependency),
so :func:`create_app` only builds the app, wires that state and mounts the
routers and the web catalog's (web.py).  Publishing routes authenticate
in their body (:func:`_principal`), not as a dependency, so each route keeps
its own order of checks.

Errors are JSON ``{"error": <code>, "message": <text>}`` with the status of
the :mod:`.errors` class.  Imports fastapi/starlette and the registry only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any, BinaryIO, Final

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from phi_get import __version__
from phi_get.manifests.errors import ManifestError
from phi_get.manifests.manifest import MAX_MANIFEST_BYTES
from phi_get.manifests.names import hex_of
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from .advice import Advisor
from .blobresponse import BlobResponse
from .errors import BadRequestError, NotFoundError, RegistryError, TooLargeError
from .service import Registry
from .tokens import Principal, authenticate
from .web import web_router

__all__ = ["INDEX_MAX_AGE_S", "IndexFastPath", "create_app", "publish_router", "read_router", "registry_asgi_app",
           "registry_of"]

_JSON: Final = "application/json"
#: How stale a served index may be when another process shares the catalog
#: (this process's own publishes and yanks show at once).
INDEX_MAX_AGE_S: Final = 1.0
_HEX_PATTERN: Final = "^[0-9a-f]{64}$"


class YankRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=1024)
    variant: str | None = Field(default=None, max_length=96)


def _error_body(exc: RegistryError) -> JSONResponse:
    return JSONResponse({"error": exc.code, "message": exc.message}, status_code=exc.status)


def _hex(value: str) -> str:
    try:
        return hex_of(value, "digest", "request path")
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None


def _raw_body(media: str, description: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "description": description,
                            "content": {media: {"schema": {"type": "string", "format": "binary"}}}}}


def registry_asgi_app(registry: Registry, *, advisor: Advisor | None = None) -> ASGIApp:
    """What the server runs: the index fast path in front of the FastAPI app."""
    return IndexFastPath(create_app(registry, advisor=advisor), registry=registry, max_age_s=INDEX_MAX_AGE_S)


def create_app(registry: Registry, *, advisor: Advisor | None = None) -> FastAPI:
    """A FastAPI app serving ``registry`` (held in ``app.state``, never in a module global).  ``advisor``: the web
    catalog's device page."""
    app = FastAPI(title="phi-get registry", version=__version__,
                  description="Publish, catalog and serve quantized Phi model artifacts.",
                  exception_handlers=_EXCEPTION_HANDLERS)
    app.state.registry = registry
    app.include_router(web_router(registry, advisor))
    app.include_router(read_router)
    app.include_router(publish_router)
    return app


async def registry_of(request: Request) -> Registry:
    """The registry the app serves (a dependency; async, so it runs on the event loop, not in a thread)."""
    registry: Registry = request.app.state.registry
    return registry


#: The registry a route serves, as a route parameter.
RegistryDep = Annotated[Registry, Depends(registry_of)]


async def _principal(request: Request, registry: Registry) -> Principal:
    return await run_in_threadpool(authenticate, registry.engine, request.headers.get("authorization"))


# -- errors: every refusal is {"error": code, "message": text} -------------------------------------------------

async def _registry_error(_request: Request, exc: RegistryError) -> JSONResponse:
    return _error_body(exc)


async def _document_error(_request: Request, exc: ManifestError) -> JSONResponse:
    return _error_body(BadRequestError(str(exc)))


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "bad-request")
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return JSONResponse({"error": code, "message": message}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return _error_body(BadRequestError(f"invalid request at {where}: {first.get('msg', 'invalid')}"))


_EXCEPTION_HANDLERS: Final[dict[int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]]] = {RegistryError: _registry_error, ManifestError: _document_error,
                              StarletteHTTPException: _http_error, RequestValidationError: _validation_error}


# -- reading: public ---------------------------------------------------------------------------------------

#: The public routes: the wire layout, signed metadata, search and stats.
read_router: Final = APIRouter(tags=["read"])


@read_router.get("/v1/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@read_router.get("/v1/models.json", response_class=Response)
def catalog(registry: RegistryDep) -> Response:
    return Response(registry.catalog_bytes(), media_type=_JSON, headers={"cache-control": "no-cache"})


@read_router.get("/v1/models/{name}/index.json", response_class=Response,
                 responses={304: {"description": "unchanged since the ETag given in If-None-Match"}})
def model_index(name: str, request: Request, registry: RegistryDep) -> Response:
    body, etag = registry.index(name, max_age_s=INDEX_MAX_AGE_S)
    headers = {"etag": etag, "cache-control": "no-cache"}
    if _etag_matches(etag.encode(), request.headers.get("if-none-match", "").encode("latin-1")):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=_JSON, headers=headers)


@read_router.get("/v1/manifests/sha256/{hex}.json", response_class=Response)
def manifest(hex: str, registry: RegistryDep) -> Response:
    body = registry.manifest_bytes("sha256:" + _hex(hex), count=True)
    return Response(body, media_type=_JSON, headers={
        "etag": f'"sha256:{hex}"', "cache-control": "public, max-age=31536000, immutable"})


async def blob(hex: str, registry: RegistryDep) -> Any:
    h = _hex(hex)
    if registry.store.size(h) is None:
        raise NotFoundError(f"no blob sha256:{h} in this registry")
    path = registry.store.local_path(h)
    if path is None:  # a backend without local files: stream it, whole
        size = registry.store.size(h)
        return StreamingResponse(_chunks(registry.store.open(h)), media_type="application/octet-stream",
                                 headers={"content-length": str(size), "etag": f'"sha256:{h}"'})
    return BlobResponse(path, etag=f'"sha256:{h}"')


for _method in ("GET", "HEAD"):
    read_router.add_api_route("/v1/blobs/sha256/{hex}", blob, methods=[_method], response_class=Response,
                              responses={206: {"description": "the requested byte range"},
                                         416: {"description": "range not satisfiable"}},
                              operation_id=f"blob_{_method.lower()}")


# Signed metadata and publisher signatures (registry/tuf_repo.py).
@read_router.get("/v1/tuf/{name}", response_class=Response)
def tuf_metadata(name: str, registry: RegistryDep) -> Response:
    body = registry.tuf.file(name) if registry.tuf is not None else None
    if body is None:
        raise NotFoundError(f"no signed metadata {name!r} in this registry")
    return Response(body, media_type=_JSON, headers={"cache-control": "no-cache"})


@read_router.get("/v1/signatures/sha256/{hex}.sig", response_class=Response)
def signature(hex: str, registry: RegistryDep) -> Response:
    body = registry.tuf.signature(_hex(hex)) if registry.tuf is not None else None
    if body is None:
        raise NotFoundError(f"no publisher signature of sha256:{hex} in this registry")
    return Response(body, media_type=_JSON)


@read_router.get("/v1/search")
def search(registry: RegistryDep, q: str = "", limit: int = 100) -> list[dict[str, object]]:
    if not 1 <= limit <= 1000:
        raise BadRequestError(f"limit must be 1 to 1000 (got {limit})")
    return registry.search(q, limit)


@read_router.get("/v1/models/{name}/stats.json")
def stats(name: str, registry: RegistryDep) -> dict[str, object]:
    return registry.stats(name)


# -- publishing: a token in Authorization --------------------------------------------------------------------

#: The routes that need a token: uploads, publish, signatures, yank.
publish_router: Final = APIRouter(tags=["publish"])


@publish_router.put("/v1/signatures/sha256/{hex}.sig", status_code=201,
                    openapi_extra=_raw_body(_JSON, "a model-signing bundle of the artifact"))
async def put_signature(hex: str, request: Request, registry: RegistryDep) -> dict[str, object]:
    principal = await _principal(request, registry)
    body = await request.body()
    await run_in_threadpool(registry.put_signature, principal, "sha256:" + _hex(hex), body)
    return {"signed": f"sha256:{hex}"}


@publish_router.put("/v1/uploads/sha256/{hex}", status_code=201,
                    openapi_extra=_raw_body("application/octet-stream", "the blob's bytes"))
async def upload(hex: str, model: str, request: Request, registry: RegistryDep) -> JSONResponse:
    h = _hex(hex)
    principal = await _principal(request, registry)
    principal.require_publish(registry.model_name(model))
    size = _content_length(request, registry.max_blob_size)
    if registry.store.size(h) == size:
        async for _chunk in request.stream():  # already stored: drain, write nothing
            pass
        return JSONResponse({"digest": f"sha256:{h}", "size": size, "created": False}, status_code=200)
    pending = registry.store.begin_upload(h, size)
    try:
        async for chunk in request.stream():
            pending.write(chunk)
        pending.commit()
    except ClientDisconnect:
        pending.abort()
        raise BadRequestError(f"upload of sha256:{h} interrupted after {pending.received} bytes") from None
    finally:
        pending.abort()  # no-op after commit
    return JSONResponse({"digest": f"sha256:{h}", "size": size, "created": True}, status_code=201)


@publish_router.post("/v1/publish", status_code=201,
                     openapi_extra=_raw_body(_JSON, "the manifest's canonical bytes"))
async def publish(request: Request, registry: RegistryDep) -> JSONResponse:
    principal = await _principal(request, registry)
    principal.require_publish()
    _content_length(request, MAX_MANIFEST_BYTES, required=False)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_MANIFEST_BYTES:
            raise TooLargeError(f"manifest body is over the limit of {MAX_MANIFEST_BYTES} bytes")
    result = await run_in_threadpool(registry.publish, principal, bytes(body))
    doc = {"digest": result.digest, "name": result.name, "version": result.version,
           "variant": result.variant, "created": result.created}
    return JSONResponse(doc, status_code=201 if result.created else 200)


@publish_router.post("/v1/models/{name}/versions/{version}/yank")
async def yank(name: str, version: str, body: YankRequest, request: Request,
               registry: RegistryDep) -> dict[str, object]:
    principal = await _principal(request, registry)
    n = await run_in_threadpool(registry.yank, principal, name, version, body.reason, body.variant)
    return {"yanked": n}


@publish_router.delete("/v1/models/{name}/versions/{version}/yank")
async def unyank(name: str, version: str, request: Request, registry: RegistryDep,
                 variant: str | None = None) -> dict[str, object]:
    principal = await _principal(request, registry)
    n = await run_in_threadpool(registry.yank, principal, name, version, None, variant)
    return {"unyanked": n}


class IndexFastPath:
    """Serve a cached index document without entering the framework.

    The index is the hot path of every resolution (p99 <= 20 ms at 32
    concurrent clients).  A hit costs a dict lookup and one send.  A cached
    copy older than ``max_age_s`` is still served while one background task
    re-checks the catalog revision (stale-while-revalidate), so expiry never
    sends a burst of concurrent requests to the database.  A miss (cold cache,
    unknown model, or dropped by a publish or yank in this process) falls
    through to the FastAPI route, which reads the catalog and fills the cache.
    """

    def __init__(self, app: ASGIApp, *, registry: Registry, max_age_s: float) -> None:
        self.app = app
        self.registry = registry
        self.max_age_s = max_age_s
        self._revalidating: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path: str = scope["path"]
            if path.startswith("/v1/models/") and path.endswith("/index.json"):
                name = path[len("/v1/models/"):-len("/index.json")]
                hit = self.registry.cached_index(name)
                if hit is not None:
                    body, etag, age = hit
                    if age > self.max_age_s and name not in self._revalidating:
                        self._revalidating.add(name)
                        task = asyncio.get_running_loop().create_task(self._revalidate(name))
                        self._tasks.add(task)  # keep a reference until it is done
                        task.add_done_callback(self._tasks.discard)
                    await self._send(scope, send, body, etag)
                    return
        await self.app(scope, receive, send)

    async def _revalidate(self, name: str) -> None:
        try:
            await run_in_threadpool(self.registry.index, name)
        except Exception:  # noqa: BLE001, S110 - a failed re-check keeps the cached copy; the next request retries
            pass
        finally:
            self._revalidating.discard(name)

    @staticmethod
    async def _send(scope: Scope, send: Send, body: bytes, etag: str) -> None:
        tag = etag.encode()
        headers = [(b"etag", tag), (b"cache-control", b"no-cache")]
        status = 200
        for key, value in scope["headers"]:
            if key == b"if-none-match" and _etag_matches(tag, value):
                status = 304
        if status == 200:
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        send_body = status == 200 and scope["method"] == "GET"
        await send({"type": "http.response.body", "body": body if send_body else b""})


def _chunks(fh: BinaryIO) -> Iterator[bytes]:
    with fh:
        while chunk := fh.read(1 << 20):
            yield chunk


def _etag_matches(etag: bytes, if_none_match: bytes) -> bool:
    """If-None-Match comparison (RFC 9110 13.1.2: weak, so W/"x" matches "x"; * matches)."""
    for candidate in if_none_match.split(b","):
        candidate = candidate.strip().removeprefix(b"W/")
        if candidate == etag or candidate == b"*":
            return True
    return False


def _content_length(request: Request, limit: int, *, required: bool = True) -> int:
    raw = request.headers.get("content-length")
    if raw is None:
        if required:
            raise BadRequestError("Content-Length is required: blobs are uploaded with their exact size")
        return -1
    # ASCII digits only ('²'.isdigit() is true, and int() refuses it), and no more
    # than 19 of them: int() of 5,000 digits raises (Python's int-string limit).
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19):
        raise BadRequestError(f"invalid Content-Length {raw[:40]!r}")
    size = int(raw)
    if size > limit:
        raise TooLargeError(f"body of {size} bytes is over the limit of {limit} bytes")
    return size

