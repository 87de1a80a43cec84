"""Index request latency at 32 concurrent clients (target: p99 <= 20 ms).

Starts ``phi-get registry serve`` (SQLite catalog) as a subprocess on
loopback, publishes a model with VERSIONS x VARIANTS variants, then drives
GET /v1/models/<name>/index.json with wrk (32 connections, each a client
sending its next request when the last one is answered) for DURATION
seconds, twice: full 200 responses, and revalidations with If-None-Match
(the 304 an unchanged index costs).  Prints wrk's latency percentiles and
throughput; the peer in the same run is the registry's own /v1/health
(the floor of the HTTP stack), to show what the index route adds.

    .venv/bin/python bench/registry_index_latency.py [--duration 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
from benchkit import PHI_GET, free_port, wait_http

__all__ = ["main"]

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, *, connections: int, duration: int, headers: list[str]) -> dict[str, float]:
    cmd = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{duration}s", "--latency", "--timeout", "5s"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = {}
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if m:
            result[f"p{pct}_ms"] = round(float(m.group(1)) * _UNITS[m.group(2)], 3)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["requests_per_s"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result["errors"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors:.*", out)
    if m:
        result["socket_errors"] = m.group(0)  # type: ignore[assignment]
    return result


def publish_model(tmp: Path, url: str, token: str, versions: int, variants: int) -> None:
    from phi_get.registry.client import publish_tree
    from phi_get.registry.testing import write_artifact

    for v in range(versions):
        for k in range(variants):
            write_artifact(tmp / "out" / f"{v}" / f"{k}", {"model.bin": os.urandom(256) + bytes([v, k])},
                           version=f"0.{v}.0", variant=f"gguf-q{k}", targets=("cpu-x86_64", "cpu-arm64", "cuda"))
    publish_tree(tmp / "out", url, token)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--versions", type=int, default=4)
    ap.add_argument("--variants", type=int, default=8)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="phi-get-bench-idx-"))
    db = f"sqlite:///{tmp}/catalog.sqlite3"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    token = subprocess.run([*PHI_GET, "registry", "token", "create", "--db", db, "--scope", "publish:tiny-phi"],
                           check=True, capture_output=True, text=True).stdout.strip()
    proc = subprocess.Popen([*PHI_GET, "registry", "serve", "--db", db, "--storage", str(tmp / "blobs"),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(base + "/v1/health", proc)
        publish_model(tmp, base, token, args.versions, args.variants)
        index_url = base + "/v1/models/tiny-phi/index.json"
        first = httpx.get(index_url)
        etag = first.headers["etag"]
        assert httpx.get(index_url, headers={"if-none-match": etag}).status_code == 304
        wrk(index_url, connections=args.connections, duration=2, headers=[])  # warm-up
        full = wrk(index_url, connections=args.connections, duration=args.duration, headers=[])
        revalidate = wrk(index_url, connections=args.connections, duration=args.duration,
                         headers=[f"If-None-Match: {etag}"])
        floor = wrk(base + "/v1/health", connections=args.connections, duration=args.duration, headers=[])
        print(json.dumps({
            "bench": "registry_index_latency", "connections": args.connections, "duration_s": args.duration,
            "index_entries": args.versions * args.variants, "index_bytes": len(first.content),
            "index_200": full, "index_304": revalidate, "health_floor": floor,
            "p99_ratio_to_target": round(max(full["p99_ms"], revalidate["p99_ms"]) / 20.0, 3),
            "target": "p99 <= 20 ms",
        }))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
