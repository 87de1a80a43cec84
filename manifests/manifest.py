"""Artifact manifest v1: what one built variant of a model is.

A manifest names the model, version and variant; says what the artifact is
(format, precision, quantization method), where it runs (hardware targets and
the runtime it needs) and how much memory it takes; lists every file with its
size and sha256; records provenance (exact source, recipe entry, tools,
command, time) and measured quality.  Its canonical JSON bytes are its
identity: the manifest digest is their sha256.

Example (shortened)::

    {"schema": "phi-get.manifest/v1", "name": "tiny-phi", "version": "0.1.0",
     "variant": "gguf-q4_k_m", "format": "gguf", "precision": "int4",
     "quantization": "q4_k_m", "targets": ["cpu-x86_64", "cpu-arm64", "cuda", "metal"],
     "runtime": {"distribution": "llama-cpp-python", "specifier": ">=0.3", "provider": "cpu"},
     "memory": {"weights_bytes": 2393232, "kv_bytes_per_token": 4096, "max_context": 4096},
     "files": [{"path": "model.gguf", "size": 2393232, "sha256": "..."}],
     "provenance": {...}, "quality": {...}}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from .canonical import canonical_bytes, check_plain_data, digest_of, load_json_document
from .fields import Reader
from .names import (
    MAX_FILE_SIZE,
    check_distribution_name,
    check_model_name,
    check_relative_path,
    check_specifier,
    check_variant_id,
    check_version,
    hex_of,
    path_key,
)
from .targets import check_target_tag

__all__ = [
    "MANIFEST_SCHEMA",
    "MAX_MANIFEST_BYTES",
    "PICKLE_SUFFIXES",
    "Format",
    "Precision",
    "QualityCheck",
    "RuntimeRequirement",
    "FileEntry",
    "MemoryNeeds",
    "Source",
    "Provenance",
    "Quality",
    "Manifest",
    "manifest_from_json",
    "parse_manifest",
]

MANIFEST_SCHEMA: Final = "phi-get.manifest/v1"
MAX_MANIFEST_BYTES: Final = 1 << 20
MAX_FILES: Final = 10_000
# Matched whole (fullmatch: '$' would allow a trailing newline) and ASCII only (names.py).
_PROVIDER = re.compile(r"[a-z0-9][a-z0-9-]{0,31}", re.ASCII)
_QUANT = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}", re.ASCII)
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}", re.ASCII)
_REVISION = re.compile(r"[0-9a-f]{40}", re.ASCII)
_CREATED = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", re.ASCII)


class Format(StrEnum):
    GGUF = "gguf"
    ONNX = "onnx"
    OPENVINO = "openvino"
    MLX = "mlx"
    SAFETENSORS = "safetensors"


class Precision(StrEnum):
    INT4 = "int4"
    INT8 = "int8"
    FP16 = "fp16"
    BF16 = "bf16"
    FP32 = "fp32"

    @property
    def bits(self) -> int:
        return {"int4": 4, "int8": 8, "fp16": 16, "bf16": 16, "fp32": 32}[self.value]


class QualityCheck(StrEnum):
    """How far an artifact was checked before publication."""

    RUNTIME = "runtime"        # loaded by its runtime, generated, metrics measured
    STRUCTURAL = "structural"  # hardware absent: files checked, never run




@dataclass(frozen=True, kw_only=True, slots=True)
class RuntimeRequirement:
    """The Python distribution that loads the artifact, and on what device."""

    distribution: str
    specifier: SpecifierSet = field(default_factory=SpecifierSet)
    #: Execution provider or device inside that runtime: cpu, cuda, directml, gpu, npu, metal ...
    provider: str = "cpu"

    def to_json(self) -> dict[str, Any]:
        return {"distribution": self.distribution, "specifier": str(self.specifier), "provider": self.provider}

    def __str__(self) -> str:
        return f"{self.distribution}{self.specifier} ({self.provider})"

    @classmethod
    def from_reader(cls, r: Reader) -> RuntimeRequirement:
        provider = r.text("provider", "cpu", max_len=32)
        if not _PROVIDER.fullmatch(provider):
            raise r.error("provider", "expected a lower-case execution provider name", provider)
        return cls(
            distribution=check_distribution_name(r.text("distribution", max_len=128), r.where("distribution"), r.document),
            specifier=check_specifier(r.text("specifier", "", allow_empty=True), r.where("specifier"), r.document),
            provider=provider,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class FileEntry:
    path: str
    size: int
    sha256: str  # 64 lower-case hex digits

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha256

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True, kw_only=True, slots=True)
class MemoryNeeds:
    """What the resolver needs for a memory-fit check: the memory a run at a context takes.

    :meth:`total_bytes` is the one formula (the resolver's fit check, its
    explanation, the registry's pages): weights + the runtime's fixed
    overhead + (KV cache + the runtime's compute buffers) per token of
    context.  It bounds the peak resident set of a run above the interpreter
    with the runtime imported (``resolver/runmemory.py`` measures that; the
    runtimes' figures and how they were fitted are in ``manifests/runtimes.py``).
    ``overhead_bytes`` and ``compute_bytes_per_token`` were added later:
    a manifest without them reads them as 0 (weights + KV, the old claim), and
    they are written only when non-zero, so older manifests keep their bytes.
    """

    #: Bytes of weights once loaded (about the files' size for these formats).
    weights_bytes: int
    #: KV-cache bytes per token of context in the runtime's cache precision.
    kv_bytes_per_token: int
    #: The longest context the model supports.
    max_context: int
    #: What the runtime takes beyond the weights whatever the context: its
    #: allocator and compute buffers, a weight copy it makes while loading.
    overhead_bytes: int = 0
    #: What the runtime takes per token of context beyond the KV cache: the
    #: prompt's activations and logits (vocabulary x 4 bytes where it keeps them all).
    compute_bytes_per_token: int = 0

    def total_bytes(self, context: int) -> int:
        return (self.weights_bytes + self.overhead_bytes
                + (self.kv_bytes_per_token + self.compute_bytes_per_token) * context)

    def context_within(self, budget: int) -> int:
        """The longest context whose :meth:`total_bytes` is at most ``budget`` (0 if none; max_context at most)."""
        per_token = self.kv_bytes_per_token + self.compute_bytes_per_token
        room = budget - self.total_bytes(0)
        if room < 0:
            return 0
        return self.max_context if per_token == 0 else min(self.max_context, room // per_token)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "weights_bytes": self.weights_bytes,
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "max_context": self.max_context,
        }
        if self.overhead_bytes:
            out["overhead_bytes"] = self.overhead_bytes
        if self.compute_bytes_per_token:
            out["compute_bytes_per_token"] = self.compute_bytes_per_token
        return out

    @classmethod
    def from_reader(cls, r: Reader) -> MemoryNeeds:
        return cls(
            weights_bytes=r.integer("weights_bytes", max=MAX_FILE_SIZE),
            kv_bytes_per_token=r.integer("kv_bytes_per_token", max=1 << 30),
            max_context=r.integer("max_context", min=1, max=1 << 24),
            overhead_bytes=r.integer("overhead_bytes", 0, max=MAX_FILE_SIZE),
            compute_bytes_per_token=r.integer("compute_bytes_per_token", 0, max=1 << 30),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Source:
    """The exact input: a Hugging Face repo at a commit, or local files by hash."""

    repo: str | None = None
    revision: str | None = None
    #: sha256 over the sorted (path, sha256) list of a local source folder.
    local_sha256: str | None = None
    #: The precision the source checkpoint's weights are stored in (``torch_dtype``
    #: of its config.json), when known.  A variant stored at more bits than this
    #: holds no more quality than the source.  Optional: written only
    #: when known, so manifests without it keep their bytes and digest.
    precision: Precision | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = ({"repo": self.repo, "revision": self.revision} if self.repo is not None
                               else {"local_sha256": self.local_sha256})
        if self.precision is not None:
            out["precision"] = str(self.precision)
        return out

    def __str__(self) -> str:
        return f"{self.repo}@{self.revision}" if self.repo else f"local:{self.local_sha256}"

    @classmethod
    def from_reader(cls, r: Reader) -> Source:
        if "repo" in r.data:
            repo = r.text("repo", max_len=200)
            if not _REPO.fullmatch(repo):
                raise r.error("repo", "expected a Hugging Face repo id 'owner/name'", repo)
            revision = r.text("revision", max_len=40)
            if not _REVISION.fullmatch(revision):
                raise r.error("revision", "expected the exact 40-hex commit the source was read at", revision)
            return cls(repo=repo, revision=revision, precision=r.choice("precision", Precision, None))
        if "local_sha256" in r.data:
            return cls(local_sha256=hex_of(r.data["local_sha256"], r.where("local_sha256"), r.document),
                       precision=r.choice("precision", Precision, None))
        raise r.error("repo", "a source names either 'repo' + 'revision' or 'local_sha256'")


@dataclass(frozen=True, kw_only=True, slots=True)
class Provenance:
    source: Source
    #: The recipe entry the variant was built from, as written in the recipe.
    recipe: Mapping[str, Any]
    builder: str  # "phi-get 0.1.0"
    #: Tool distribution -> version, for every tool that touched the bytes.
    tools: Mapping[str, str]
    command: tuple[str, ...]
    created: str  # RFC 3339 UTC, "2026-11-26T09:00:00Z"

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source.to_json(),
            "recipe": dict(self.recipe),
            "builder": self.builder,
            "tools": dict(sorted(self.tools.items())),
            "command": list(self.command),
            "created": self.created,
        }

    @classmethod
    def from_reader(cls, r: Reader) -> Provenance:
        created = r.text("created", max_len=40)
        if not _CREATED.fullmatch(created):
            raise r.error("created", "expected an RFC 3339 UTC time like 2026-11-26T09:00:00Z", created)
        recipe = r.obj("recipe", {})
        if isinstance(recipe, Reader):
            check_plain_data(recipe.data, field=r.where("recipe"), document=r.document)
        return cls(
            source=Source.from_reader(r.obj("source")),
            recipe=recipe.data if isinstance(recipe, Reader) else recipe,
            builder=r.text("builder", max_len=128),
            tools=r.text_map("tools", {}),
            command=tuple(r.texts("command", [], max_items=256, max_len=4096)),
            created=created,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Quality:
    """Measured quality, through the artifact's own runtime.

    ``metrics`` holds numbers such as ``perplexity``, ``reference_perplexity``,
    ``top1_agreement`` (0..1) and ``max_abs_logit_error``; ``evaluation``
    describes what they were measured on (text sha256, token count, runtime).
    """

    check: QualityCheck
    metrics: Mapping[str, float] = field(default_factory=dict)
    evaluation: Mapping[str, str] = field(default_factory=dict)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "check": str(self.check),
            "metrics": dict(sorted(self.metrics.items())),
            "evaluation": dict(sorted(self.evaluation.items())),
        }
        if self.note:
            out["note"] = self.note
        return out

    @classmethod
    def from_reader(cls, r: Reader) -> Quality:
        metrics_r = r.obj("metrics", {})
        metrics: dict[str, float] = {}
        if isinstance(metrics_r, Reader):
            for key in metrics_r.data:
                metrics[key] = metrics_r.number(key, min=-1e30, max=1e30)
        return cls(
            check=r.choice("check", QualityCheck),
            metrics=metrics,
            evaluation=r.text_map("evaluation", {}),
            note=r.text("note", "", max_len=4096, allow_empty=True),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Manifest:
    name: str  # canonical model name
    version: Version
    variant: str
    format: Format
    precision: Precision
    quantization: str
    targets: tuple[str, ...]
    runtime: RuntimeRequirement
    memory: MemoryNeeds
    files: tuple[FileEntry, ...]
    provenance: Provenance
    quality: Quality
    #: Free-form architecture facts (class name, parameters, layers ...).
    architecture: Mapping[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def key(self) -> tuple[str, str, str]:
        """(name, version, variant): what can never be published twice."""
        return (self.name, str(self.version), self.variant)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": MANIFEST_SCHEMA,
            "name": self.name,
            "version": str(self.version),
            "variant": self.variant,
            "format": str(self.format),
            "precision": str(self.precision),
            "quantization": self.quantization,
            "targets": list(self.targets),
            "runtime": self.runtime.to_json(),
            "memory": self.memory.to_json(),
            "architecture": dict(self.architecture),
            "files": [f.to_json() for f in self.files],
            "provenance": self.provenance.to_json(),
            "quality": self.quality.to_json(),
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON bytes: the form that is hashed, stored and served."""
        return canonical_bytes(self.to_json())

    @property
    def digest(self) -> str:
        return digest_of(self.to_bytes())


def _files(r: Reader) -> tuple[FileEntry, ...]:
    entries: list[FileEntry] = []
    seen: dict[str, str] = {}
    for fr in r.objects("files", max_items=MAX_FILES):
        path = check_relative_path(fr.data.get("path"), fr.where("path"), r.document)
        # Paths are compared by path_key (NFC, case-folded): two files that
        # differ only in case or in Unicode form would overwrite each other on
        # Windows and macOS.
        folded = path_key(path)
        if folded in seen:
            raise fr.error("path", f"duplicate path (same as {seen[folded]!r})", path)
        for prefix in _prefixes(folded):
            if prefix in seen:
                raise fr.error("path", f"path lies inside the file {seen[prefix]!r}", path)
        seen[folded] = path
        entries.append(FileEntry(
            path=path,
            size=fr.integer("size", max=MAX_FILE_SIZE),
            sha256=hex_of(fr.data.get("sha256"), fr.where("sha256"), r.document),
        ))
    if not entries:
        raise r.error("files", "an artifact has at least one file")
    # A file may not also be a folder of another file.  One set of every folder
    # (each path's proper prefixes): comparing every pair took seconds for 10,000 files.
    folders = {prefix for key in seen for prefix in _prefixes(key)}
    for entry in entries:
        if path_key(entry.path) in folders:
            raise r.error("files", f"{entry.path!r} is both a file and a folder", entry.path)
    return tuple(entries)


def _prefixes(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def manifest_from_json(data: object, *, document: str = "manifest") -> Manifest:
    r = Reader(data, document=document)
    r.schema(MANIFEST_SCHEMA)
    quant = r.text("quantization", max_len=64)
    if not _QUANT.fullmatch(quant):
        raise r.error("quantization", "expected a lower-case method name like q4_k_m or int4-sym-g64", quant)
    targets = r.texts("targets", max_items=64, max_len=32)
    if not targets:
        raise r.error("targets", "an artifact runs on at least one target")
    for i, tag in enumerate(targets):
        check_target_tag(tag, f"targets[{i}]", document)
    if len(set(targets)) != len(targets):
        raise r.error("targets", "duplicate target tag", targets)
    arch = r.obj("architecture", {})
    if isinstance(arch, Reader):  # free-form: hashed and shown as written, so plain JSON data
        check_plain_data(arch.data, field="architecture", document=document)
    manifest = Manifest(
        name=check_model_name(r.text("name", max_len=128), "name", document),
        version=check_version(r.text("version", max_len=64), "version", document),
        variant=check_variant_id(r.text("variant", max_len=96), "variant", document),
        format=r.choice("format", Format),
        precision=r.choice("precision", Precision),
        quantization=quant,
        targets=tuple(targets),
        runtime=RuntimeRequirement.from_reader(r.obj("runtime")),
        memory=MemoryNeeds.from_reader(r.obj("memory")),
        files=_files(r),
        provenance=Provenance.from_reader(r.obj("provenance")),
        quality=Quality.from_reader(r.obj("quality")),
        architecture=arch.data if isinstance(arch, Reader) else arch,
    )
    _refuse_pickle(manifest, r)
    return manifest


#: Suffixes of Python pickles (PyTorch checkpoints, joblib, plain pickles).  Loading a
#: pickle runs code it carries, so no phi-get format has one: GGUF, ONNX, OpenVINO IR,
#: MLX and safetensors store tensors as plain data.  (``.bin`` is OpenVINO IR's weight
#: file, raw tensors; as PyTorch's legacy pickle it is refused by content when an
#: artifact folder is verified: :func:`phi_get.manifests.artifact.load_artifact_folder`.)
PICKLE_SUFFIXES: Final = frozenset({".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib"})


def _refuse_pickle(manifest: Manifest, r: Reader) -> None:
    for i, entry in enumerate(manifest.files):
        name = entry.path.rsplit("/", 1)[-1]
        suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if suffix in PICKLE_SUFFIXES:
            raise r.error(f"files[{i}].path", f"{suffix} files are Python pickles, which run code when loaded; "
                          "phi-get artifacts carry tensors as data only (safetensors, GGUF, ONNX, OpenVINO IR)",
                          entry.path)


def parse_manifest(data: bytes | str, *, document: str = "manifest") -> Manifest:
    """Parse and validate manifest bytes read from outside."""
    return manifest_from_json(load_json_document(data, limit=MAX_MANIFEST_BYTES, document=document), document=document)

