"""Weights file headers (safetensors, GGUF), checked in Python before a native loader reads them.

A weights file is bytes from outside like any document: a damaged one, or a
hostile one whose sha256 a hostile registry listed, reaches the safetensors
reader of the builders and the native GGUF reader of llama.cpp, whose parser
has had out-of-bounds reads and integer overflows in tensor counts, string
lengths and shapes.  The readers here parse the header only, bound every
count, length, shape and offset by the file's size, and refuse with a
:class:`ModelFileError` naming the file and the header field:

* safetensors: an 8-byte little-endian header length, then that many bytes of
  JSON (read through :func:`~.canonical.load_json_document`): an object of
  tensors ``{"dtype", "shape", "data_offsets": [begin, end]}`` plus an
  optional ``__metadata__`` object of strings; offsets lie inside the data
  that follows, and a known dtype's element size times the shape's element
  count equals the span;
* GGUF (v2 and v3): magic ``GGUF``, version, tensor and key-value counts that
  fit the file, every key, string and array inside the file, at most 4
  dimensions a tensor whose element count fits 63 bits, a tensor type whose
  block size divides the first dimension, and data inside the file.

Only the standard library.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .canonical import load_json_document
from .errors import ManifestError
from .fields import Reader

__all__ = [
    "GGML_BLOCKS",
    "GgufSummary",
    "ModelFileError",
    "SafetensorsHeader",
    "TensorInfo",
    "check_gguf_file",
    "read_safetensors_header",
]

#: Largest safetensors header accepted (the format's own readers use 100 MB).
MAX_SAFETENSORS_HEADER: Final = 100 * 1024 * 1024
#: Most elements one tensor may have: int64's range, as llama.cpp computes sizes in it.
MAX_ELEMENTS: Final = 2**63 - 1
#: safetensors dtype -> bytes per element (sub-byte and future dtypes: span not checked).
SAFETENSORS_DTYPES: Final = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8,
}
#: GGML tensor type id -> (elements per block, bytes per block), as ggml defines them
#: (ids 4, 5, 31-33 and 36-38 were removed from ggml and are refused).
GGML_BLOCKS: Final = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 40),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18),
}
_REMOVED_GGML_TYPES: Final = frozenset({4, 5, 31, 32, 33, 36, 37, 38})
_GGUF_MAGIC: Final = b"GGUF"
_GGUF_VERSIONS: Final = (2, 3)
_GGUF_MAX_DIMS: Final = 4
_GGUF_MAX_NAME: Final = 64  # GGML_MAX_NAME: llama.cpp refuses longer tensor names
_GGUF_STRING: Final = 8
_GGUF_ARRAY: Final = 9
#: GGUF value type -> bytes, for the fixed-size ones.
_GGUF_SCALARS: Final = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


class ModelFileError(ManifestError):
    """A weights file's header is damaged or hostile; ``document`` names the file."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def elements(self) -> int:
        count = 1
        for d in self.shape:
            count *= d
        return count


@dataclass(frozen=True, kw_only=True, slots=True)
class SafetensorsHeader:
    #: Bytes of the JSON header (the data starts at 8 + this).
    length: int
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]

    @property
    def data_end(self) -> int:
        """Where the last tensor's bytes end, counted from the start of the file."""
        return 8 + self.length + max((t.end for t in self.tensors.values()), default=0)


def _error(path: Path, field: str, reason: str, value: object = None, *, kind: str) -> ModelFileError:
    if value is None:
        return ModelFileError(reason, field=field, document=f"{kind} file {path}")
    return ModelFileError(reason, field=field, value=value, document=f"{kind} file {path}")


def read_safetensors_header(path: str | os.PathLike[str]) -> SafetensorsHeader:
    """Parse and bound the header of a safetensors file (no tensor data is read)."""
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise _error(p, "header length", f"the file is {size} bytes, shorter than its 8-byte header length",
                         kind="safetensors")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_SAFETENSORS_HEADER or n > size - 8:
            raise _error(p, "header length", f"a header of {n} bytes does not fit a {size}-byte file "
                         f"(the limit is {MAX_SAFETENSORS_HEADER})", kind="safetensors")
        raw_header = fh.read(n)
    document = f"safetensors file {p} header"
    try:
        r = Reader(load_json_document(raw_header, limit=MAX_SAFETENSORS_HEADER, document=document), "", document)
        tensors: dict[str, TensorInfo] = {}
        metadata: dict[str, str] = {}
        for name in r.data:
            if name == "__metadata__":
                metadata = r.text_map(name)
                continue
            tensors[name] = _safetensors_tensor(r.obj(name))
    except ManifestError as exc:  # the JSON and its fields: the same error, as a model file's
        raise ModelFileError(exc.reason, field=exc.field, value=exc._value, document=document) from None
    header = SafetensorsHeader(length=n, tensors=tensors, metadata=metadata)
    if header.data_end > size:
        raise _error(p, "data_offsets", f"tensors need {header.data_end} bytes, the file has {size}",
                     kind="safetensors")
    return header


