"""`phi-get run` and `phi-get build` on damaged and hostile weights files (SECURITY.md: hostile model headers).

Each artifact is installed by the real CLI from a ``file://`` mirror whose
manifest lists the hostile file's true sha256 (a hostile registry can do
that), or damaged in the store after a good install, then handed to the
real ``phi-get run``.  Before, every case ended in a Python traceback from
llama.cpp or safetensors (``Failed to load model from file``), and llama.cpp
read a hostile GGUF's counts and lengths natively.  Now the header is walked
in Python first: exit 2 naming the file and the header field; a file of the
wrong size is exit 4 pointing at ``verify --repair``; a runtime that fails on
a file that passed is exit 1 naming the runtime, never a traceback.
(``build`` from hostile sources: tests/builders/test_builders_hostile_sources.py.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PHI_GET = [sys.executable, "-m", "phi_get"]


def phi_get(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PHI_GET_HOME": str(home)}
    env.pop("PHI_GET_REGISTRY", None)
    return subprocess.run([*PHI_GET, *args], capture_output=True, text=True, env=env, timeout=300, check=False)


def gguf(*, tensors: int = 1, kvs: int = 1, dims: tuple[int, ...] = (64, 4), ggml_type: int = 0,
         string_length: int | None = None, magic: bytes = b"GGUF", version: int = 3, offset: int = 0) -> bytes:
    """A GGUF v3 file: one string key-value pair, one tensor entry, 1 KiB of data; every count settable."""
    value = b"llama"
    out = magic + struct.pack("<IQQ", version, tensors, kvs)
    key = b"general.architecture"
    out += struct.pack("<Q", len(key)) + key + struct.pack("<IQ", 8, len(value) if string_length is None else
                                                            string_length) + value
    name = b"a.weight"
    out += struct.pack("<Q", len(name)) + name + struct.pack("<I", len(dims))
    out += b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ggml_type, offset)
    return out + b"\0" * (-len(out) % 32) + b"\0" * 1024


def installed(tmp_path: Path, kit: Any, files: dict[str, bytes], *, fmt: str = "gguf") -> Path:
    """Install an artifact holding ``files`` with the real CLI; returns the phi-get home."""
    if fmt == "gguf":
        m = kit.make_manifest("tiny-gguf", "1.0.0", "gguf-q4_k_m", files, format="gguf", precision="int4",
                              quantization="q4_k_m", runtime=("llama-cpp-python", ">=0.3"))
    else:
        m = kit.make_manifest("tiny-gguf", "1.0.0", "safetensors-fp32", files)
    root = kit.write_mirror(tmp_path / "mirror", [(m, files)])
    home = tmp_path / "home"
    proc = phi_get(home, "install", "tiny-gguf", "--registry", root.as_uri())
    assert proc.returncode == 0, proc.stderr
    return home


def run(home: Path) -> subprocess.CompletedProcess[str]:
    return phi_get(home, "run", "tiny-gguf", "--prompt", "hi", "--max-tokens", "2")


def no_traceback(proc: subprocess.CompletedProcess[str], code: int, *names: str) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    for name in names:
        assert name in proc.stderr, (name, proc.stderr[-2000:])


needs_llama = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                 reason="llama-cpp-python is not installed (run checks after the runtime is found)")


@needs_llama
@pytest.mark.parametrize(("label", "data", "field", "reason"), [
    ("tensor count past the file", gguf(tensors=2**62), "at tensor_count", "tensors cannot fit a 1152-byte file"),
    ("key-value count past the file", gguf(kvs=2**40), "at kv_count", "key-value pairs cannot fit"),
    ("string length past the file", gguf(string_length=2**60), "at kv[0] 'general.architecture'", "past the end"),
    ("shape whose product overflows", gguf(dims=(2**40, 2**40, 2**40)), "at tensor[0].shape",
     "has more than 2**63 elements"),
    ("five dimensions", gguf(dims=(1, 1, 1, 1, 1)), "at tensor[0].n_dims", "expected 1 to 4 dimensions"),
    ("data past the end", gguf(offset=1 << 20), "at tensor[0].offset", "past the end of the"),
    ("removed tensor type", gguf(ggml_type=4), "at tensor[0].type", "no longer exists"),
    ("block size not dividing the row", gguf(dims=(33, 4), ggml_type=8), "at tensor[0].shape[0]",
     "not a multiple of the type's block of 32"),
    ("not GGUF", gguf(magic=b"GGML"), "at magic", "not a GGUF file"),
    ("version 99", gguf(version=99), "at version", "expected GGUF version 2 or 3"),
])
def test_hostile_gguf_is_refused_before_llama_cpp(tmp_path: Path, kit: Any, label: str, data: bytes, field: str,
                                                  reason: str) -> None:
    """Hostile GGUF headers (counts, lengths, shapes, offsets that lie): exit 2, the file and field named."""
    home = installed(tmp_path, kit, {"model.gguf": data})
    proc = run(home)
    no_traceback(proc, 2, "invalid GGUF file ", "model.gguf", field, reason)


@needs_llama
def test_damaged_artifact_points_at_repair(tmp_path: Path, kit: Any) -> None:
    """A truncated installed file (once a traceback from llama.cpp): exit 4, verify --repair."""
    home = installed(tmp_path, kit, {"model.gguf": gguf()})
    (target,) = list((home / "artifacts").rglob("model.gguf"))
    os.truncate(target, 100)
    proc = run(home)
    no_traceback(proc, 4, "installed file model.gguf of tiny-gguf 1.0.0 gguf-q4_k_m", "expected 1152 bytes, got 100 bytes",
                 "phi-get verify tiny-gguf --repair")


@needs_llama
def test_a_runtime_failure_is_named_not_a_traceback(tmp_path: Path, kit: Any) -> None:
    """A well-formed GGUF that is no model: llama.cpp refuses it; the refusal names the runtime and artifact."""
    home = installed(tmp_path, kit, {"model.gguf": gguf()})
    proc = run(home)
    no_traceback(proc, 1, "llama-cpp-python could not run tiny-gguf 1.0.0 gguf-q4_k_m from ",
                 "hint: phi-get verify tiny-gguf checks every byte")


def safetensors(header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + data


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers is not installed")
@pytest.mark.parametrize(("label", "data", "reason"), [
    ("header length past the file", struct.pack("<Q", 2**62) + b"{}", "a header of 4611686018427387904 bytes does not"
                                                                       " fit a 10-byte file"),
    ("shape whose product overflows", safetensors(json.dumps({"w": {"dtype": "F32", "shape": [2**40] * 3,
                                                                     "data_offsets": [0, 4]}}).encode(), b"\0" * 4),
     "at w.shape: has more than 2**63 elements"),
    ("header nested 100,000 deep", safetensors(b"[" * 100_000 + b"]" * 100_000), "nested more than 64"),
    ("header not an object", safetensors(b"[1]"), "at (top level): expected an object, found array"),
    ("offsets past the data", safetensors(json.dumps({"w": {"dtype": "F32", "shape": [1],
                                                            "data_offsets": [0, 4]}}).encode()),
     "at data_offsets: tensors need"),
])
def test_hostile_safetensors_is_refused_before_the_runtime(tmp_path: Path, kit: Any, label: str, data: bytes,
                                                           reason: str) -> None:
    """Hostile safetensors headers in a safetensors artifact: exit 2, the file and field named."""
    home = installed(tmp_path, kit, {"model.safetensors": data, "config.json": b"{}"}, fmt="safetensors")
    proc = run(home)
    no_traceback(proc, 2, "invalid safetensors file ", "model.safetensors", reason)
