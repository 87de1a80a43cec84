"""Hostile documents handed to the real ``phi-get`` CLI (SECURITY.md: hostile numbers and nesting, names that look alike, typos).

Every document phi-get reads from outside goes through one loader
(``manifests/canonical.py``).  Each case here serves a hostile index or
manifest from a ``file://`` mirror (the manifest's digest in the index made
to match, as a hostile registry would), or writes a hostile ``phi.toml`` or
``phi.lock``, runs the real command in a subprocess and asserts: exit code 2
(bad input), the message names the document and, where the parser knows it,
the field, and no Python traceback.  Before the fix each case either crashed
with a traceback (int-string limit, RecursionError in tomllib, a lone UTF-16
surrogate written to disk) or was silently accepted (a look-alike or
newline-terminated name, nesting deep enough to crash later, a typo'd key).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from phi_get.manifests.index import index_path, manifest_path

PHI_GET = [sys.executable, "-m", "phi_get"]
BIG = b"9" * 5000  # past Python's int-string limit (4300 digits)


def phi_get(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PHI_GET_HOME": str(home)}
    env.pop("PHI_GET_REGISTRY", None)
    return subprocess.run([*PHI_GET, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120,
                          check=False)


def refused(proc: subprocess.CompletedProcess[str], *names: str) -> None:
    """Exit 2, each of ``names`` in the message, no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    for name in names:
        assert name in proc.stderr, (name, proc.stderr[-2000:])


def mirror_with(tmp_path: Path, kit: Any, *, index: Callable[[bytes], bytes] = lambda b: b,
                manifest: Callable[[bytes], bytes] = lambda b: b) -> Path:
    """A mirror of one small model whose index and manifest bytes pass through the mutators;
    the index names the mutated manifest by its own digest, so only the content is hostile."""
    files: dict[str, bytes | Path] = {"model.bin": b"w" * 1000, "config.json": b"{}"}
    m = kit.make_manifest("tiny-model", "1.0.0", "safetensors-fp32", files)
    root: Path = kit.write_mirror(tmp_path / "mirror", [(m, files)])
    raw = manifest(m.to_bytes())
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    (root / manifest_path(digest)).write_bytes(raw)
    ipath = root / index_path("tiny-model")
    ipath.write_bytes(index(ipath.read_bytes().replace(m.digest.encode(), digest.encode())))
    return root


def _deep_architecture(levels: int) -> Callable[[bytes], bytes]:
    return lambda b: b.replace(b'"architecture":{', b'"architecture":{"x":' + b"[" * levels + b"1" + b"]" * levels
                               + b",")


INDEX_DOC = "v1/models/tiny-model/index.json"
MANIFEST_DOC = "v1/manifests/sha256/"


CASES = [
    ("index integer of 5000 digits", lambda b: b.replace(b'"size":1002', b'"size":' + BIG), None,
     [INDEX_DOC, "an integer has more than 4300 digits"]),
    ("manifest integer of 5000 digits", None, lambda b: b.replace(b'"max_context":2048', b'"max_context":' + BIG),
     [MANIFEST_DOC, "an integer has more than 4300 digits"]),
    ("manifest nested 100 deep", None, _deep_architecture(100), [MANIFEST_DOC, "nested more than 64"]),
    ("manifest path with a lone surrogate", None,
     lambda b: b.replace(b'"path":"model.bin"', b'"path":"model\\ud800.bin"'), [MANIFEST_DOC, "lone UTF-16 surrogate"]),
    ("index name with a look-alike letter", lambda b: b.replace(b'"name":"tiny-model"', '"name":"tiny-mode\u0131"'.encode()),
     None, [INDEX_DOC, "at name: a model name is"]),
    ("index name with a trailing newline", lambda b: b.replace(b'"name":"tiny-model"', b'"name":"tiny-model\\n"'),
     None, [INDEX_DOC, "at name: a model name is"]),
    ("index digest with a trailing newline", lambda b: b.replace(b'","memory"', b'\\n","memory"'), None,
     [INDEX_DOC, "variants[0].manifest"]),
    ("manifest quantization with a trailing newline", None,
     lambda b: b.replace(b'"quantization":"none"', b'"quantization":"none\\n"'), [MANIFEST_DOC, "at quantization"]),
    ("manifest time in Arabic-Indic digits", None, lambda b: b.replace(b'"created":"2026', '"created":"\u0662\u0660\u0662\u0666'.encode()),
     [MANIFEST_DOC, "at provenance.created"]),
]


@pytest.mark.parametrize(("command", "label", "index", "manifest", "names"), [
    (command, *case) for case in CASES for command in ("install", "resolve") if command == "install" or case[2] is None
])
def test_hostile_index_or_manifest(tmp_path: Path, kit: Any, command: str, label: str, index: Any, manifest: Any,
                                   names: list[str]) -> None:
    """Hostile numbers, nesting, surrogates and look-alike names in the wire documents: exit 2, named
    (``resolve`` reads only the index: it gets the index cases)."""
    root = mirror_with(tmp_path, kit, index=index or (lambda b: b), manifest=manifest or (lambda b: b))
    proc = phi_get(tmp_path / "home", command, "tiny-model", "--registry", root.as_uri(), "--device", "pi-board")
    refused(proc, *names)
    assert not (tmp_path / "home" / "refs").exists() or not any((tmp_path / "home" / "refs").rglob("*"))