def _safetensors_tensor(t: Reader) -> TensorInfo:
    dtype = t.text("dtype", max_len=16)
    shape = t.array("shape", max_items=16)
    count = 1
    for i, d in enumerate(shape):
        if type(d) is not int or d < 0:
            raise ManifestError("expected a dimension (an integer, 0 or more)", field=f"{t.where('shape')}[{i}]",
                                value=d, document=t.document)
        count *= d
        if count > MAX_ELEMENTS:  # checked as it grows: a product of huge dimensions never gets computed whole
            raise t.error("shape", "has more than 2**63 elements", shape)
    offsets = t.array("data_offsets", max_items=2)
    if len(offsets) != 2 or any(type(o) is not int or not 0 <= o <= MAX_ELEMENTS for o in offsets):
        raise t.error("data_offsets", "expected [begin, end]: two integers from 0 to 2**63", offsets)
    begin, end = offsets
    if end < begin:
        raise t.error("data_offsets", "end is before begin", offsets)
    width = SAFETENSORS_DTYPES.get(dtype)
    if width is not None and count * width != end - begin:
        raise t.error("data_offsets", f"span {end - begin} bytes, but {dtype} x {list(shape)} is "
                      f"{count * width} bytes", offsets)
    return TensorInfo(dtype=dtype, shape=tuple(shape), begin=begin, end=end)


@dataclass(frozen=True, kw_only=True, slots=True)
class GgufSummary:
    version: int
    tensor_count: int
    kv_count: int
    alignment: int
    #: Offset of the tensor data section in the file.
    data_offset: int


class _Cursor:
    """Bounded reads from a mapped file: every read past the end is a ModelFileError."""

    __slots__ = ("buf", "path", "pos", "size")

    def __init__(self, buf: Any, path: Path) -> None:
        self.buf, self.path, self.pos, self.size = buf, path, 0, len(buf)

    def fail(self, field: str, reason: str, value: object = None) -> ModelFileError:
        return _error(self.path, field, reason, value, kind="GGUF")

    def take(self, n: int, field: str) -> int:
        if n > self.size - self.pos:
            raise self.fail(field, f"needs {n} bytes at offset {self.pos}, past the end of the {self.size}-byte file")
        start = self.pos
        self.pos += n
        return start

    def u32(self, field: str) -> int:
        return int(struct.unpack_from("<I", self.buf, self.take(4, field))[0])

    def u64(self, field: str) -> int:
        return int(struct.unpack_from("<Q", self.buf, self.take(8, field))[0])

    def string(self, field: str, max_len: int | None = None) -> bytes:
        n = self.u64(f"{field} length")
        if max_len is not None and n > max_len:
            raise self.fail(field, f"is {n} bytes long, the limit is {max_len}")
        start = self.take(n, field)
        return bytes(self.buf[start:self.pos])


