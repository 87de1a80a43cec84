"""Bench: pulling a 1 GB model artifact from an OCI registry, phi-get vs skopeo, in the same run.

Setup, once: an artifact folder with one file of random bytes (``--size-mb``,
default 1024) is pushed with phi-get's OCI client to the CNCF distribution
registry (Debian ``docker-registry``, anonymous, storage under the work
folder) on loopback.  Then ``--repeat`` rounds (default 3), the order of the
two pulls alternating from round to round:

* ``phi-get install tiny-phi --registry oci://HOST/models`` into an empty
  store (resolve through the ``phi-get.index`` tag, parallel ranged blob
  GETs, sha256 of every byte before placement, fsync, atomic rename);
* ``skopeo copy docker://HOST/models/tiny-phi:TAG oci:DIR:TAG`` of the same
  variant into an empty OCI layout (skopeo also checks the digests).

Prints each round's wall times and the ratio skopeo / phi-get (target:
>= 1.0, phi-get at least as fast while it also verifies and places), then
the medians, and one JSON line for the record.  Needs ``docker-registry``
and ``skopeo`` (``.ci/run`` installs them).  The work folder is deleted
afterwards.

    .venv/bin/python bench/oci_pull.py [--size-mb 1024] [--repeat 3] [--workdir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "kit"))

from benchkit import PHI_GET
from ocikit import oci_registry
from phi_get.manifests.oci import variant_tag
from phi_get.registry.oci_push import push_tree

_CHUNK = 16 << 20


def build(folder: Path, size: int) -> str:
    from phi_get.manifests.artifact import MANIFEST_FILENAME, file_entry
    from phi_get.registry.testing import make_manifest

    folder.mkdir(parents=True)
    with open(folder / "model.gguf", "wb") as out:
        left = size
        while left:
            n = min(_CHUNK, left)
            out.write(os.urandom(n))
            left -= n
    entry = file_entry(folder, "model.gguf")
    manifest = make_manifest([(entry.path, entry.size, entry.sha256)], targets=("cpu-x86_64",))
    (folder / MANIFEST_FILENAME).write_bytes(manifest.to_bytes())
    return variant_tag(str(manifest.version), manifest.variant)


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed ({r.returncode}): {r.stderr[-2000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", default=tempfile.gettempdir())
    args = ap.parse_args()
    for tool in ("docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install -y docker-registry skopeo)")
    work = Path(tempfile.mkdtemp(prefix="oci-pull-", dir=args.workdir))
    size = args.size_mb << 20
    try:
        tag = build(work / "artifact", size)
        with oci_registry(work / "registry") as reg:
            started = time.perf_counter()
            push_tree(work / "artifact", reg.url())
            print(f"pushed {args.size_mb} MiB to {reg.host} in {time.perf_counter() - started:.1f} s")
            env = {k: v for k, v in os.environ.items() if not k.startswith("PHI_GET_")}
            env["PHI_GET_DEVICE"] = "intel-ai-pc"  # a sample profile: no hardware probing in the timing
            env["PHI_GET_UNSIGNED"] = reg.url()  # the bench's own registry; OCI registries serve no TUF metadata
            rounds = []
            for i in range(args.repeat):
                home, layout = work / f"home-{i}", work / f"layout-{i}"
                phi = [*PHI_GET, "install", "tiny-phi", "--registry", reg.url(), "--quiet"]
                sko = ["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                       f"docker://{reg.host}/models/tiny-phi:{tag}", f"oci:{layout}:{tag}"]
                times = {}
                for name, cmd in ((("phi-get", phi), ("skopeo", sko)) if i % 2 == 0
                                  else (("skopeo", sko), ("phi-get", phi))):
                    times[name] = timed(cmd, {**env, "PHI_GET_HOME": str(home)})
                ratio = times["skopeo"] / times["phi-get"]
                rounds.append({**times, "ratio": ratio})
                print(f"round {i + 1}: phi-get {times['phi-get']:.2f} s "
                      f"({args.size_mb / times['phi-get']:.0f} MiB/s), skopeo {times['skopeo']:.2f} s "
                      f"({args.size_mb / times['skopeo']:.0f} MiB/s), skopeo/phi-get {ratio:.2f}")
                shutil.rmtree(home, ignore_errors=True)
                shutil.rmtree(layout, ignore_errors=True)
        med = {k: statistics.median(r[k] for r in rounds) for k in ("phi-get", "skopeo", "ratio")}
        print(f"median: phi-get {med['phi-get']:.2f} s, skopeo {med['skopeo']:.2f} s, skopeo/phi-get "
              f"{med['ratio']:.2f} (target >= 1.0: {'met' if med['ratio'] >= 1.0 else 'NOT met'})")
        print(json.dumps({"bench": "oci_pull", "size_mb": args.size_mb, "rounds": rounds, "median": med}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
