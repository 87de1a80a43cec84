"""Render time of the web catalog's pages for a large model.

Publishes one model with VERSIONS x VARIANTS variants straight through the
registry service (real manifests, one shared blob, SQLite), serves it with
the real HTTP server on loopback with the resolver-backed advisor, and times
sequential GETs of each page over one keep-alive connection: the model page
(newest version and an old one), a variant page and the device page with a
sample profile.  Each page is fetched once untimed first (the parsed index
is then cached per catalog revision, as it is in production).
Target: p50 under 50 ms for the model page.

    .venv/bin/python bench/registry_web_render.py [--versions 100] [--variants 20] [--requests 50]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from phi_get.advisor import ResolverAdvisor
from phi_get.manifests.manifest import Format, MemoryNeeds, Precision, Quality, QualityCheck
from phi_get.registry.server import default_db_url, open_registry, running_server
from phi_get.registry.testing import make_manifest
from phi_get.registry.tokens import Principal

__all__ = ["main"]

_KINDS = ((Format.GGUF, Precision.INT4), (Format.GGUF, Precision.INT8), (Format.ONNX, Precision.INT4),
          (Format.OPENVINO, Precision.INT4), (Format.MLX, Precision.FP16))
_TARGETS = (("cpu-x86_64", "cpu-arm64", "cuda", "metal"), ("cuda-sm80", "cuda"), ("metal",),
            ("intel-gpu", "cpu-x86_64"))


def publish_matrix(folder: Path, versions: int, variants: int) -> tuple[object, str]:
    registry = open_registry(default_db_url(folder), folder)
    data = b"phi-get bench blob\n" * 64
    sha = hashlib.sha256(data).hexdigest()
    upload = registry.store.begin_upload(sha, len(data))
    upload.write(data)
    upload.commit()
    admin = Principal(token_id="bench", scopes=frozenset({"admin"}))
    for v in range(versions):
        for i in range(variants):
            fmt, precision = _KINDS[i % len(_KINDS)]
            m = dataclasses.replace(
                make_manifest([("model.bin", len(data), sha)], name="big-phi", version=f"1.{v}.0",
                              variant=f"{fmt}-{precision}-v{i:02d}", targets=_TARGETS[i % len(_TARGETS)]),
                format=fmt, precision=precision,
                memory=MemoryNeeds(weights_bytes=(1 + i) * 400_000_000, kv_bytes_per_token=98304, max_context=131072),
                quality=Quality(check=QualityCheck.RUNTIME, metrics={"top1_agreement": 0.7 + i / 70}),
            )
            registry.publish(admin, m.to_bytes())
    return registry, f"1.{versions - 1}.0"


def timed(client: httpx.Client, path: str, n: int) -> dict[str, float]:
    assert client.get(path).status_code == 200, path
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(path)
        samples.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, path
    samples.sort()
    return {"p50_ms": round(statistics.median(samples), 1), "p95_ms": round(samples[int(0.95 * (n - 1))], 1),
            "bytes": len(r.content)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=100)
    parser.add_argument("--variants", type=int, default=20)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="phi-get-web-bench-") as tmp:
        t = time.perf_counter()
        registry, newest = publish_matrix(Path(tmp) / "store", args.versions, args.variants)
        publish_s = time.perf_counter() - t
        with (running_server(registry, advisor=ResolverAdvisor()) as url,  # type: ignore[arg-type]
              httpx.Client(base_url=url, timeout=60) as client):
            variant = client.get("/v1/models/big-phi/index.json").json()["variants"][-1]["variant"]
            report = {
                "entries": args.versions * args.variants, "publish_s": round(publish_s, 1),
                "model_page": timed(client, "/models/big-phi", args.requests),
                "model_page_old_version": timed(client, "/models/big-phi?version=1.0.0", args.requests),
                "variant_page": timed(client, f"/models/big-phi/{newest}/{variant}", args.requests),
                "device_page": timed(client, "/device?model=big-phi&sample=gpu-server", args.requests),
                "catalog_page": timed(client, "/", args.requests),
            }
        registry.engine.dispose()  # type: ignore[attr-defined]
    report["target"] = "model page p50 < 50 ms"
    report["met"] = report["model_page"]["p50_ms"] < 50  # type: ignore[index]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
