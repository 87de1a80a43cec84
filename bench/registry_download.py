"""Blob download throughput: phi-get's registry against the CNCF distribution
registry (Debian package docker-registry), same 1 GB blob, same client, one run.

Both servers run on 127.0.0.1 with filesystem storage in a temporary folder.
The same random 1 GiB blob is uploaded to each through its own HTTP API
(phi-get: PUT /v1/uploads/sha256/<hex>; distribution: POST + PUT
/v2/<repo>/blobs/uploads/), then downloaded by curl into /dev/null, the two
servers alternating, ROUNDS times each; every download's size is checked and
each server's bytes are hashed once.  Prints the median MB/s of each and the
ratio phi-get / distribution (target >= 1.0).

    .venv/bin/python bench/registry_download.py [--size-mb 1024] [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import httpx
from benchkit import PHI_GET, free_port, wait_http

__all__ = ["main"]



def make_blob(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(left, 16 << 20))
            h.update(chunk)
            fh.write(chunk)
            left -= len(chunk)
    return h.hexdigest()


def file_stream(path: Path):
    with open(path, "rb") as fh:
        while chunk := fh.read(4 << 20):
            yield chunk


def start_phi_get(tmp: Path, blob: Path, hex_: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    db = f"sqlite:///{tmp}/phi/catalog.sqlite3"
    token = subprocess.run([*PHI_GET, "registry", "token", "create", "--db", db, "--scope", "publish:bench"],
                           check=True, capture_output=True, text=True).stdout.strip()
    proc = subprocess.Popen([*PHI_GET, "registry", "serve", "--db", db, "--storage", str(tmp / "phi" / "blobs"),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/v1/health", proc)
    r = httpx.put(f"{base}/v1/uploads/sha256/{hex_}", params={"model": "bench"}, content=file_stream(blob),
                  headers={"authorization": f"Bearer {token}", "content-length": str(blob.stat().st_size)},
                  timeout=600)
    r.raise_for_status()
    return proc, f"{base}/v1/blobs/sha256/{hex_}"


def start_distribution(tmp: Path, blob: Path, hex_: str) -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not Path(exe).exists():
        raise SystemExit("docker-registry not found: apt-get install docker-registry")
    port = free_port()
    config = tmp / "distribution.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp / 'distribution'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen([exe, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/v2/", proc)
    with httpx.Client(base_url=base, timeout=600) as c:
        r = c.post("/v2/bench/blob/blobs/uploads/")
        r.raise_for_status()
        location = r.headers["location"]
        sep = "&" if "?" in location else "?"
        r = c.put(f"{location}{sep}digest=sha256:{hex_}", content=file_stream(blob),
                  headers={"content-type": "application/octet-stream", "content-length": str(blob.stat().st_size)})
        r.raise_for_status()
    return proc, f"{base}/v2/bench/blob/blobs/sha256:{hex_}"


def curl_once(url: str, size: int) -> float:
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url],
                         check=True, capture_output=True, text=True).stdout.split()
    got, seconds = int(out[0]), float(out[1])
    if got != size:
        raise SystemExit(f"{url} sent {got} bytes, expected {size}")
    return size / seconds / 1e6


def sha_of(url: str) -> str:
    h = hashlib.sha256()
    with httpx.stream("GET", url, timeout=600) as r:
        for chunk in r.iter_bytes(4 << 20):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    size = args.size_mb << 20
    tmp = Path(tempfile.mkdtemp(prefix="phi-get-bench-dl-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        blob = tmp / "blob.bin"
        hex_ = make_blob(blob, size)
        phi_proc, phi_url = start_phi_get(tmp, blob, hex_)
        procs.append(phi_proc)
        dist_proc, dist_url = start_distribution(tmp, blob, hex_)
        procs.append(dist_proc)
        blob.unlink()
        for name, url in (("phi-get", phi_url), ("distribution", dist_url)):
            if sha_of(url) != hex_:
                raise SystemExit(f"{name} served different bytes")
        ours, peer = [], []
        for _ in range(args.rounds):
            ours.append(curl_once(phi_url, size))
            peer.append(curl_once(dist_url, size))
        result = {
            "bench": "registry_download", "blob_bytes": size, "rounds": args.rounds, "client": "curl",
            "phi_get_MBps": round(statistics.median(ours), 1),
            "distribution_MBps": round(statistics.median(peer), 1),
            "ratio": round(statistics.median(ours) / statistics.median(peer), 3),
            "phi_get_all": [round(x, 1) for x in ours], "distribution_all": [round(x, 1) for x in peer],
            "target": ">= 1.0",
        }
        print(json.dumps(result))
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
