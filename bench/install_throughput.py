"""Bench: verified install of a large artifact over loopback vs this machine's ceiling and vs curl + sha256sum.

In one run, on the same 1 GB file (random bytes) served by the test kit's
loopback server (sendfile, Range):

* ceiling parts, each measured alone: sha256 of the file from the page
  cache; loopback transfer (4 parallel ranged GETs, bytes discarded); disk
  write of 1 GB into the store's file system with fsync.  The ceiling is the
  slowest of the three;
* ``phi-get install`` in-process (resolve, parallel ranged fetch, hashing
  overlapped with the transfer, fsync, atomic placement) into an empty store;
* ``curl -o`` then ``sha256sum``: the two-pass peer.

Prints times and the ratios (ceiling / install: target >= 0.8; curl+sha /
install: > 1 means phi-get is faster), and the CPU time (user + system, all
threads of this process, the loopback server's included) the install took:
on 2 shared cores the wall time swings with other load, the CPU time much
less, so compare both when tuning.  Files are deleted afterwards.

    .venv/bin/python bench/install_throughput.py [--size-mb 1024] [--workdir /tmp]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "resolver"))

import phi_get
import wirekit
from benchkit import write_random_file


def time_hash(path: Path) -> float:
    t = time.perf_counter()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 << 20):
            h.update(chunk)
    return time.perf_counter() - t


def _get_range(port: int, path: str, start: int, end: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", path, headers={"Range": f"bytes={start}-{end}"})
    resp = conn.getresponse()
    buf = bytearray(1 << 20)
    n = 0
    while k := resp.readinto(buf):
        n += k
    conn.close()
    return n


def time_loopback(port: int, path: str, size: int, streams: int = 4) -> float:
    step = -(-size // streams)
    t = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        got = sum(pool.map(lambda i: _get_range(port, path, i, min(size, i + step) - 1), range(0, size, step)))
    assert got == size, got
    return time.perf_counter() - t


def time_disk(folder: Path, size: int) -> float:
    block = os.urandom(1 << 20)
    target = folder / "disk-probe.bin"
    t = time.perf_counter()
    with open(target, "wb") as fh:
        fh.writelines(block for _ in range(size >> 20))
        fh.flush()
        os.fsync(fh.fileno())
    elapsed = time.perf_counter() - t
    target.unlink()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--workdir", default=tempfile.gettempdir())
    args = ap.parse_args()
    size = args.size_mb << 20
    work = Path(tempfile.mkdtemp(prefix="phi-get-bench-", dir=args.workdir))
    try:
        data = work / "weights.bin"
        write_random_file(data, size)
        files: dict[str, bytes | Path] = {"weights.bin": data}
        m = wirekit.make_manifest("bench-model", "1.0.0", "safetensors-fp32", files, max_context=4096)
        mirror = wirekit.write_mirror(work / "mirror", [(m, files)])
        data.unlink()
        blob = mirror / "v1" / "blobs" / "sha256" / m.files[0].sha256
        with wirekit.LoopbackServer(mirror) as srv:
            port = srv.server.server_address[1]
            t_hash = time_hash(blob)
            t_net = time_loopback(port, f"/v1/blobs/sha256/{m.files[0].sha256}", size)
            t_disk = time_disk(work, size)
            t, cpu = time.perf_counter(), time.process_time()
            phi_get.install("bench-model", registry=srv.url, home=work / "home", device="pi-board")
            t_install = time.perf_counter() - t
            cpu_install = time.process_time() - cpu
            shutil.rmtree(work / "home")
            t = time.perf_counter()
            subprocess.run(["curl", "-s", "-o", str(work / "curl.bin"), f"{srv.url}/v1/blobs/sha256/{m.files[0].sha256}"],
                           check=True)
            digest = subprocess.run(["sha256sum", str(work / "curl.bin")], check=True, capture_output=True,
                                    text=True).stdout.split()[0]
            t_curl = time.perf_counter() - t
            assert digest == m.files[0].sha256
        ceiling = max(t_hash, t_net, t_disk)
        mb = size / 1e6
        for label, secs in (("sha256", t_hash), ("loopback", t_net), ("disk write+fsync", t_disk),
                            ("phi-get install", t_install), ("curl + sha256sum", t_curl)):
            print(f"{label:<18} {secs:6.2f} s  {mb / secs:7.0f} MB/s")
        print(json.dumps({"size_bytes": size, "ceiling_s": round(ceiling, 3), "install_s": round(t_install, 3),
                          "install_cpu_s": round(cpu_install, 3),
                          "curl_sha256sum_s": round(t_curl, 3),
                          "ratio_install_vs_ceiling": round(ceiling / t_install, 2),
                          "ratio_curl_over_install": round(t_curl / t_install, 2)}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