def check_gguf_file(path: str | os.PathLike[str]) -> GgufSummary:
    """Walk a GGUF file's header and tensor table, bounding everything by the file size."""
    p = Path(path)
    with open(p, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 24:
            raise _error(p, "header", f"the file is {size} bytes, shorter than a GGUF header (24)", kind="GGUF")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _walk_gguf(_Cursor(buf, p))


def _walk_gguf(c: _Cursor) -> GgufSummary:
    if bytes(c.buf[c.take(4, "magic"):c.pos]) != _GGUF_MAGIC:
        raise c.fail("magic", "not a GGUF file (no 'GGUF' magic)", bytes(c.buf[0:4]))
    version = c.u32("version")
    if version not in _GGUF_VERSIONS:
        raise c.fail("version", f"expected GGUF version {' or '.join(map(str, _GGUF_VERSIONS))}", version)
    tensors, kvs = c.u64("tensor_count"), c.u64("kv_count")
    room = c.size - c.pos
    # Each key-value pair takes at least 13 bytes, each tensor entry at least 32: counts beyond that are lies.
    if kvs > room // 13:
        raise c.fail("kv_count", f"{kvs} key-value pairs cannot fit a {c.size}-byte file", kvs)
    if tensors > room // 32:
        raise c.fail("tensor_count", f"{tensors} tensors cannot fit a {c.size}-byte file", tensors)
    alignment = 32
    for i in range(kvs):
        key = c.string(f"kv[{i}].key", max_len=65535).decode("utf-8", "replace")
        vtype = c.u32(f"kv[{i}].type")
        if key == "general.alignment":
            if vtype != 4:
                raise c.fail(f"kv[{i}]", "general.alignment must be a uint32", vtype)
            alignment = c.u32(key)
            if alignment == 0 or alignment & (alignment - 1) or alignment > 1 << 20:
                raise c.fail(key, "must be a power of two up to 1 MiB", alignment)
            continue
        _skip_value(c, vtype, f"kv[{i}] {key!r}")
    pending: list[tuple[int, int, str]] = []  # (offset, bytes, field)
    for i in range(tensors):
        field = f"tensor[{i}]"
        name = c.string(f"{field}.name", max_len=_GGUF_MAX_NAME - 1)
        dims = c.u32(f"{field}.n_dims")
        if not 1 <= dims <= _GGUF_MAX_DIMS:
            raise c.fail(f"{field}.n_dims", f"expected 1 to {_GGUF_MAX_DIMS} dimensions", dims)
        shape = [c.u64(f"{field}.shape[{d}]") for d in range(dims)]
        count = 1
        for d in shape:
            count *= d
        if count > MAX_ELEMENTS:
            raise c.fail(f"{field}.shape", f"{name.decode('utf-8', 'replace')!r} has more than 2**63 elements", shape)
        ggml_type = c.u32(f"{field}.type")
        offset = c.u64(f"{field}.offset")
        if ggml_type in _REMOVED_GGML_TYPES:
            raise c.fail(f"{field}.type", "a ggml tensor type that no longer exists", ggml_type)
        if offset % alignment:
            raise c.fail(f"{field}.offset", f"not a multiple of the alignment {alignment}", offset)
        block = GGML_BLOCKS.get(ggml_type)
        if block is None:  # a type newer than this table: its data must still start inside the file
            pending.append((offset, 0, field))
            continue
        per_block, block_bytes = block
        if shape[0] % per_block:
            raise c.fail(f"{field}.shape[0]", f"not a multiple of the type's block of {per_block}", shape[0])
        pending.append((offset, count // per_block * block_bytes, field))
    data_offset = -(-c.pos // alignment) * alignment
    data_size = c.size - data_offset
    for offset, nbytes, field in pending:
        if offset > data_size or nbytes > data_size - offset:
            raise c.fail(f"{field}.offset", f"tensor data [{offset}, {offset + nbytes}) lies past the end of the "
                         f"{data_size}-byte data section", offset)
    return GgufSummary(version=version, tensor_count=tensors, kv_count=kvs, alignment=alignment,
                       data_offset=data_offset)


def _skip_value(c: _Cursor, vtype: int, field: str) -> None:
    if vtype in _GGUF_SCALARS:
        c.take(_GGUF_SCALARS[vtype], field)
    elif vtype == _GGUF_STRING:
        c.string(field)
    elif vtype == _GGUF_ARRAY:
        etype = c.u32(f"{field} array type")
        count = c.u64(f"{field} array length")
        if etype in _GGUF_SCALARS:
            c.take(_checked(c, count, _GGUF_SCALARS[etype], field), field)
        elif etype == _GGUF_STRING:
            _checked(c, count, 8, field)  # each string has at least its 8-byte length
            for j in range(count):
                c.string(f"{field}[{j}]")
        else:
            raise c.fail(f"{field} array type", "arrays hold scalars or strings (nested arrays are not GGUF)", etype)
    else:
        raise c.fail(f"{field} type", "unknown GGUF value type", vtype)


def _checked(c: _Cursor, count: int, width: int, field: str) -> int:
    if count > (c.size - c.pos) // width:
        raise c.fail(f"{field} array length", f"{count} items cannot fit the rest of the file", count)
    return count * width
