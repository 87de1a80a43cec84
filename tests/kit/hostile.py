"""A hostile HTTP server for the transport tests: it serves a wire-layout tree and misbehaves on cue.

:class:`HostileServer` serves ``root`` on 127.0.0.1 (GET with ``Range``,
like :class:`wirekit.LoopbackServer`), and answers a request whose path
contains a :class:`Rule`'s ``match`` the hostile way that rule says:
trickle the head or the body a byte at a time, stall, redirect (same
origin, another origin, in a loop, to ``file://``), answer 401/429/500/503
with ``Retry-After``, lie in ``Content-Range`` or ``Content-Length``, send
fewer or more bytes than it declared.  Every request is logged with the
time it arrived and its headers (:attr:`HostileServer.requests`), so a test
can prove which credentials were sent where and measure the delay between
attempts.  Any method is accepted (``publish`` sends HEAD, PUT and POST);
without a matching rule only GET and HEAD are served.

Shared by tests/resolver and tests/registry (which put this folder on ``sys.path``).
"""

from __future__ import annotations

import http.server
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

__all__ = ["HostileServer", "Request", "Rule"]


@dataclass
class Rule:
    """How to answer requests whose path (without the query) contains ``match``.

    ``times``: how many requests it spoils (None: every one).  The first
    rule that matches and has ``times`` left decides; without one the true
    answer is sent.  Fields left at their defaults are not applied.
    """

    match: str
    times: int | None = None
    #: Answer this status with a short body (and ``retry_after`` as Retry-After).
    status: int | None = None
    retry_after: str | None = None
    #: Answer ``redirect_status`` with this Location; ``{path}`` in it becomes the request's path.
    redirect: str | None = None
    redirect_status: int = 302
    #: 401 unless the request's Authorization header is exactly this.
    require_auth: str | None = None
    #: Send the status line and headers one byte every this many seconds.
    trickle_head: float | None = None
    #: Send the true body one byte every this many seconds.
    trickle: float | None = None
    #: Send the head, then nothing until the client gives up.
    stall: bool = False
    #: Send this Content-Range instead of the true one (206 answers).
    content_range: str | None = None
    #: Declare this Content-Length instead of the true one.
    content_length: int | None = None
    #: Send this many body bytes more (> 0, junk after the body) or fewer (< 0, then close) than the true body.
    extra: int = 0


@dataclass(frozen=True)
class Request:
    """One request as the server saw it: when (``time.monotonic()``), what, and its headers (names title-cased)."""

    at: float
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class _State:
    root: Path
    rules: list[Rule] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_PUT(self) -> None:
        self._serve(body=True, only_rules=True)

    def do_POST(self) -> None:
        self._serve(body=True, only_rules=True)

    def _serve(self, *, body: bool, only_rules: bool = False) -> None:
        st = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        if length and self.command in ("PUT", "POST"):
            self.rfile.read(length)  # drain, so the client reads our answer instead of a reset
        path = self.path.split("?")[0]
        with st.lock:
            st.requests.append(Request(time.monotonic(), self.command, self.path,
                                       {k.title(): v for k, v in self.headers.items()}))
            rule = next((r for r in st.rules if r.match in path and (r.times is None or r.times > 0)
                         and not (r.require_auth and self.headers.get("Authorization") == r.require_auth)), None)
            if rule is not None and rule.times is not None:
                rule.times -= 1
        if rule is not None and rule.require_auth:
            self._plain(401, b"credentials required", {"WWW-Authenticate": 'Basic realm="test"'})
            return
        if rule is not None and rule.status is not None:
            extra = {"Retry-After": rule.retry_after} if rule.retry_after is not None else {}
            self._plain(rule.status, f"hostile answer {rule.status}".encode(), extra)
            return
        if rule is not None and rule.redirect is not None:
            self._plain(rule.redirect_status, b"moved", {"Location": rule.redirect.replace("{path}", self.path)})
            return
        if only_rules:
            self._plain(404, b"not found")
            return
        self._file(path, rule or Rule(match=""), body=body)

    def _file(self, path: str, rule: Rule, *, body: bool) -> None:
        root = self.server.state.root
        target = (root / path.lstrip("/")).resolve()
        if root not in target.parents or not target.is_file():
            self._plain(404, b"not found")
            return
        data = target.read_bytes()
        size, start, end, status = len(data), 0, len(data) - 1, 200
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start, end, status = int(a), min(int(b) if b else size - 1, size - 1), 206
        content = data[start:end + 1]
        headers = {"Content-Length": str(rule.content_length if rule.content_length is not None else len(content)),
                   "Accept-Ranges": "bytes"}
        if status == 206:
            headers["Content-Range"] = rule.content_range or f"bytes {start}-{end}/{size}"
        head = self._head(status, headers)
        if rule.trickle_head:
            if not self._trickle(head, rule.trickle_head):
                return
        else:
            self.wfile.write(head)
        if not body:
            return
        if rule.stall:
            self.wfile.flush()
            self.server.state.stop.wait(120)
            self.close_connection = True
            return
        if rule.extra < 0:
            content = content[: max(0, len(content) + rule.extra)]
        elif rule.extra > 0:
            content += b"\0" * rule.extra
        if rule.trickle:
            self._trickle(content, rule.trickle)
        else:
            self.wfile.write(content)
        if rule.extra or rule.content_length is not None:
            self.wfile.flush()
            self.close_connection = True

    def _head(self, status: int, headers: dict[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _trickle(self, data: bytes, every: float) -> bool:
        """Send ``data`` a byte at a time; False once the client hung up or the server stops."""
        for i in range(len(data)):
            try:
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
            except OSError:
                self.close_connection = True
                return False
            if self.server.state.stop.wait(every):
                self.close_connection = True
                return False
        return True

    def _plain(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    state: _State

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that give up on a trickle are the point of these tests


class HostileServer:
    """Serve ``root`` on 127.0.0.1 (an ephemeral port: each server is an origin of its own) with :class:`Rule` s."""

    def __init__(self, root: Path, *rules: Rule) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.state = _State(root=root.resolve(), rules=list(rules))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def rules(self) -> list[Rule]:
        return self.server.state.rules

    @property
    def requests(self) -> list[Request]:
        with self.server.state.lock:
            return list(self.server.state.requests)

    def requests_for(self, part: str) -> list[Request]:
        """The requests whose path contains ``part``, in the order they came."""
        return [r for r in self.requests if part in r.path]

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.state.stop.set()  # wakes trickling and stalled answers
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
