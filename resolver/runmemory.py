"""The memory a run takes, measured: what a manifest's memory needs must bound.

:func:`measure_run` runs an artifact folder's runtime in a fresh subprocess
(``python -m phi_get.resolver.runmemory FOLDER CONTEXT NEW_TOKENS PROMPT_FILE``), with
the same loader ``phi-get run`` uses (:func:`phi_get.resolver.run.generate`),
opened with a window of ``context`` tokens, on a prompt that fills it but for
the ``NEW_TOKENS`` it then generates greedily.

What is measured, and so what a manifest's ``memory.total_bytes(context)``
claims: **the peak resident set of the process above the interpreter with the
runtime imported**.  In the child, the runtime's modules are imported first
and ``VmRSS`` is read (the baseline); the kernel's high-water mark is reset
to it (``/proc/self/clear_refs`` = 5, Linux 4.0+); the artifact is loaded and
generates; ``VmHWM`` (``/proc/self/status``) is then the peak, file-backed
pages (llama.cpp's mmap of the GGUF) included.  The figure is the peak minus
the baseline.  The interpreter and the runtime's code (about 30 MB for
llama-cpp-python, 400-600 MB for torch + transformers) are not in it: they are
what the resolver's share of RAM (80 %, :mod:`phi_get.manifests.targets`)
leaves over.  Child processes are reported beside the figure, not added to
it: the only ones seen are start-up processes (torch's import starts one of
~240 MB, before the baseline; openvino-genai sometimes one of ~40 MB), and
a process tree's peak is not the sum of its members' peaks (whether one
overlaps the run's peak is not checked).

The prompt (:func:`spread_prompt`) is words of the artifact's own
vocabulary taken at even steps through it, as many as fill the window: a
prompt of distinct tokens whose rows lie all over the input embedding.  This
matters where a runtime memory-maps the weights and reads the input
embedding by row (onnxruntime-genai's int4 Gather, transformers'
safetensors): the kernel maps a whole page-cache folio per fault (2 MB on
ext4 with large folios, Linux 6.16+), so 512 tokens spread over a 32,064-row
table make nearly all of it resident, as a real prompt does.  One token
repeated (the word "the", the prompt here before) touches one row and left
an untied table (Phi-3.5-mini's: 197-394 MB) out of the figure.  The count
of prompt tokens the runtime saw is reported, and a prompt that with the
new tokens overflows the window is an error, not a silent shorter run.

Linux only (``/proc``).  Imports the standard library and
:mod:`phi_get.manifests`; the runtime only in the child, through
:mod:`phi_get.resolver.run`; the prompt is built in the parent, inside
:func:`spread_prompt`, with ``tokenizers`` (an artifact's tokenizer.json) or
llama-cpp-python's vocabulary-only load (a GGUF).
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from phi_get.manifests.artifact import load_artifact_folder
from phi_get.manifests.errors import PhiGetError
from phi_get.manifests.manifest import Format

__all__ = ["OVER", "UNDER", "RunMemory", "error_of", "measure_run", "peak_bytes", "spread_prompt", "start_peak", "within_bound"]

#: The bound a manifest's claim is held to: at most 15 % above
#: the measured peak, never more than 5 % below it.
OVER: Final = 0.15
UNDER: Final = 0.05

#: What the child imports before it reads the baseline: the loader's own imports
#: (resolver/run.py), so that loading them is not counted as the artifact's memory.
_IMPORTS: Final = {
    Format.GGUF: ("llama_cpp",),
    Format.ONNX: ("onnxruntime_genai",),
    Format.SAFETENSORS: ("torch", "transformers", "transformers.models.phi3.modeling_phi3"),
    Format.OPENVINO: ("openvino_genai", "openvino"),
    Format.MLX: ("mlx.core", "mlx_lm", "mlx_lm.sample_utils"),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class RunMemory:
    """One measured run: bytes above the interpreter with the runtime imported, and what ran."""

    variant: str
    runtime: str
    context: int
    prompt_tokens: int
    new_tokens: int
    #: VmRSS after the runtime's import, before the artifact is loaded.
    baseline_bytes: int
    #: VmHWM after the run (the high-water mark reset to the baseline first, where the kernel allows).
    peak_bytes: int
    #: Whether /proc/self/clear_refs reset the high-water mark (else the import's own peak may show).
    hwm_reset: bool
    #: The largest peak RSS of a child process the run started (0: none, or none above the peak of
    #: those started before the baseline, which RUSAGE_CHILDREN cannot tell apart).
    children_peak_bytes: int

    @property
    def measured_bytes(self) -> int:
        """The figure a manifest's ``total_bytes(context)`` is held to."""
        return self.peak_bytes - self.baseline_bytes


