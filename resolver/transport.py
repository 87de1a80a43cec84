"""GETs from outside: credentials to their origin only, bounded redirects, deadlines, retries.

Every byte the resolver reads from a registry or mirror arrives through
this module (documents through :func:`get_document` and :func:`read_file`,
blobs through :func:`open_get`), so its rules hold for every source:

* **Credentials.**  The userinfo of a source URL (``https://user:TOKEN@host/``)
  is sent as HTTP Basic credentials, only to that URL's origin
  (:mod:`phi_get.manifests.urls`); a redirect elsewhere goes without them,
  and a ``Location`` never brings credentials of its own.  Messages show
  URLs redacted (``https://***@host/...``).
* **Redirects.**  301, 302, 303, 307 and 308 are followed for GETs, at most
  :data:`MAX_REDIRECTS` hops, to http(s) URLs only: a registry may serve
  blobs from a CDN or object storage.  Never to ``file://`` (a server must
  not make the client read its own disk).
* **Deadlines.**  A socket timeout fires only on total silence, so a source
  trickling a byte every few seconds would hold a command for ever.  A
  document (index, catalog, manifest) must arrive whole, retries included,
  within ``PHI_GET_DOC_TIMEOUT_S`` seconds (default 60); a blob's response
  head within the same time, and then its body at a minimum rate: a
  connection that brings fewer than ``PHI_GET_MIN_RATE`` bytes per second
  (default 4096) over a window of ``PHI_GET_RATE_WINDOW_S`` seconds
  (default 30) is dropped (see :mod:`.fetch`).
* **Sizes.**  A document is read to at most its limit (+1 byte to tell that
  it is over), from http(s) and ``file://`` alike; a ``file://`` path must be
  a regular file (a FIFO or ``/dev/zero`` is refused before any read).
* **Retries.**  408, 429, 500, 502, 503, 504 and connections broken
  mid-answer are retried (a source that cannot be reached at all is not:
  the next source is tried instead) (:data:`DOC_TRIES` tries for a document) after an exponential
  backoff with jitter, or after the ``Retry-After`` the source sent (RFC 9110
  section 10.2.3: seconds or an HTTP date), capped at
  :data:`RETRY_AFTER_CAP_S` seconds.

Imports the standard library and :mod:`phi_get.manifests`.
"""

from __future__ import annotations

import http.client
import os
import random
import socket
import stat
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from phi_get.manifests.errors import DocumentTooLargeError, ManifestError
from phi_get.manifests.urls import REDACTED, redact, same_origin, split_credentials, strip_credentials

from .errors import SourceError

__all__ = [
    "DOC_TIMEOUT_ENV",
    "DOC_TRIES",
    "MAX_REDIRECTS",
    "MIN_RATE_ENV",
    "RATE_WINDOW_ENV",
    "RETRY_AFTER_CAP_S",
    "RETRY_STATUSES",
    "TIMEOUT_S",
    "Document",
    "Limits",
    "Opened",
    "authorize",
    "file_path",
    "get_document",
    "limits",
    "open_file",
    "open_get",
    "read_file",
    "retry_after",
    "retry_delay",
]

#: Seconds of total silence after which a connection is given up.
TIMEOUT_S: Final = 30.0
DOC_TIMEOUT_ENV: Final = "PHI_GET_DOC_TIMEOUT_S"
MIN_RATE_ENV: Final = "PHI_GET_MIN_RATE"
RATE_WINDOW_ENV: Final = "PHI_GET_RATE_WINDOW_S"
_DEFAULTS: Final = {DOC_TIMEOUT_ENV: 60.0, MIN_RATE_ENV: 4096.0, RATE_WINDOW_ENV: 30.0}
MAX_REDIRECTS: Final = 5
DOC_TRIES: Final = 4
RETRY_AFTER_CAP_S: Final = 30.0
RETRY_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_READ: Final = 1 << 16
_HINT: Final = "check the --registry URL or PHI_GET_REGISTRY; --offline uses the cache"


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """The deadlines of :mod:`this module <.transport>`, from the environment (read per call, not at import)."""

    doc_timeout_s: float
    min_rate: float    # bytes per second a blob connection must keep up, measured per window
    window_s: float

    @property
    def min_bytes(self) -> int:
        """Bytes a blob connection must bring in every window."""
        return int(self.min_rate * self.window_s)


def limits(environ: Mapping[str, str] | None = None) -> Limits:
    """The limits set by ``PHI_GET_DOC_TIMEOUT_S``, ``PHI_GET_MIN_RATE`` and ``PHI_GET_RATE_WINDOW_S``."""
    env = os.environ if environ is None else environ
    got: dict[str, float] = {}
    for name, default in _DEFAULTS.items():
        raw = env.get(name, "").strip()
        try:
            value = float(raw) if raw else default
        except ValueError:
            value = -1.0
        low_ok = value >= 0 if name == MIN_RATE_ENV else value > 0  # a minimum rate of 0 turns the rule off
        if not (low_ok and value < 1e9):  # NaN fails both
            what = "a number >= 0" if name == MIN_RATE_ENV else "a positive number"
            raise ManifestError(f"must be {what}", field=name, value=raw, document="environment")
        got[name] = value
    return Limits(doc_timeout_s=got[DOC_TIMEOUT_ENV], min_rate=got[MIN_RATE_ENV], window_s=got[RATE_WINDOW_ENV])


def retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        import email.utils  # only for a Retry-After date (rare): resolve's hot path skips ~4 ms of imports

        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def retry_delay(attempt: int, asked: float | None, *, base: float = 0.25, cap: float = 8.0) -> float:
    """Seconds before retry number ``attempt`` (0 first): what the source asked, capped at
    :data:`RETRY_AFTER_CAP_S`, else ``base * 2**attempt`` (at most ``cap``) with jitter, so that
    many clients turned away at once do not come back at once."""
    if asked is not None:
        return min(asked, RETRY_AFTER_CAP_S)
    return min(cap, base * (1 << min(attempt, 30))) * random.uniform(0.5, 1.0)


class _Watchdog:
    """Shuts a connection's socket down at a deadline, which wakes any read blocked on it."""

    __slots__ = ("_conn", "_timer", "expired")

    def __init__(self, conn: http.client.HTTPConnection, deadline: float) -> None:
        self._conn = conn
        self.expired = False
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.expired = True
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()


class Opened:
    """An answer whose head was read: ``resp``, on ``conn``, from ``url`` (after redirects; no credentials).

    ``shown`` is the URL to name in messages (``http://***@host/...`` when
    credentials went with the request).  The deadline keeps running until
    :meth:`release_deadline` or :meth:`close`.
    """

    __slots__ = ("conn", "resp", "shown", "url", "watchdog")

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, url: str, shown: str,
                 watchdog: _Watchdog) -> None:
        self.conn, self.resp, self.url, self.shown, self.watchdog = conn, resp, url, shown, watchdog

    @property
    def expired(self) -> bool:
        return self.watchdog.expired

    def release_deadline(self) -> None:
        self.watchdog.cancel()

    def close(self) -> None:
        self.watchdog.cancel()
        self.conn.close()


def _connection(url: str, deadline: float) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(url)
    left = max(0.001, min(TIMEOUT_S, deadline - time.monotonic()))
    try:
        port = parts.port
    except ValueError:
        raise SourceError("the URL's port is not a number in 0-65535", url=url) from None
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return cls(parts.hostname or "", port, timeout=left)


#: URL prefix -> the ``Authorization`` value to send there, asked per request (an OCI registry's
#: bearer token renews itself); sent to that origin only, like userinfo (:func:`authorize`).
_AUTHORIZERS: dict[str, Callable[[], str | None]] = {}


def authorize(prefix: str, header: Callable[[], str | None]) -> None:
    """GETs of URLs under ``prefix`` send ``Authorization: header()`` (not after a redirect to another origin)."""
    _AUTHORIZERS[prefix] = header


def _authorizer(url: str) -> Callable[[], str | None] | None:
    return next((fn for prefix, fn in _AUTHORIZERS.items() if url.startswith(prefix)), None)


def open_get(url: str, headers: Mapping[str, str] | None = None, *, deadline: float,
             seconds: float | None = None) -> Opened:
    """GET ``url`` and read the answer's head by ``deadline`` (``time.monotonic()``), following redirects.

    The credentials in ``url``'s userinfo go, as Basic, to its origin only
    (so does the header of an :func:`authorize` hook for the URL).
    ``seconds``: the deadline's length, for the message when it passes.
    """
    target, auth = split_credentials(url)
    home = target
    hook = _authorizer(target) if auth is None else None
    for _hop in range(MAX_REDIRECTS + 1):
        conn = _connection(target, deadline)
        send = {"User-Agent": "phi-get", **(headers or {})}
        shown = target
        if auth is not None and same_origin(home, target):
            send["Authorization"] = auth
            shown = target.replace("://", f"://{REDACTED}@", 1)
        elif hook is not None and same_origin(home, target) and (value := hook()):
            send["Authorization"] = value
        dog = _Watchdog(conn, deadline)
        parts = urllib.parse.urlsplit(target)
        try:
            conn.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), headers=send)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            dog.cancel()
            conn.close()
            if dog.expired:
                raise _deadline_error(shown, seconds) from None
            raise SourceError(f"cannot reach the source: {exc}", url=shown, hint=_HINT) from None
        if resp.status not in _REDIRECTS:
            return Opened(conn, resp, target, shown, dog)
        location = resp.getheader("Location", "")
        dog.cancel()
        conn.close()
        if not location:
            raise SourceError(f"the source answered HTTP {resp.status} without a Location", url=shown)
        nxt = strip_credentials(urllib.parse.urljoin(target, location.strip()))  # a redirect brings no credentials
        if urllib.parse.urlsplit(nxt).scheme.lower() not in ("http", "https"):
            raise SourceError(f"the source redirected to {redact(location)!r}, which is not http(s); refused",
                              url=shown)
        target = nxt
    raise SourceError(f"more than {MAX_REDIRECTS} redirects (the last to {target})", url=redact(url))


