"""The source checkpoint: where it comes from, what it is, and whether it is usable.

Named for the checkpoint (a build's "source"), apart from the resolver's
sources, which are registries and mirrors.

A source is a local folder in the Hugging Face layout, or ``owner/name@REV``
on the Hugging Face Hub (fetched at the exact commit the revision names, every file
checked against the repo's git tree: builders/hub.py).
:func:`open_source` validates it before any long work starts: a
``Phi3ForCausalLM`` config, a tokenizer, safetensors files whose headers
parse and whose sizes match their headers.  Its identity is the exact commit
(hub) or the sha256 over the sorted ``(path, sha256)`` list of its files
(local folder).

May import ``phi_get.manifests``; huggingface_hub is imported only to fetch (by hub.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from phi_get.manifests.artifact import sha256_file
from phi_get.manifests.canonical import load_json_document
from phi_get.manifests.errors import ManifestError
from phi_get.manifests.manifest import Source
from phi_get.manifests.modelfiles import SafetensorsHeader, read_safetensors_header

from .errors import CheckpointError
from .hub import download, parse_hub_spec, resolve_revision
from .source_dtype import source_precision

__all__ = ["PHI3_ARCHITECTURE", "Checkpoint", "local_digest", "open_source"]

PHI3_ARCHITECTURE = "Phi3ForCausalLM"
_TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json")
_MAX_CONFIG = 1 << 20
#: Largest JSON file of a source (tokenizer.json of the largest Phi vocabularies is about 15 MB).
_MAX_JSON_FILE = 256 << 20
#: Largest layer count, width, vocabulary or context accepted from config.json (Phi-4's are below 2**18).
_MAX_DIMENSION = 1 << 24


@dataclass(frozen=True, kw_only=True, slots=True)
class Checkpoint:
    """A validated Phi-3-family checkpoint folder and the facts builders need."""

    folder: Path
    source: Source
    config: dict[str, Any]
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab_size: int
    max_context: int
    parameters: int

    @property
    def digest(self) -> str:
        """A short identity of the exact input (for work folders and stamps)."""
        return hashlib.sha256(str(self.source).encode()).hexdigest()

    def architecture(self) -> dict[str, Any]:
        """Architecture facts recorded in every manifest."""
        return {
            "class": PHI3_ARCHITECTURE, "layers": self.layers, "hidden_size": self.hidden,
            "heads": self.heads, "kv_heads": self.kv_heads, "head_dim": self.head_dim,
            "intermediate_size": self.intermediate, "vocab_size": self.vocab_size,
            "max_context": self.max_context, "parameters": self.parameters,
        }

    def kv_bytes_per_token(self, element_bytes: int) -> int:
        """K and V for every layer: 2 * layers * kv_heads * head_dim * bytes."""
        return 2 * self.layers * self.kv_heads * self.head_dim * element_bytes


def local_digest(folder: Path) -> str:
    """sha256 over the sorted ``(path, sha256)`` list of the files in ``folder``."""
    h = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not _ignored(p.relative_to(folder)))
    for path in files:
        h.update(f"{path.relative_to(folder).as_posix()}\0{sha256_file(path)}\n".encode())
    return h.hexdigest()


def _ignored(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _fetch_hub(repo: str, revision: str) -> tuple[Path, Source]:
    """Resolve ``revision`` to its exact commit, check config.json, then fetch the rest (builders/hub.py)."""
    commit = resolve_revision(repo, revision)
    # The architecture is checked from config.json alone, before gigabytes of weights.
    _config(download(repo, commit, ["config.json"]).folder)
    snapshot = download(repo, commit, ["*.json", "*.safetensors", "tokenizer.model", "*.jinja"])
    return snapshot.folder, Source(repo=repo, revision=commit)


def _safetensors_header(path: Path) -> SafetensorsHeader:
    """The header, every length, shape and offset bounded (manifests/modelfiles.py), and no
    byte after the last tensor."""
    try:
        header = read_safetensors_header(path)
    except ManifestError as exc:
        if exc.field and exc.field != "(top level)":  # a field of the header: its own words
            raise CheckpointError(f"corrupt safetensors file {path}: {exc.reason} at {exc.field}") from None
        raise CheckpointError(f"corrupt safetensors file {path}: header is not JSON ({exc.reason})") from None
    size = path.stat().st_size
    if header.data_end != size:
        raise CheckpointError(f"corrupt safetensors file {path}: tensors need {header.data_end} bytes, the file has {size}")
    return header


def _config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        config = load_json_document(path.read_bytes(), limit=_MAX_CONFIG, document=f"config.json in {folder}")
    except FileNotFoundError:
        raise CheckpointError(f"not a Hugging Face checkpoint: no config.json in {folder}") from None
    except ManifestError as exc:
        raise CheckpointError(f"config.json in {folder} is not JSON: {exc.reason}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"config.json in {folder} is not a JSON object")
    archs = config.get("architectures") or []
    if PHI3_ARCHITECTURE not in archs:
        raise CheckpointError(
            f"not a Phi-3-family checkpoint: config.json architectures is {archs!r}, expected [{PHI3_ARCHITECTURE!r}]"
            f" (in {folder})")
    return config


def _check_json_files(folder: Path) -> None:
    """Every JSON file of the source (tokenizer.json, tokenizer_config.json ...) through the one
    loader, before transformers, tokenizers or the GGUF converter read it: one nested thousands
    deep or holding a 5,000-digit number was a traceback minutes into a build."""
    for path in sorted(folder.glob("*.json")):
        try:
            load_json_document(path.read_bytes(), limit=_MAX_JSON_FILE, document=str(path))
        except ManifestError as exc:
            raise CheckpointError(f"{path.name} in {folder} is not JSON phi-get reads: {exc.reason}") from None


def _count_parameters(headers: list[SafetensorsHeader]) -> int:
    return sum(t.elements for header in headers for t in header.tensors.values())


def _dimension(config: dict[str, Any], key: str, default: int | None = None) -> int:
    """A positive integer of config.json, bounded: a hostile 10**30 layers would make every
    size computed from it absurd (a manifest no registry accepts, after hours of work)."""
    value = config.get(key)
    if default is not None and not value:  # absent, null or 0: the default, as config.json readers do
        value = default
    if type(value) is not int or not 1 <= value <= _MAX_DIMENSION:
        raise CheckpointError(f"config.json {key} is {value!r}: expected an integer from 1 to {_MAX_DIMENSION}")
    return value


def open_source(spec: str | Path) -> Checkpoint:
    """Validate a source (local folder or ``owner/name@revision``) and describe it."""
    text = str(spec)
    folder = Path(text)
    if folder.is_dir():
        # Absolute: toolchains run in other working folders, where a relative
        # path would be read as a Hugging Face repo id.
        folder = folder.resolve()
        source = None
    elif hub := parse_hub_spec(text):
        folder, source = _fetch_hub(*hub)
    else:
        raise CheckpointError(f"source {text!r} is neither a folder nor a Hugging Face repo 'owner/name@revision'")
    config = _config(folder)
    if not any((folder / t).is_file() for t in _TOKENIZER_FILES):
        raise CheckpointError(f"no tokenizer in {folder}: expected one of {', '.join(_TOKENIZER_FILES)}")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise CheckpointError(f"no *.safetensors weights in {folder}")
    headers = [_safetensors_header(p) for p in weights]
    _check_json_files(folder)
    if source is None:
        source = Source(local_sha256=local_digest(folder))
    source = replace(source, precision=source_precision(config, headers))  # no quality above it
    for key in ("num_attention_heads", "hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size",
                "max_position_embeddings"):
        if key not in config:
            raise CheckpointError(f"config.json in {folder} lacks a usable {key!r} for a Phi-3 model")
    heads = _dimension(config, "num_attention_heads")
    hidden = _dimension(config, "hidden_size")
    return Checkpoint(
        folder=folder, source=source, config=config,
        layers=_dimension(config, "num_hidden_layers"), hidden=hidden, heads=heads,
        kv_heads=_dimension(config, "num_key_value_heads", heads),
        head_dim=_dimension(config, "head_dim", hidden // heads or None),
        intermediate=_dimension(config, "intermediate_size"), vocab_size=_dimension(config, "vocab_size"),
        max_context=_dimension(config, "max_position_embeddings"), parameters=_count_parameters(headers),
    )
