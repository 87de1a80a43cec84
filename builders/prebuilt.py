"""An upstream prebuilt artifact, imported from a Hub repo at a commit (``phi-get import hf://REPO@REV``).

Microsoft and others publish their own builds of Phi (GGUF, ONNX Runtime
GenAI, OpenVINO, MLX, safetensors).  :func:`import_prebuilt` turns one such
repo at an exact commit into a phi-get artifact folder, as a build would:

1. the revision is resolved to its commit and the files fetched and held to
   the repo's git tree (sizes, LFS sha256: :mod:`.hub`); an empty file list
   or one without a recognisable artifact is refused, naming what was found;
2. the format is inferred from the files (:func:`detect_format`: a ``.gguf``
   file -> llama.cpp; ``genai_config.json`` -> onnxruntime-genai;
   ``openvino_model.xml`` -> OpenVINO; ``config.json`` with a
   ``quantization`` block beside safetensors -> MLX; other safetensors ->
   transformers), or declared with ``--format``, which must agree;
3. precision, quantization, targets and runtime come from the variant
   catalog (``--variant`` naming a catalog id, or the catalog entry of the
   same format and quantization, the quantization of a GGUF being read from
   its ``general.file_type``), each overridable by a flag;
4. the artifact is run by its runtime here before anything is published:
   with ``--reference`` (a checkpoint folder or ``REPO@REV``), the same
   measurement and quality gate as a build (``evaluate.py``); without one,
   the runtime loads it and generates from the fixed prompt, and the
   manifest says ``quality.check = structural`` and why;
5. the manifest records every file's size and sha256, the memory the
   runtime needs (from the GGUF's metadata or config.json), and the
   provenance: repo, resolved commit, the command, huggingface-hub's version.

Imported and run here today: GGUF (llama-cpp-python) and safetensors
(transformers).  ONNX, OpenVINO and MLX layouts are recognised and refused
with that said, rather than published unchecked.

May import ``phi_get.manifests``; gguf, llama_cpp, torch and transformers inside functions.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from phi_get.manifests.artifact import MANIFEST_FILENAME, file_entry, load_artifact_folder
from phi_get.manifests.atomic import fresh_temp
from phi_get.manifests.canonical import load_json_document
from phi_get.manifests.errors import ManifestError
from phi_get.manifests.manifest import Format, Manifest, MemoryNeeds, Provenance, Quality, Source
from phi_get.manifests.names import check_version
from phi_get.manifests.recipe import VariantSpec, load_variant_catalog, variant_from_json
from phi_get.manifests.runtimes import run_overhead

from .base import BuildContext
from .build import BUILDER, artifact_path, install_folder, work_folder
from .checkpoint import PHI3_ARCHITECTURE, Checkpoint, open_source
from .errors import BuildError
from .evaluate import (
    GENERATE_TOKENS,
    PROMPT,
    load_reference,
    quality_gate,
    runtime_quality,
    score_logits,
    structural_quality,
)
from .gguf import FILE_TYPES, run_gguf
from .hub import download, parse_hub_spec, resolve_revision

__all__ = ["Declared", "detect_format", "import_prebuilt"]

#: The scheme of an import source: ``hf://OWNER/NAME@REVISION``.
SCHEME: Final = "hf://"
#: Files of a Hub repo that are never part of the artifact (git's, the Hub's own bookkeeping).
_SKIP = re.compile(r"(^|/)\.")
#: Formats imported and run here; the others are recognised and refused (see the module docstring).
_RUN_HERE: Final = frozenset({Format.GGUF, Format.SAFETENSORS})


@dataclass(frozen=True, kw_only=True, slots=True)
class Declared:
    """What ``phi-get import``'s flags declare; None: inferred from the files and the catalog."""

    format: str | None = None
    precision: str | None = None
    quantization: str | None = None
    targets: tuple[str, ...] | None = None
    #: ``DISTRIBUTION[SPECIFIER][@PROVIDER]``, e.g. ``llama-cpp-python>=0.3@cpu``.
    runtime: str | None = None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def detect_format(files: Sequence[str], folder: Path) -> Format:
    """The artifact format the files are in; BuildError naming the files when none is recognised."""
    names = {Path(f).name for f in files}
    if any(f.endswith(".gguf") for f in files):
        return Format.GGUF
    if "genai_config.json" in names:
        return Format.ONNX
    if "openvino_model.xml" in names:
        return Format.OPENVINO
    if any(f.endswith(".safetensors") for f in files) and "config.json" in names:
        config = folder / next(f for f in files if Path(f).name == "config.json")
        try:
            doc = load_json_document(config.read_bytes(), limit=1 << 20, document=str(config))
        except ManifestError as exc:
            raise BuildError(f"config.json of the artifact is not JSON phi-get reads: {exc.reason}") from None
        return Format.MLX if isinstance(doc, dict) and isinstance(doc.get("quantization"), dict) else Format.SAFETENSORS
    shown = ", ".join(sorted(files)[:12]) + (" ..." if len(files) > 12 else "")
    raise BuildError(f"no artifact phi-get recognises among the files ({shown}): expected a .gguf file, "
                     "genai_config.json (ONNX Runtime GenAI), openvino_model.xml (OpenVINO), or safetensors "
                     "with config.json (transformers; MLX when config.json has a quantization block)")


