"""`phi-get build --source` with a hostile checkpoint folder (hostile numbers and nesting).

The safetensors header is read by phi-get's own bounded reader
(manifests/modelfiles.py) and config.json through the one JSON loader; a
hostile header (shapes of strings, nesting 2,000 deep) or absurd config
numbers (10**30 layers, a string width, zero heads) gave a traceback
(ValueError, RecursionError, ZeroDivisionError) or hours of work towards a
manifest no registry accepts.  Now the real CLI exits 2 naming the file and
the field, before any conversion.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PHI_GET = [sys.executable, "-m", "phi_get"]


def no_traceback(proc: subprocess.CompletedProcess[str], code: int, *names: str) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    for name in names:
        assert name in proc.stderr, (name, proc.stderr[-2000:])


@pytest.fixture()
def source_copy(tiny_phi: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "src"
    shutil.copytree(tiny_phi, dest)
    return dest


def build(source: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PHI_GET, "build", "tiny-phi", "--source", str(source), "--out", str(tmp_path / "out"),
                           "--only", "gguf-f32"], capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "PHI_GET_HOME": str(tmp_path / "home")})


def _strings_as_shapes(header: bytes) -> bytes:
    doc = json.loads(header)
    return json.dumps({k: {**v, "shape": ["abc"]} if k != "__metadata__" else v for k, v in doc.items()}).encode()


def _nested(header: bytes) -> bytes:
    return header[:-1] + b', "x": ' + b"[" * 2000 + b"]" * 2000 + b"}"


@pytest.mark.parametrize(("label", "mutate", "message"), [
    ("tensor shape of strings", _strings_as_shapes, "expected a dimension (an integer, 0 or more) at "),
    ("header nested 2,000 deep", _nested, "header is not JSON (nested more than 64"),
])
def test_build_refuses_a_hostile_safetensors_source(source_copy: Path, tmp_path: Path, label: str, mutate: Any,
                                                    message: str) -> None:
    """`phi-get build --source` with a hostile safetensors header: exit 2 naming the file (was a traceback)."""
    path = source_copy / "model.safetensors"
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    new = mutate(raw[8:8 + n])
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n:])
    proc = build(source_copy, tmp_path)
    no_traceback(proc, 2, "corrupt safetensors file ", "model.safetensors", message)


@pytest.mark.parametrize(("key", "value"), [("num_hidden_layers", 10**30), ("hidden_size", "3072"),
                                            ("num_attention_heads", 0)])
def test_build_refuses_absurd_config_numbers(source_copy: Path, tmp_path: Path, key: str, value: object) -> None:
    """config.json with 10**30 layers, a string width, zero heads: exit 2 naming the key."""
    config = json.loads((source_copy / "config.json").read_text())
    config[key] = value
    (source_copy / "config.json").write_text(json.dumps(config))
    proc = build(source_copy, tmp_path)
    no_traceback(proc, 2, f"config.json {key} is {value!r}: expected an integer from 1 to 16777216")


def test_build_refuses_a_hostile_tokenizer_config(source_copy: Path, tmp_path: Path) -> None:
    """tokenizer_config.json nested 5,000 deep (a RecursionError traceback in the GGUF vocabulary reader)."""
    (source_copy / "tokenizer_config.json").write_text('{"a":' * 5000 + "1" + "}" * 5000)
    proc = build(source_copy, tmp_path)
    no_traceback(proc, 2, "tokenizer_config.json in ", "is not JSON phi-get reads: nested more than 64")
