"""Test kit for signed sources: a signed live registry, its mirror, and a tampering proxy.

* :class:`SignedRegistry` runs the real registry on loopback with TUF
  signing set up by the operator code (registry/tuf_repo.py), publishes
  small synthetic artifacts through the real publish client (HTTP, token),
  and exports static mirrors;
* :class:`TamperProxy` is a man in the middle on loopback: it forwards to
  the live registry and lets a test replace, drop, stall or endlessly
  stream any path, as a hostile CDN or network would.
"""

from __future__ import annotations

import http.client
import http.server
import shutil
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phi_get.registry.client import publish_tree
from phi_get.registry.export import export_mirror
from phi_get.registry.testing import registry_server, write_artifact
from phi_get.registry.tokens import mint_token
from phi_get.registry.tuf_repo import TufRepository, create_keys
from phi_get.resolver.sources import Sources, sources_from
from phi_get.resolver.trust import add_root

__all__ = ["SignedRegistry", "TamperProxy", "client_sources"]

Override = bytes | int | Callable[[], Iterator[bytes]]


@dataclass
class SignedRegistry:
    folder: Path
    stack: ExitStack = field(default_factory=ExitStack)

    def __post_init__(self) -> None:
        self.keys = self.folder / "offline-keys"
        create_keys(self.keys)
        self.running = self.stack.enter_context(registry_server(self.folder / "reg"))
        self.url = self.running.url
        self.registry = self.running.registry
        self.repo = TufRepository(self.running.storage / "tuf")
        self.root_sha = self.repo.init(self.keys, self.registry)
        self.registry.tuf = self.repo
        self.token = mint_token(self.registry.engine, ["admin"])
        self._n = 0

    def root(self) -> bytes:
        """root version 1, as the operator hands it to clients out of band."""
        return (self.repo.metadata / "1.root.json").read_bytes()

    def publish(self, version: str = "0.1.0", *, name: str = "tiny-phi", sign_key: Path | None = None,
                payload: bytes | None = None) -> Path:
        self._n += 1
        folder = self.folder / f"art-{name}-{version}-{self._n}"
        write_artifact(folder, {"model.gguf": payload or f"{name} {version} {self._n}".encode() * 64},
                       name=name, version=version)
        if sign_key is not None:
            from phi_get.registry.artifact_sign import sign_artifact

            sign_artifact(folder, sign_key)
        publish_tree(folder, self.url, self.token)
        return folder

    def export(self, out: Path) -> Path:
        if out.exists():
            shutil.rmtree(out)
        export_mirror(self.registry, out)
        return out

    def close(self) -> None:
        self.stack.close()


def client_sources(home: Path, url: str, root: bytes | None, *, offline: bool = False) -> Sources:
    """The client's view of ``url`` with ``root`` pinned (None: nothing pinned)."""
    if root is not None:
        add_root(home, url, root)
    return sources_from([url], home, offline=offline, environ={})


class TamperProxy:
    """A loopback HTTP proxy in front of ``upstream`` whose answers a test may override per path."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.overrides: dict[str, Override] = {}
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                override = proxy.overrides.get(path)
                if isinstance(override, int):
                    self.send_response(override)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                if isinstance(override, bytes):
                    self._send(200, override)
                    return
                if callable(override):  # a body that never ends (no content-length, close-delimited)
                    self.send_response(200)
                    self.send_header("connection", "close")
                    self.end_headers()
                    try:
                        for chunk in override():
                            self.wfile.write(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    self.close_connection = True
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("if-none-match", "range")}
                conn.request("GET", self.path, headers=headers)
                resp = conn.getresponse()
                self._send(resp.status, resp.read(), etag=resp.getheader("etag"))
                conn.close()

            def _send(self, status: int, body: bytes, etag: str | None = None) -> None:
                self.send_response(status)
                self.send_header("content-length", str(len(body)))
                if etag:
                    self.send_header("etag", etag)
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
