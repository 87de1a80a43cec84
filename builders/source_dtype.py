"""The precision a source checkpoint's weights really carry (no quality above the source).

Every manifest records it as ``provenance.source.precision`` (the index as
``source_precision``), and the resolver ranks a variant stored at as many
bits as its source or more as holding exactly the source's quality
(``resolver/ranking.py``): an fp32 GGUF of a bf16 checkpoint is the bf16
model at twice the size.

Two facts are read, and the lower one wins:

- **the safetensors headers' dtypes**, weighted by element count (the dtype
  of most parameters: a bf16 checkpoint with a few fp32 norm vectors is
  bf16).  The bytes cannot hold more than their dtype, so this is an upper
  bound that no file can overstate;
- **config.json's ``dtype``** (transformers 5) or ``torch_dtype`` (earlier):
  transformers writes the dtype the model was in when saved, which is what
  it was trained or published in.  A tool that upcast bf16 weights to fp32
  files without rewriting the config leaves bf16 there, and those fp32 files
  hold bf16 values: the config is an upper bound too, where it names one.

So the lower of the two (by bits; on a tie, the headers', because they are
the bytes the builders read).  A config that says nothing usable (absent,
``"auto"``, a dtype phi-get has no precision for) leaves the headers'.
When most parameters are in a dtype phi-get's precisions do not name (fp8,
or the packed integers of a GPTQ/AWQ checkpoint), the precision is unknown
(None): no cap is better than a wrong one, and the manifest omits the key.

May import ``phi_get.manifests`` only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from phi_get.manifests.manifest import Precision
from phi_get.manifests.modelfiles import SafetensorsHeader

__all__ = ["CONFIG_DTYPES", "SAFETENSORS_PRECISIONS", "source_precision"]

#: safetensors dtype -> the precision it stores (the float dtypes a checkpoint is published in).
SAFETENSORS_PRECISIONS: Final[Mapping[str, Precision]] = {
    "F32": Precision.FP32, "F16": Precision.FP16, "BF16": Precision.BF16,
}
#: config.json dtype spellings (torch's names, with or without ``torch.``) -> precision.
CONFIG_DTYPES: Final[Mapping[str, Precision]] = {
    "float32": Precision.FP32, "float": Precision.FP32, "float16": Precision.FP16, "half": Precision.FP16,
    "bfloat16": Precision.BF16,
}


def _stored(headers: Iterable[SafetensorsHeader]) -> Precision | None:
    elements: dict[str, int] = {}
    for header in headers:
        for tensor in header.tensors.values():
            elements[tensor.dtype] = elements.get(tensor.dtype, 0) + tensor.elements
    if not elements:
        return None
    dominant = max(sorted(elements), key=elements.__getitem__)  # sorted: a tie is decided the same way every time
    return SAFETENSORS_PRECISIONS.get(dominant)


def _declared(config: Mapping[str, Any]) -> Precision | None:
    value = config.get("dtype", config.get("torch_dtype"))
    if not isinstance(value, str):
        return None
    return CONFIG_DTYPES.get(value.removeprefix("torch."))


def source_precision(config: Mapping[str, Any], headers: Iterable[SafetensorsHeader]) -> Precision | None:
    """The precision the checkpoint's weights carry: the lower of its headers' and its config's, or None."""
    stored = _stored(headers)
    if stored is None:
        return None
    declared = _declared(config)
    if declared is not None and declared.bits < stored.bits:
        return declared
    return stored