def _gguf_facts(path: Path) -> dict[str, Any]:
    """What a GGUF file's metadata says: file type, architecture, dimensions, parameters."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse failure of a foreign file is one refusal
        raise BuildError(f"{path.name} is not a GGUF file gguf {_version('gguf')} reads: {exc}") from None

    def field(key: str, default: Any = None) -> Any:
        f = reader.fields.get(key)
        return default if f is None else f.contents()

    arch = str(field("general.architecture", ""))
    facts = {"arch": arch, "file_type": field("general.file_type"),
             "layers": field(f"{arch}.block_count"), "hidden": field(f"{arch}.embedding_length"),
             "heads": field(f"{arch}.attention.head_count"), "kv_heads": field(f"{arch}.attention.head_count_kv"),
             "intermediate": field(f"{arch}.feed_forward_length"), "max_context": field(f"{arch}.context_length"),
             "parameters": sum(int(t.n_elements) for t in reader.tensors)}
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    facts["vocab_size"] = len(tokens.data) if tokens is not None else None
    facts["head_dim"] = field(f"{arch}.attention.key_length") or (
        facts["hidden"] // facts["heads"] if facts["hidden"] and facts["heads"] else None)
    for key in ("layers", "hidden", "heads", "kv_heads", "max_context", "head_dim"):
        if type(facts[key]) is not int or facts[key] < 1:
            raise BuildError(f"{path.name}: its GGUF metadata has no usable {arch}.{key} ({facts[key]!r})")
    return facts


def _spec(variant: str, fmt: Format, found_quantization: str | None, declared: Declared) -> VariantSpec:
    """The variant's catalog entry (by id, else by format and quantization), with the declared fields over it."""
    catalog = load_variant_catalog()
    quantization = declared.quantization or found_quantization
    base = catalog.get(variant) or next((s for s in catalog.values() if s.format is fmt
                                         and (quantization is None or s.quantization == quantization)), None)
    if base is not None and base.format is not fmt:
        raise BuildError(f"catalog variant {variant!r} is {base.format}, but the files are {fmt}")
    doc: dict[str, Any] = base.to_json() if base is not None else {"format": str(fmt)}
    doc["id"] = variant
    for key, value in (("precision", declared.precision), ("quantization", quantization),
                       ("targets", list(declared.targets) if declared.targets else None)):
        if value is not None:
            doc[key] = value
    if declared.runtime is not None:
        dist, _, provider = declared.runtime.partition("@")
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(.*)$", dist.strip())
        if m is None:
            raise BuildError(f"--runtime {declared.runtime!r}: expected DISTRIBUTION[SPECIFIER][@PROVIDER]")
        doc["runtime"] = {"distribution": m.group(1), "specifier": m.group(2).strip(), "provider": provider or "cpu"}
    missing = [k for k in ("precision", "quantization", "targets", "runtime") if k not in doc]
    if missing:
        raise BuildError(f"the variant catalog has no {fmt} entry for {variant!r}"
                         + (f" with quantization {quantization!r}" if quantization else "")
                         + f": declare {', '.join('--' + k for k in missing)}")
    try:
        return variant_from_json(doc, document="phi-get import (the variant)")
    except ManifestError as exc:
        raise BuildError(f"the declared variant is invalid: {exc}") from None


