"""Test kit for the device side: manifests, a static wire-layout tree, a loopback server.

The resolver may not import phi_get.registry, so tests write the registry's
wire layout (manifests/index.py LAYOUT) themselves from manifests they make
(with the registry's test manifest, phi_get.registry.testing, which imports
phi_get.manifests only), and serve it from :class:`LoopbackServer`: a threaded HTTP server on
127.0.0.1 with Range, ETag and switchable faults (ignore Range, drop the
connection mid-body, corrupt bytes, slow, down).  bench/ scripts reuse it.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from phi_get.manifests.canonical import canonical_bytes
from phi_get.manifests.index import Catalog, IndexEntry, ModelIndex, blob_path, index_path, manifest_path
from phi_get.manifests.manifest import Manifest
from phi_get.registry import testing  # the one test manifest; imports phi_get.manifests only

__all__ = ["ONE_CLASS_PROJECT", "PHI35", "Faults", "LoopbackServer", "compact_entry", "make_manifest", "write_mirror",
           "write_random_mirror"]

#: A phi.toml with one model served by ``{url}`` and one device class: the fleet the lock and sync tests lock.
ONE_CLASS_PROJECT = """
[project]
name = "fleet"
registries = ["{url}"]

[models]
"tiny-model" = ">=0.1"