def error_of(claimed: int, measured: int) -> float:
    """(claimed - measured) / measured: positive when the manifest claims more than the run took."""
    return (claimed - measured) / measured


def within_bound(claimed: int, measured: int) -> bool:
    """Whether a claim is within the bound: -UNDER <= error <= OVER."""
    return -UNDER <= error_of(claimed, measured) <= OVER


def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024  # "VmHWM:  123456 kB"
    raise RuntimeError(f"/proc/self/status has no {key}")


def start_peak() -> tuple[int, bool]:
    """This process's resident bytes now, and whether its high-water mark (VmHWM) was reset to them
    (``/proc/self/clear_refs`` = 5, proc(5), Linux 4.0+): what happens next is measured from here.
    VmHWM belongs to this process image; getrusage's ru_maxrss is inherited across exec from a
    larger parent, so it is no measure here."""
    baseline = _status_bytes("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return baseline, False
    return baseline, True


def peak_bytes() -> int:
    """This process's peak resident bytes since :func:`start_peak` (VmHWM)."""
    return _status_bytes("VmHWM")


def _encoder(folder: Path) -> tuple[Callable[[str], list[int]], list[str], Callable[[], None]]:
    """(encode without special tokens, the text of each vocabulary id, close) of ``folder``'s tokenizer."""
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # The entries as stored: a word start is marked U+2581 (sentencepiece) or U+0120 (byte-level BPE).
        pieces = [" " + t[1:] if t and t[0] in "\u2581\u0120" else (t or "")
                  for t in map(tok.id_to_token, range(tok.get_vocab_size()))]
        return (lambda text: tok.encode(text, add_special_tokens=False).ids), pieces, lambda: None
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise PhiGetError(f"{folder} has no tokenizer.json and no .gguf file: no vocabulary to build a prompt from")
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(ggufs[0]), vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    # A sentencepiece vocabulary: llama.cpp puts the word-start space before the text itself.
    spm = llama_cpp.llama_vocab_type(vocab) == llama_cpp.LLAMA_VOCAB_TYPE_SPM
    texts = [llama_cpp.llama_vocab_get_text(vocab, i).decode(errors="replace") for i in range(llm.n_vocab())]
    return ((lambda text: llm.tokenize((text[1:] if spm and text[:1] == " " else text).encode(),
                                       add_bos=False, special=False)),
            [" " + t[1:] if t and t[0] in "\u2581\u0120" else t for t in texts], llm.close)


def spread_prompt(folder: Path, tokens: int) -> str:
    """Words of ``folder``'s vocabulary at even steps through it, as many as encode to at most ``tokens``.

    The candidates are the vocabulary entries that are a space and two or
    more lower-case ASCII letters (word starts in both the sentencepiece and
    the byte-level BPE vocabularies of Phi) and encode, after a space, to
    that one token, in id order; the prompt takes
    them at an even stride so that its tokens are distinct and spread over
    the whole input embedding (cycling when the vocabulary has fewer words
    than the window).  The count is checked by encoding: the longest such
    prompt within ``tokens``.
    """
    encode, pieces, close = _encoder(folder)
    try:
        return _spread(encode, pieces, tokens, folder)
    finally:
        close()


def _spread(encode: Callable[[str], list[int]], pieces: list[str], tokens: int, folder: Path) -> str:
    # Only words that are one token after a space: tokenizers of the same vocabulary then agree on the
    # count (onnxruntime-genai's and openvino-tokenizers' split a multi-token word otherwise than HF's).
    words = [p[1:] for p in pieces if len(p) > 2 and p[0] == " " and p[1:].isascii() and p[1:].isalpha()
             and p[1:].islower() and len(encode(p)) == 1]
    if not words:
        raise PhiGetError(f"{folder}'s vocabulary has no word pieces (' ' + lower-case letters) to build a prompt from")
    pool = [words[(i * len(words)) // tokens % len(words)] for i in range(tokens)] if tokens <= len(words) \
        else [words[i % len(words)] for i in range(tokens)]
    lo, hi = 1, len(pool)  # the longest prefix of the pool that encodes to at most `tokens`
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(encode(" ".join(pool[:mid]))) <= tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(pool[:lo])


def _child(folder: Path, context: int, new_tokens: int, prompt: str) -> dict[str, object]:
    from .run import generate

    manifest = load_artifact_folder(folder)
    for name in _IMPORTS[manifest.format]:
        importlib.import_module(name)
    gc.collect()
    # Children waited for so far (torch's import starts one: ~240 MB) are no part of the run.
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    baseline, reset = start_peak()
    gen = generate(folder, manifest, prompt, max_tokens=new_tokens, context=context)
    if gen.prompt_tokens + new_tokens > context:
        raise RuntimeError(f"the prompt took {gen.prompt_tokens} tokens: with {new_tokens} new ones it overflows "
                           f"the window of {context}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    children = int(after) * 1024 if after > children_before else 0
    return asdict(RunMemory(variant=manifest.variant, runtime=gen.runtime, context=context,
                            prompt_tokens=gen.prompt_tokens, new_tokens=gen.new_tokens, baseline_bytes=baseline,
                            peak_bytes=peak_bytes(), hwm_reset=reset, children_peak_bytes=children))


def measure_run(folder: Path, context: int, *, new_tokens: int = 4, python: Path | None = None,
                timeout: float = 600) -> RunMemory:
    """Run ``folder``'s artifact at ``context`` tokens in a fresh process; what it took.

    ``python`` is the interpreter whose environment has the runtime (the
    backend environments of ``builders/envs.py`` for OpenVINO and MLX);
    phi_get is put on its path.  A failed run raises :class:`PhiGetError`
    with the child's stderr tail.
    """
    exe = str(python or sys.executable)
    env = dict(os.environ)
    # One more token for the BOS some tokenizers add.
    prompt = spread_prompt(folder, max(1, context - new_tokens - 1))
    with tempfile.TemporaryDirectory(prefix="phi-get-runmemory-") as tmp:
        (Path(tmp) / "prompt.txt").write_text(prompt, encoding="utf-8")
        if python is not None and Path(python) != Path(sys.executable):
            # Another environment: phi_get importable from a link to this source tree.
            (Path(tmp) / "phi_get").symlink_to(Path(__file__).resolve().parent.parent, target_is_directory=True)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [tmp, env.get("PYTHONPATH")]))
        proc = subprocess.run([exe, "-m", "phi_get.resolver.runmemory", str(folder), str(context), str(new_tokens),
                               str(Path(tmp) / "prompt.txt")],
                              capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise PhiGetError(f"measuring {folder} at context {context} failed (exit {proc.returncode}): "
                          f"{proc.stderr.strip()[-2000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return RunMemory(**data)


def main(argv: list[str]) -> int:
    folder, context, new_tokens, prompt_file = argv
    prompt = Path(prompt_file).read_text(encoding="utf-8")
    print(json.dumps(_child(Path(folder), int(context), int(new_tokens), prompt)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