def _fetch(source: str, include: Sequence[str] | None) -> tuple[str, str, Path, list[str]]:
    if not source.startswith(SCHEME) or (parsed := parse_hub_spec(source.removeprefix(SCHEME))) is None:
        raise BuildError(f"import source {source!r}: expected {SCHEME}OWNER/NAME@REVISION")
    repo, revision = parsed
    commit = resolve_revision(repo, revision)
    snap = download(repo, commit, include)
    files = [f for f in snap.files if not _SKIP.search(f)]
    if not files:
        asked = f" matching {', '.join(include)}" if include else ""
        raise BuildError(f"{repo}@{revision} (commit {commit}) has no files{asked}: nothing to import")
    return repo, commit, snap.folder, files


def _quality_gguf(path: Path, ckpt: Checkpoint | None, work: Path) -> Quality:
    runtime = f"llama-cpp-python {_version('llama-cpp-python')} cpu"
    if ckpt is not None:
        reference = load_reference(ckpt.folder, work / "reference")
        ctx = BuildContext(checkpoint=ckpt, reference=reference, work=work, reporter=lambda v, m: None)
        logits, text = run_gguf(path, ctx)
        return runtime_quality(score_logits(logits, reference), reference, runtime, text)
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=256, n_threads=2, verbose=False, seed=0)
    try:
        out = llm.create_completion(PROMPT, max_tokens=GENERATE_TOKENS, temperature=0.0, top_k=1)
    finally:
        llm.close()
    if out["usage"]["completion_tokens"] < 1:
        raise BuildError(f"llama.cpp loaded {path.name} but generated no token")
    return structural_quality(runtime, "no reference checkpoint was given (--reference): llama.cpp loaded it and "
                                       f"generated {out['usage']['completion_tokens']} token(s) from the fixed "
                                       f"prompt ({out['choices'][0]['text'][:80]!r}); quality not measured")


def _quality_safetensors(folder: Path, spec: VariantSpec, ckpt: Checkpoint | None, work: Path) -> Quality:
    from .pytorch import run_safetensors

    reference = load_reference(ckpt.folder, work / "reference") if ckpt is not None else None
    logits, text, runtime = run_safetensors(folder, str(spec.precision), reference)
    if reference is not None:
        return runtime_quality(score_logits(logits, reference), reference, runtime, text)
    return structural_quality(runtime, "no reference checkpoint was given (--reference): transformers loaded it "
                                       f"and generated from the fixed prompt ({text[:80]!r}); quality not measured")


def _memory_and_architecture(fmt: Format, tmp: Path, files: list[str]) -> tuple[MemoryNeeds, dict[str, Any]]:
    if fmt is Format.GGUF:
        (model,) = [f for f in files if f.endswith(".gguf")]
        g = _gguf_facts(tmp / model)
        arch = {"class": PHI3_ARCHITECTURE if g["arch"] == "phi3" else f"gguf:{g['arch']}", "layers": g["layers"],
                "hidden_size": g["hidden"], "heads": g["heads"], "kv_heads": g["kv_heads"], "head_dim": g["head_dim"],
                "intermediate_size": g["intermediate"], "vocab_size": g["vocab_size"],
                "max_context": g["max_context"], "parameters": g["parameters"]}
        # llama.cpp's KV cache is f16 by default (as gguf.py's builds record).
        kv = 2 * g["layers"] * g["kv_heads"] * g["head_dim"] * 2
        return (MemoryNeeds(weights_bytes=(tmp / model).stat().st_size, kv_bytes_per_token=kv,
                            max_context=g["max_context"]), arch)
    ckpt = open_source(tmp)
    weights = sum((tmp / f).stat().st_size for f in files if f.endswith(".safetensors"))
    return (MemoryNeeds(weights_bytes=weights, kv_bytes_per_token=ckpt.kv_bytes_per_token(2),
                        max_context=ckpt.max_context), ckpt.architecture())