[device-classes]
edge = "pi-board"
"""

#: Phi-3.5-mini facts for realistic scenarios: 32 layers x 32 kv heads x 96 dims x K,V x fp16.
PHI35 = {"kv_bytes_per_token": 393216, "max_context": 131072}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_manifest(name: str, version: str, variant: str, files: dict[str, bytes | Path], *,
                  format: str = "safetensors", precision: str = "fp32", quantization: str = "none",
                  targets: tuple[str, ...] = ("cpu-x86_64", "cpu-arm64"),
                  runtime: tuple[str, str] = ("transformers", ">=4.40"),
                  weights_bytes: int | None = None, kv_bytes_per_token: int = 4096, max_context: int = 2048,
                  metrics: dict[str, float] | None = None) -> Manifest:
    """The one test manifest (:func:`phi_get.registry.testing.make_manifest`) over ``files`` (path -> bytes, or
    a file to hash), with the device side's defaults: an fp32 safetensors Phi-3 for transformers."""
    entries = []
    for path, content in sorted(files.items()):
        if isinstance(content, Path):
            h = hashlib.sha256()
            with open(content, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
            entries.append((path, content.stat().st_size, h.hexdigest()))
        else:
            entries.append((path, len(content), _sha(content)))
    return testing.make_manifest(
        entries, name=name, version=version, variant=variant, targets=targets, format=format, precision=precision,
        quantization=quantization, runtime=runtime, weights_bytes=weights_bytes,
        kv_bytes_per_token=kv_bytes_per_token, max_context=max_context, metrics=metrics,
        architecture={"class": "Phi3ForCausalLM"}, builder="test", note="")


def write_mirror(root: Path, artifacts: list[tuple[Manifest, dict[str, bytes | Path]]], *,
                 yanked: dict[tuple[str, str], str] | None = None) -> Path:
    """Write the wire layout for ``artifacts`` under ``root`` (merging with what is there)."""
    yanked = yanked or {}
    by_model: dict[str, list[IndexEntry]] = {}
    for m, files in artifacts:
        for entry in m.files:
            target = root / blob_path(entry.sha256)
            target.parent.mkdir(parents=True, exist_ok=True)
            content = files[entry.path]
            if not target.exists():
                if isinstance(content, Path):
                    shutil.copyfile(content, target)
                else:
                    target.write_bytes(content)
        mpath = root / manifest_path(m.digest)
        mpath.parent.mkdir(parents=True, exist_ok=True)
        mpath.write_bytes(m.to_bytes())
        by_model.setdefault(m.name, []).append(
            IndexEntry.from_manifest(m, yanked=yanked.get((str(m.version), m.variant))))
    for name, entries in by_model.items():
        ipath = root / index_path(name)
        ipath.parent.mkdir(parents=True, exist_ok=True)
        ipath.write_bytes(ModelIndex(name=name, entries=tuple(entries)).to_bytes())
    catalog = root / "v1" / "models.json"
    names = sorted({p.parent.name for p in (root / "v1" / "models").glob("*/index.json")})
    catalog.write_bytes(Catalog(models=tuple((n, "") for n in names)).to_bytes())
    return root



def write_random_mirror(work: Path, size: int, name: str = "bench-model") -> tuple[Manifest, Path]:
    """A mirror in ``work/mirror`` with one artifact of one ``size``-byte file of random bytes (the benches' load)."""
    data = work / "weights.bin"
    block = 8 << 20
    with open(data, "wb") as fh:
        fh.writelines(os.urandom(min(block, size - offset)) for offset in range(0, size, block))
    files: dict[str, bytes | Path] = {"weights.bin": data}
    m = make_manifest(name, "1.0.0", "safetensors-fp32", files, max_context=4096)
    mirror = write_mirror(work / "mirror", [(m, files)])
    data.unlink()
    return m, mirror

def compact_entry(d: dict[str, Any]) -> dict[str, Any]:
    """Expand a scenario's compact variant into a phi-get.index/v1 entry document."""
    dist, _, spec = d.get("runtime", "llama-cpp-python>=0.3").partition(">")
    spec = (">" + spec) if spec else ""
    weights = int(float(d["weights_gb"]) * 1e9)
    out = {
        "version": d["version"], "variant": d["variant"],
        "manifest": "sha256:" + _sha(json.dumps(d, sort_keys=True).encode()),
        "format": d["format"], "precision": d["precision"], "quantization": d.get("quantization", "q"),
        "targets": d["targets"],
        "runtime": {"distribution": dist, "specifier": spec, "provider": d.get("provider", "cpu")},
        "memory": {"weights_bytes": weights, "kv_bytes_per_token": d.get("kv", PHI35["kv_bytes_per_token"]),
                   "max_context": d.get("max_context", PHI35["max_context"])},
        "size": int(d.get("size_gb", d["weights_gb"]) * 1e9),
        "quality": {"check": "runtime", "metrics": d.get("metrics", {}), "evaluation": {}},
    }
    if "yanked" in d:
        out["yanked"] = d["yanked"]
    return out


@dataclass
class Faults:
    """Switchable misbehaviour of :class:`LoopbackServer`."""

    ignore_range: bool = False
    #: Close the connection after this many body bytes of a blob (each response), or None.
    drop_after: int | None = None
    #: How many more responses may be dropped (None: all of them).
    drop_count: int | None = None
    #: Flip one byte of every blob body sent.
    corrupt: bool = False
    #: Seconds to sleep per 64 KiB chunk of a blob body.
    slow: float = 0.0
    #: Answer every request with 503.
    down: bool = False
    #: Seconds to wait, once, before the body of the first blob answer that starts at byte 0.
    stall_first: float = 0.0


@dataclass
class _Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    body_bytes: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)

    def add(self, n: int) -> None:
        with self.lock:
            self.body_bytes += n


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        srv = self.server
        with srv.stats.lock:
            srv.stats.requests.append((self.path, self.headers.get("Range", "")))
        if srv.faults.down:
            self._plain(503, b"down for maintenance")
            return
        path = (srv.root / self.path.lstrip("/").split("?")[0]).resolve()
        if srv.root not in path.parents or not path.is_file():
            self._plain(404, b"not found")
            return
        size = path.stat().st_size
        etag = '"' + hashlib.sha256(f"{path}:{path.stat().st_mtime_ns}:{size}".encode()).hexdigest()[:16] + '"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng and not srv.faults.ignore_range and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start, end = int(a), min(int(b) if b else size - 1, size - 1)
            if start >= size:
                self._plain(416, b"range not satisfiable")
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        self._body(path, start, end - start + 1, is_blob="/blobs/" in self.path)

    def _plain(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self, path: Path, start: int, length: int, *, is_blob: bool) -> None:
        f = self.server.faults
        limit = length
        if is_blob and f.drop_after is not None and (f.drop_count is None or f.drop_count > 0):
            limit = min(length, f.drop_after)
            if f.drop_count is not None:
                f.drop_count -= 1
        if is_blob and start == 0 and f.stall_first:
            pause, f.stall_first = f.stall_first, 0.0
            time.sleep(pause)
        with open(path, "rb") as fh:
            if not (is_blob and (f.corrupt or f.slow)) and limit == length:
                sent = 0
                while sent < length:  # zero-copy: the bench's loopback peer is this same path
                    n = os.sendfile(self.wfile.fileno(), fh.fileno(), start + sent, length - sent)
                    if n == 0:
                        break
                    sent += n
                    self.server.stats.add(n)
                return
            fh.seek(start)
            sent = 0
            while sent < limit:
                chunk = fh.read(min(65536, limit - sent))
                if not chunk:
                    break
                if is_blob and f.corrupt and sent == 0:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                if is_blob and f.slow:
                    time.sleep(f.slow)
                self.wfile.write(chunk)
                sent += len(chunk)
                self.server.stats.add(len(chunk))
        if limit < length:
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    root: Path
    faults: Faults
    stats: _Stats

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up (killed installs, cancelled parts) are part of the tests


class LoopbackServer:
    """Serve ``root`` on 127.0.0.1 on an ephemeral port, in a background thread."""

    def __init__(self, root: Path) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.root = root.resolve()
        self.server.faults = Faults()
        self.server.stats = _Stats()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def faults(self) -> Faults:
        return self.server.faults

    @property
    def stats(self) -> _Stats:
        return self.server.stats

    def reset(self) -> None:
        self.server.faults = Faults()
        self.server.stats = _Stats()

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def canonical(doc: Any) -> bytes:
    return canonical_bytes(doc)


if __name__ == "__main__":  # `python wirekit.py ROOT`: serve ROOT in this process until stdin closes
    import sys

    with LoopbackServer(Path(sys.argv[1])) as _srv:
        print(_srv.url, flush=True)
        sys.stdin.read()
