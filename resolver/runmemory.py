"""The memory a run takes, measured: what a manifest's memory needs must bound (issue 14, section 3).

:func:`measure_run` runs an artifact folder's runtime in a fresh subprocess
(``python -m phi_get.resolver.runmemory FOLDER CONTEXT NEW_TOKENS``), with
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

The prompt is the word "the" repeated (one token per word in the sentencepiece
and byte-level BPE tokenizers of Phi); the count of prompt tokens the runtime
saw is reported, and a prompt that with the new tokens overflows the window
is an error, not a silent shorter run.

Linux only (``/proc``).  Imports the standard library and
:mod:`phi_get.manifests`; the runtime only in the child, through
:mod:`phi_get.resolver.run`.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from phi_get.manifests.artifact import load_artifact_folder
from phi_get.manifests.errors import PhiGetError
from phi_get.manifests.manifest import Format

__all__ = ["OVER", "UNDER", "RunMemory", "error_of", "measure_run", "within_bound"]

#: The bound a manifest's claim is held to (issue 14, section 3): at most 15 % above
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


def _child(folder: Path, context: int, new_tokens: int) -> dict[str, object]:
    from .run import generate

    manifest = load_artifact_folder(folder)
    for name in _IMPORTS[manifest.format]:
        importlib.import_module(name)
    gc.collect()
    baseline = _status_bytes("VmRSS")
    # Children waited for so far (torch's import starts one: ~240 MB) are no part of the run.
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS (proc(5))
        reset = True
    except OSError:
        reset = False
    words = max(1, context - new_tokens - 1)  # one more for the BOS some tokenizers add
    gen = generate(folder, manifest, " ".join(["the"] * words), max_tokens=new_tokens, context=context)
    if gen.prompt_tokens + new_tokens > context:
        raise RuntimeError(f"the prompt took {gen.prompt_tokens} tokens: with {new_tokens} new ones it overflows "
                           f"the window of {context}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    children = int(after) * 1024 if after > children_before else 0
    return asdict(RunMemory(variant=manifest.variant, runtime=gen.runtime, context=context,
                            prompt_tokens=gen.prompt_tokens, new_tokens=gen.new_tokens, baseline_bytes=baseline,
                            peak_bytes=_status_bytes("VmHWM"), hwm_reset=reset, children_peak_bytes=children))


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
    with tempfile.TemporaryDirectory(prefix="phi-get-runmemory-") as tmp:
        if python is not None and Path(python) != Path(sys.executable):
            # Another environment: phi_get importable from a link to this source tree.
            (Path(tmp) / "phi_get").symlink_to(Path(__file__).resolve().parent.parent, target_is_directory=True)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [tmp, env.get("PYTHONPATH")]))
        proc = subprocess.run([exe, "-m", "phi_get.resolver.runmemory", str(folder), str(context), str(new_tokens)],
                              capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise PhiGetError(f"measuring {folder} at context {context} failed (exit {proc.returncode}): "
                          f"{proc.stderr.strip()[-2000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return RunMemory(**data)


def main(argv: list[str]) -> int:
    folder, context, new_tokens = argv
    print(json.dumps(_child(Path(folder), int(context), int(new_tokens))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