def _deadline_error(url: str, seconds: float | None) -> SourceError:
    within = f"within {seconds:g} s" if seconds is not None else "in time"
    return SourceError(f"no complete answer {within} (the source sends too slowly or not at all)", url=url,
                       hint=f"{DOC_TIMEOUT_ENV} sets the limit")


@dataclass(frozen=True, kw_only=True, slots=True)
class Document:
    """A document's answer: 200 with its body, 304 (the ETag still holds) or 404 (not there)."""

    status: int
    body: bytes
    etag: str | None = None


def _too_large(limit: int, url: str) -> DocumentTooLargeError:
    return DocumentTooLargeError(f"document is more than {limit} bytes, the limit", document=redact(url))


class _Transient(Exception):
    """One try failed in a way worth another: ``error`` if it is the last, ``asked`` the Retry-After."""

    def __init__(self, error: SourceError, asked: float | None = None) -> None:
        super().__init__(str(error))
        self.error, self.asked = error, asked


def _get_once(url: str, limit: int, headers: Mapping[str, str], deadline: float, seconds: float) -> Document:
    opened = open_get(url, headers, deadline=deadline, seconds=seconds)
    resp, where = opened.resp, opened.shown
    try:
        if resp.status in RETRY_STATUSES:
            raise _Transient(SourceError(f"the source answered HTTP {resp.status}", url=where),
                             retry_after(resp.getheader("Retry-After")))
        if resp.status not in (200, 304, 404):
            hint = ("the URL's credentials (user:token@) are missing or refused" if resp.status in (401, 403)
                    else None)
            raise SourceError(f"the source answered HTTP {resp.status}", url=where, hint=hint)
        declared = resp.length
        if declared is not None and declared > limit:
            raise _too_large(limit, url)
        parts, got = [], 0
        try:
            while data := resp.read1(_READ):
                got += len(data)
                if got > limit:
                    raise _too_large(limit, url)
                parts.append(data)
        except (OSError, http.client.HTTPException) as exc:
            if opened.expired:
                raise _deadline_error(where, seconds) from None
            raise _Transient(SourceError(f"connection failed while reading: {exc}", url=where)) from None
        if opened.expired:
            raise _deadline_error(where, seconds)
        if resp.length:  # bytes declared but never sent
            raise _Transient(SourceError(f"the answer ended after {got} of the {declared} bytes it declared",
                                         url=where))
        return Document(status=resp.status, body=b"".join(parts), etag=resp.getheader("ETag"))
    finally:
        opened.close()


def get_document(url: str, *, limit: int, etag: str | None = None,
                 environ: Mapping[str, str] | None = None) -> Document:
    """A document from an http(s) URL: whole within the deadline, at most ``limit`` bytes, retried.

    Raises :class:`SourceError` naming the URL (redacted) and what went
    wrong, or :class:`DocumentTooLargeError`.
    """
    lim = limits(environ)
    deadline = time.monotonic() + lim.doc_timeout_s
    headers = {"If-None-Match": etag} if etag else {}
    for attempt in range(DOC_TRIES):
        try:
            return _get_once(url, limit, headers, deadline, lim.doc_timeout_s)
        except _Transient as exc:
            if attempt == DOC_TRIES - 1:
                raise SourceError(f"gave up after {DOC_TRIES} tries: {_reason(exc.error)}", url=exc.error.url,
                                  hint=exc.error.hint) from None
            wait = retry_delay(attempt, exc.asked)
            if time.monotonic() + wait >= deadline:
                asked = f", which asks to retry after {exc.asked:g} s" if exc.asked is not None else ""
                raise SourceError(f"{_reason(exc.error)}{asked}; no time left for another try within "
                                  f"{lim.doc_timeout_s:g} s", url=exc.error.url,
                                  hint=f"{DOC_TIMEOUT_ENV} sets the limit") from None
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def _reason(error: SourceError) -> str:
    """A SourceError's message without the ``(url)`` it ends with."""
    text = str(error)
    tail = f" ({error.url})"
    return text[: -len(tail)] if text.endswith(tail) else text


def file_path(url: str) -> str:
    """The local path of a ``file://`` URL."""
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path)


def open_file(url: str) -> int | None:
    """A read-only descriptor of a ``file://`` URL's regular file; None when there is no such file.

    Opened without blocking (a FIFO with no writer would hang ``open``) and
    refused unless it is a regular file: ``/dev/zero`` never ends.
    """
    try:
        fd = os.open(file_path(url), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise SourceError(f"cannot read the mirror: {exc.strerror}", url=url) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SourceError("not a regular file in the mirror; refused", url=url)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_file(url: str, *, limit: int) -> Document:
    """A document from a ``file://`` URL: 404 when absent, at most ``limit`` bytes read."""
    fd = open_file(url)
    if fd is None:
        return Document(status=404, body=b"")
    try:
        with os.fdopen(fd, "rb", closefd=False) as fh:
            body = fh.read(limit + 1)
    except OSError as exc:
        raise SourceError(f"cannot read the mirror: {exc.strerror}", url=url) from None
    finally:
        os.close(fd)
    if len(body) > limit:
        raise _too_large(limit, url)
    return Document(status=200, body=body)
