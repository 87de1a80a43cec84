"""safetensors written and cast tensor by tensor, in row chunks: no model object, no copy of the model.

:func:`write_streaming` lays out the header from names, dtypes and shapes
alone, then takes each tensor's bytes from a generator of chunks, so the
peak is one chunk whatever the model's size.  :func:`cast_safetensors` uses
it to turn a checkpoint's files into one file of another float dtype,
reading each source tensor a block of rows at a time (``get_slice``).

Imports torch and safetensors inside functions only.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final

from phi_get.manifests.modelfiles import SAFETENSORS_DTYPES

from .errors import BuildError

__all__ = ["CHUNK_ELEMENTS", "TORCH_DTYPES", "cast_safetensors", "write_streaming"]

#: Elements per chunk: 16 M (32 MB in bf16, 64 MB of fp32 while casting).
CHUNK_ELEMENTS: Final = 1 << 24
_FLOATS: Final = frozenset({"F64", "F32", "F16", "BF16"})
#: The float dtypes a cast writes: safetensors name -> torch name.
TORCH_DTYPES: Final = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def write_streaming(path: Path, tensors: Sequence[tuple[str, str, tuple[int, ...]]],
                    chunks: Callable[[str], Iterable[bytes]]) -> None:
    """Write ``tensors`` (name, safetensors dtype, shape), in that order, to ``path``: the
    header first, then the bytes ``chunks(name)`` yields for each; a tensor whose chunks do
    not add up to its size is an error, not a shifted file."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    sizes = []
    for name, dtype, shape in tensors:
        size = SAFETENSORS_DTYPES[dtype] * math.prod(shape)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
        sizes.append(size)
    blob = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(blob)) + blob)
        for (name, _dtype, _shape), size in zip(tensors, sizes, strict=True):
            written = 0
            for chunk in chunks(name):
                fh.write(chunk)
                written += len(chunk)
            if written != size:
                raise BuildError(f"tensor {name!r} gave {written} bytes for {path.name}, its shape needs {size}")


def cast_safetensors(sources: Sequence[Path], dest: Path, dtype: str) -> None:
    """Write every tensor of ``sources`` to the one file ``dest``, float tensors cast to
    ``dtype`` (``"BF16"``, ``"F16"`` or ``"F32"``), others as they are."""
    import torch
    from safetensors import safe_open

    target = getattr(torch, TORCH_DTYPES[dtype])
    where: dict[str, Path] = {}
    plan = []
    for path in sources:
        with safe_open(str(path), framework="pt") as fh:
            for key in sorted(fh.keys()):
                if key in where:
                    raise BuildError(f"tensor {key!r} is in more than one file of the checkpoint ({path.name})")
                sl = fh.get_slice(key)
                source_dtype = sl.get_dtype()
                plan.append((key, dtype if source_dtype in _FLOATS else source_dtype, tuple(sl.get_shape())))
                where[key] = path

    def chunks(name: str) -> Iterator[bytes]:
        # The file is opened for this tensor and closed after it: its pages do not stay mapped.
        with safe_open(str(where[name]), framework="pt") as fh:
            sl = fh.get_slice(name)
            shape = tuple(sl.get_shape())
            if not shape or shape[0] == 0:
                yield _bytes(sl[:] if shape else fh.get_tensor(name), target)
                return
            step = max(1, CHUNK_ELEMENTS // max(1, math.prod(shape[1:])))
            for start in range(0, shape[0], step):
                yield _bytes(sl[start:start + step], target)

    write_streaming(dest, plan, chunks)


def _bytes(tensor: object, target: object) -> bytes:
    import torch

    assert isinstance(tensor, torch.Tensor)
    if tensor.is_floating_point():
        tensor = tensor.to(target)  # type: ignore[arg-type]
    return tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
