"""Pickles are refused, by name in every manifest and by content in an artifact folder (SECURITY.md: pickles).

Loading a Python pickle (PyTorch ``.pt``/``.pth``/``.ckpt``, a legacy
``pytorch_model.bin``, a zip-format torch checkpoint) runs code it carries.
No phi-get format needs one, so a manifest that lists a pickle suffix is
invalid wherever it is read (the registry at publish, the client at install),
and ``phi-get publish`` refuses a file whose bytes are a pickle whatever it
is called (``.bin`` is also OpenVINO IR's raw weight file, so the name alone
cannot decide).
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import pytest
from phi_get.manifests.artifact import ArtifactFolderError, load_artifact_folder, pickle_signature
from phi_get.manifests.canonical import canonical_bytes
from phi_get.manifests.errors import ManifestError
from phi_get.manifests.manifest import parse_manifest
from phi_get.registry.testing import make_manifest, write_artifact


def _doc_with(path: str) -> bytes:
    doc = make_manifest([("model.gguf", 4, "0" * 64)]).to_json()
    doc["files"][0]["path"] = path  # type: ignore[index]
    return canonical_bytes(doc)


@pytest.mark.parametrize("path", ["model.pt", "sub/weights.PTH", "last.ckpt", "x.pkl", "y.pickle", "z.joblib"])
def test_a_manifest_listing_a_pickle_suffix_is_invalid(path: str) -> None:
    """Class 8: pickle-bearing files were neither refused nor flagged."""
    with pytest.raises(ManifestError) as err:
        parse_manifest(_doc_with(path), document="m.json")
    suffix = "." + path.rsplit(".", 1)[1].lower()
    assert str(err.value) == (
        f"invalid m.json at files[0].path: {suffix} files are Python pickles, which run code when loaded; "
        f"phi-get artifacts carry tensors as data only (safetensors, GGUF, ONNX, OpenVINO IR) (got {path!r})")


def _torch_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # the layout torch.save writes: archive/data.pkl + tensors
        zf.writestr("archive/data.pkl", pickle.dumps({"w": 1}, protocol=2))
        zf.writestr("archive/data/0", b"\0" * 64)
    return buf.getvalue()


@pytest.mark.parametrize(("content", "kind"), [
    (pickle.dumps({"weight": [1.0]}, protocol=2), "a Python pickle (protocol 2)"),
    (pickle.dumps(["x"], protocol=4), "a Python pickle (protocol 4)"),
    (_torch_zip(), "a zip archive holding the pickle 'archive/data.pkl' (a PyTorch checkpoint)"),
], ids=["protocol-2", "protocol-4", "torch-zip"])
def test_publishing_a_pickle_under_any_name_is_refused(tmp_path: Path, content: bytes, kind: str) -> None:
    """Class 8: a pickle named like OpenVINO's weight file (.bin) is refused by its bytes."""
    write_artifact(tmp_path / "a", {"openvino_model.bin": content, "openvino_model.xml": b"<net/>"})
    with pytest.raises(ArtifactFolderError) as err:
        load_artifact_folder(tmp_path / "a")
    assert f"at files[0].path: file is {kind}, which runs code when loaded" in str(err.value)
    assert "'openvino_model.bin'" in str(err.value)


def test_raw_weights_and_other_formats_are_not_mistaken_for_pickles(tmp_path: Path) -> None:
    """The content check must not refuse real formats: raw tensors, GGUF, safetensors, ONNX, a zip without pickles."""
    safetensors_640 = (640).to_bytes(8, "little") + b" " * 640  # header length 0x280: starts 80 02 00
    plain_zip = io.BytesIO()
    with zipfile.ZipFile(plain_zip, "w") as zf:
        zf.writestr("readme.txt", "no pickle here")
    for head in (b"GGUF\x03\0\0\0", safetensors_640[:16], b"\x08\x07\x12\x07pytorch", b"\x80\x02\x00\x00"):
        assert pickle_signature(head) is None or head.startswith(b"PK")
    write_artifact(tmp_path / "a", {"model.safetensors": safetensors_640, "weights.bin": bytes(range(256)) * 4,
                                    "extra.zip": plain_zip.getvalue()})
    load_artifact_folder(tmp_path / "a")