PROJECT = """[project]
registries = ["MIRROR"]

[models]
"tiny-model" = { version = ">=0", prefer = "size" }

[device-classes]
edge = "pi-board"
"""


def project_with(tmp_path: Path, kit: Any, text: str) -> Path:
    root = mirror_with(tmp_path, kit)
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "phi.toml").write_text(text.replace("MIRROR", root.as_uri()), encoding="utf-8")
    return folder


def test_the_sample_project_locks(tmp_path: Path, kit: Any) -> None:
    """The baseline the cases below mutate: it locks (exit 0)."""
    folder = project_with(tmp_path, kit, PROJECT)
    proc = phi_get(tmp_path / "home", "lock", "--project", str(folder))
    assert proc.returncode == 0, proc.stderr
    assert (folder / "phi.lock").is_file()


@pytest.mark.parametrize(("old", "new", "message"), [
    ("prefer =", "prefers =",
     "at models.tiny-model.prefers: unknown key 'prefers' in [models.tiny-model]; did you mean 'prefer'?"),
    ('prefer = "size"', 'prefer = "size", contxt = 99999',
     "at models.tiny-model.contxt: unknown key 'contxt' in [models.tiny-model]; did you mean 'context'?"),
    ("registries =", "registry =", "at project.registry: unknown key 'registry' in [project]; did you mean 'registries'?"),
    ("[project]", "[projects]", "at projects: unknown key 'projects' at the top level; did you mean 'project'?"),
    ('prefer = "size"', 'prefer = "size", flavour = "x"', "unknown key 'flavour' in [models.tiny-model]; the known "
     "keys are context, format, "),
])
def test_unknown_key_in_phi_toml_is_named_with_the_nearest(tmp_path: Path, kit: Any, old: str, new: str,
                                                           message: str) -> None:
    """Unknown keys in phi.toml: a typo is an error naming the key, its table and
    the nearest known key; before, the lock silently recorded the default."""
    folder = project_with(tmp_path, kit, PROJECT.replace(old, new, 1))
    proc = phi_get(tmp_path / "home", "lock", "--project", str(folder))
    refused(proc, "phi.toml", message)
    assert not (folder / "phi.lock").exists()


@pytest.mark.parametrize(("old", "new", "message"), [
    ('{ version = ">=0", prefer = "size" }', "[" * 3000 + "]" * 3000, "phi.toml: nested more than 64"),
    ('prefer = "size"', "context = " + BIG.decode(), "phi.toml: not TOML: an integer has more than 4300 digits"),
    ('prefer = "size"', "context = 1979-05-27", "at models.tiny-model.context: dates and times are not used"),
])
def test_hostile_numbers_and_nesting_in_phi_toml(tmp_path: Path, kit: Any, old: str, new: str, message: str) -> None:
    """Deep nesting (RecursionError inside tomllib) and integers past the int-string limit in phi.toml."""
    folder = project_with(tmp_path, kit, PROJECT.replace(old, new, 1))
    proc = phi_get(tmp_path / "home", "lock", "--project", str(folder))
    refused(proc, message)


def test_dotted_key_of_many_parts_is_refused_before_parsing(tmp_path: Path, kit: Any) -> None:
    """A dotted key of 20,000 parts (tomllib's memory grows with the square of the parts: 1.6 GB
    here, out of memory for 100,000) is refused by the scan before tomllib runs."""
    folder = project_with(tmp_path, kit, PROJECT + "x" + ".x" * 20_000 + " = 1\n")
    proc = phi_get(tmp_path / "home", "lock", "--project", str(folder))
    refused(proc, "phi.toml: nested more than 64")


@pytest.mark.parametrize(("old", "new", "message"), [
    ('lock-version = "1.0"', 'lock-version = "\u00b2.0"', "at lock-version: expected MAJOR.MINOR"),
    ("size = ", "size = " + BIG.decode() + "\nx = ", "phi.lock: not TOML: an integer has more than 4300 digits"),
    ('lock-version = "1.0"', 'lock-version = "1.0"\nlock-verison = "1.0"',
     "at lock-verison: unknown key 'lock-verison' at the top level; did you mean 'lock-version'?"),
])
def test_hostile_lock_file(tmp_path: Path, kit: Any, old: str, new: str, message: str) -> None:
    """A damaged or hand-edited phi.lock (a superscript digit, a 5000-digit size, a typo'd key):
    `sync --locked` refuses it naming the field."""
    folder = project_with(tmp_path, kit, PROJECT)
    assert phi_get(tmp_path / "home", "lock", "--project", str(folder)).returncode == 0
    lock = folder / "phi.lock"
    text = lock.read_text(encoding="utf-8")
    assert old in text
    lock.write_text(text.replace(old, new, 1), encoding="utf-8")
    proc = phi_get(tmp_path / "home", "sync", "--locked", "--project", str(folder), "--device-class", "edge")
    refused(proc, "phi.lock", message)


@pytest.mark.parametrize(("content", "message"), [
    (b'{"a":' * 5000 + b"1" + b"}" * 5000, "nested more than 64 arrays or objects deep"),
    (b'{"memory_bytes":' + BIG + b"}", "an integer has more than 4300 digits"),
])
def test_hostile_device_profile(tmp_path: Path, content: bytes, message: str) -> None:
    """A device profile file (--device) nested 5,000 deep or with a 5000-digit number: exit 2, named."""
    profile = tmp_path / "device.json"
    profile.write_bytes(content)
    refused(phi_get(tmp_path / "home", "device", "--device", str(profile)), "device.json", message)
