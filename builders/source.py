"""The source checkpoint: where it comes from, what it is, and whether it is usable.

A source is a local folder in the Hugging Face layout, or ``owner/name@REV``
on the Hugging Face Hub (fetched with huggingface-hub at that exact revision).
:func:`open_source` validates it before any long work starts: a
``Phi3ForCausalLM`` config, a tokenizer, safetensors files whose headers
parse and whose sizes match their headers.  Its identity is the exact commit
(hub) or the sha256 over the sorted ``(path, sha256)`` list of its files
(local folder).

May import ``phi_get.manifests``; huggingface_hub is imported only to fetch.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phi_get.manifests.artifact import sha256_file
from phi_get.manifests.manifest import Source

from .errors import HubError, SourceError

__all__ = ["PHI3_ARCHITECTURE", "Checkpoint", "local_digest", "open_source"]

PHI3_ARCHITECTURE = "Phi3ForCausalLM"
_HUB = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)@([A-Za-z0-9._/-]+)$")
_TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json")
_MAX_HEADER = 100 * 1024 * 1024


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
    """Resolve ``revision`` to its exact commit, check config.json, then fetch the rest."""
    try:
        from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    except ImportError as exc:  # pragma: no cover - the build extra has it
        raise SourceError(f"huggingface-hub is needed to fetch {repo}@{revision}: {exc}") from None
    try:
        commit = HfApi().model_info(repo, revision=revision).sha or revision
        # The architecture is checked from config.json alone, before gigabytes of weights.
        _config(Path(hf_hub_download(repo, "config.json", revision=commit)).parent)
        folder = snapshot_download(repo, revision=commit,
                                   allow_patterns=["*.json", "*.safetensors", "tokenizer.model", "*.jinja"])
    except SourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - network, auth, missing revision: all end the build here
        raise HubError(f"cannot fetch {repo}@{revision} from the Hugging Face Hub: {exc}") from None
    return Path(folder), Source(repo=repo, revision=commit)


def _safetensors_header(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise SourceError(f"corrupt safetensors file {path}: shorter than its 8-byte header length")
        (n,) = struct.unpack("<Q", raw)
        if n > _MAX_HEADER or n + 8 > size:
            raise SourceError(f"corrupt safetensors file {path}: header length {n} does not fit a {size}-byte file")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SourceError(f"corrupt safetensors file {path}: header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise SourceError(f"corrupt safetensors file {path}: header is not a JSON object")
    end = 0
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(meta["data_offsets"][1]))
        except (KeyError, TypeError, IndexError, ValueError):
            raise SourceError(f"corrupt safetensors file {path}: tensor {name!r} has no data_offsets") from None
    if 8 + n + end != size:
        raise SourceError(f"corrupt safetensors file {path}: tensors need {8 + n + end} bytes, the file has {size}")
    return header


def _config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise SourceError(f"not a Hugging Face checkpoint: no config.json in {folder}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"config.json in {folder} is not JSON: {exc}") from None
    archs = config.get("architectures") or []
    if PHI3_ARCHITECTURE not in archs:
        raise SourceError(
            f"not a Phi-3-family checkpoint: config.json architectures is {archs!r}, expected [{PHI3_ARCHITECTURE!r}]"
            f" (in {folder})")
    return config


def _count_parameters(headers: list[dict[str, Any]]) -> int:
    total = 0
    for header in headers:
        for name, meta in header.items():
            if name != "__metadata__":
                count = 1
                for d in meta.get("shape", []):
                    count *= int(d)
                total += count
    return total


def open_source(spec: str | Path) -> Checkpoint:
    """Validate a source (local folder or ``owner/name@revision``) and describe it."""
    text = str(spec)
    folder = Path(text)
    if folder.is_dir():
        # Absolute: toolchains run in other working folders, where a relative
        # path would be read as a Hugging Face repo id.
        folder = folder.resolve()
        source = None
    elif m := _HUB.match(text):
        folder, source = _fetch_hub(m.group(1), m.group(2))
    else:
        raise SourceError(f"source {text!r} is neither a folder nor a Hugging Face repo 'owner/name@revision'")
    config = _config(folder)
    if not any((folder / t).is_file() for t in _TOKENIZER_FILES):
        raise SourceError(f"no tokenizer in {folder}: expected one of {', '.join(_TOKENIZER_FILES)}")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise SourceError(f"no *.safetensors weights in {folder}")
    headers = [_safetensors_header(p) for p in weights]
    if source is None:
        source = Source(local_sha256=local_digest(folder))
    try:
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        return Checkpoint(
            folder=folder, source=source, config=config,
            layers=int(config["num_hidden_layers"]), hidden=hidden, heads=heads,
            kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            intermediate=int(config["intermediate_size"]), vocab_size=int(config["vocab_size"]),
            max_context=int(config["max_position_embeddings"]), parameters=_count_parameters(headers),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SourceError(f"config.json in {folder} lacks a usable {exc} for a Phi-3 model") from None
