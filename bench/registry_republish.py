"""Publishing an identical artifact a second time transfers 0 blob bytes.

Starts ``phi-get registry serve`` as a subprocess, puts a byte-counting TCP
proxy in front of it, and runs ``phi-get publish`` twice on the same artifact
folders (several files, SIZE_MB in all) through the proxy.  Reports, for each
run, the bytes the client sent on the wire (everything: HEADs, uploads, the
manifest commit) and the blob bytes the publish command reports uploading.
Target: the second run uploads 0 blob bytes; its wire bytes are requests only.

    .venv/bin/python bench/registry_republish.py [--size-mb 64]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

from benchkit import PHI_GET, free_port, wait_http

__all__ = ["main"]



class CountingProxy:
    """A loopback TCP proxy counting the bytes clients send upstream."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.sent = 0
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(1 << 20):
                if count:
                    with self._lock:
                        self.sent += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def take(self) -> int:
        with self._lock:
            n, self.sent = self.sent, 0
        return n

    def close(self) -> None:
        self.listener.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=int, default=64)
    args = ap.parse_args()
    from phi_get.registry.testing import write_artifact

    tmp = Path(tempfile.mkdtemp(prefix="phi-get-bench-repub-"))
    db = f"sqlite:///{tmp}/catalog.sqlite3"
    port = free_port()
    token = subprocess.run([*PHI_GET, "registry", "token", "create", "--db", db, "--scope", "publish:tiny-phi"],
                           check=True, capture_output=True, text=True).stdout.strip()
    proc = subprocess.Popen([*PHI_GET, "registry", "serve", "--db", db, "--storage", str(tmp / "blobs"),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = CountingProxy(port)
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/health", proc)
        size = args.size_mb << 20
        for variant, share in (("gguf-q4_k_m", 0.5), ("onnx-int4", 0.3), ("safetensors-fp16", 0.2)):
            n = int(size * share)
            write_artifact(tmp / "out" / variant, {"model.bin": os.urandom(n - 4096), "config.json": os.urandom(4096)},
                           variant=variant)
        runs = []
        for attempt in (1, 2):
            proxy.take()
            out = subprocess.run([*PHI_GET, "publish", str(tmp / "out"), "--registry", f"http://127.0.0.1:{proxy.port}",
                                  "--quiet"], check=True, capture_output=True, text=True,
                                 env={**os.environ, "PHI_GET_TOKEN": token}).stdout
            blob_bytes = sum(int(b) for b in re.findall(r"uploaded \d+ blob\(s\), (\d+) bytes", out))
            runs.append({"run": attempt, "blob_bytes_uploaded": blob_bytes, "wire_bytes_sent": proxy.take(),
                         "created": out.count("\npublished ") + out.startswith("published ")})
        print(json.dumps({
            "bench": "registry_republish", "artifact_bytes": size, "runs": runs,
            "second_run_blob_bytes": runs[1]["blob_bytes_uploaded"],
            "second_over_first_wire_ratio": round(runs[1]["wire_bytes_sent"] / runs[0]["wire_bytes_sent"], 6),
            "target": "second run uploads 0 blob bytes",
        }))
    finally:
        proxy.close()
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