def import_prebuilt(source: str, *, name: str, version: str, variant: str, out: Path,
                    declared: Declared = Declared(), reference: str | Path | None = None,
                    include: Sequence[str] | None = None, command: tuple[str, ...] = ()) -> Path:
    """Fetch, recognise, check and package ``source`` (``hf://OWNER/NAME@REV``); the finished artifact folder.

    The folder is ``OUT/<name>/<version>/<variant>/`` with a verified
    ``manifest.json``; nothing is left behind when any step fails.
    """
    repo, commit, folder, files = _fetch(source, include)
    fmt = detect_format(files, folder)
    if declared.format is not None and declared.format != str(fmt):
        raise BuildError(f"--format {declared.format} was declared, but the files of {repo}@{commit} are {fmt}")
    if fmt not in _RUN_HERE:
        raise BuildError(f"{repo}@{commit} holds a {fmt} artifact: phi-get import runs only GGUF and safetensors "
                         "artifacts through their runtime yet, and publishes nothing it has not run")
    ggufs = [f for f in files if f.endswith(".gguf")]
    if len(ggufs) > 1:
        raise BuildError(f"{repo}@{commit} holds {len(ggufs)} GGUF files ({', '.join(ggufs)}): pick one with "
                         "--include NAME.gguf")
    found_q = None
    if fmt is Format.GGUF:
        file_type = _gguf_facts(folder / ggufs[0])["file_type"]
        found_q = next((q for q, t in FILE_TYPES.items() if t == file_type), None)
        if found_q is None and declared.quantization is None:
            raise BuildError(f"{ggufs[0]}: llama.cpp file type {file_type!r} is not one phi-get names: "
                             "declare --quantization and --precision")
    spec = _spec(variant, fmt, found_q, declared)
    final = artifact_path(out, name, version, variant)
    tmp = fresh_temp(final, folder=True)
    try:
        for rel in files:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / rel, tmp / rel)
        memory, arch = _memory_and_architecture(fmt, tmp, files)
        # The runtime's own memory beyond weights + KV, as for a build (manifests/runtimes.py).
        overhead, compute = run_overhead(spec.runtime.distribution, str(spec.precision),
                                         weights_bytes=memory.weights_bytes, vocab=arch["vocab_size"],
                                         heads=arch["heads"])
        memory = replace(memory, overhead_bytes=overhead, compute_bytes_per_token=compute)
        ckpt = open_source(reference) if reference is not None else None
        # The build's own work folder for that checkpoint: its reference logits are computed once.
        work = work_folder(Path(out).resolve(), ckpt) if ckpt is not None else tmp
        quality = (_quality_gguf(tmp / ggufs[0], ckpt, work) if fmt is Format.GGUF
                   else _quality_safetensors(tmp, spec, ckpt, work))
        quality_gate(spec, quality)
        tools = {"huggingface-hub": _version("huggingface-hub"), spec.runtime.distribution:
                 _version(spec.runtime.distribution)}
        manifest = Manifest(
            name=name, version=_parse_version(version), variant=spec.id, format=spec.format,
            precision=spec.precision, quantization=spec.quantization, targets=spec.targets, runtime=spec.runtime,
            memory=memory, files=tuple(file_entry(tmp, rel) for rel in sorted(files)),
            provenance=Provenance(source=Source(repo=repo, revision=commit), recipe=_recipe(spec, source),
                                  builder=BUILDER, tools=tools, command=command or ("phi-get", "import", source),
                                  created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
            quality=quality, architecture=arch)
        (tmp / MANIFEST_FILENAME).write_bytes(manifest.to_bytes())
        load_artifact_folder(tmp, verify=True)
        tmp.chmod(0o755)
        install_folder(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _recipe(spec: VariantSpec, source: str) -> Mapping[str, Any]:
    """The provenance's recipe entry: the variant, and that it was imported, not built."""
    return {**spec.to_json(), "imported": source}


def _parse_version(text: str) -> Any:
    try:
        return check_version(text, "--version", "phi-get import")
    except ManifestError as exc:
        raise BuildError(str(exc)) from None
