"""The checkpoint loaders say what a file they cannot read is (issue 11 item 6).

Before, every unreadable file was "contains pickled Python objects (code)". Only a pickle that
imports code keeps that message; it is never executed.
"""
from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ugtsr import build_model, load_checkpoint, save_checkpoint
from ugtsr.errors import CheckpointError
from ugtsr.femasr import read_femasr_file

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_ONNX = ROOT / "runtime" / "models" / "ugtsr_tiny_x4.onnx"


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_CHECKPOINT",))


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ck") / "good.pt"
    save_checkpoint(path, build_model("tiny_x4"))
    return path.read_bytes()


def _onnx_bytes() -> bytes:
    if SHIPPED_ONNX.is_file():
        return SHIPPED_ONNX.read_bytes()
    onnx = pytest.importorskip("onnx")
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    vi = [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1]) for n in ("x", "y")]
    return onnx.helper.make_model(onnx.helper.make_graph([node], "g", vi[:1], vi[1:])).SerializeToString()


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _torch_bytes(obj, **kw) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kw)
    return buf.getvalue()


def _cases(good: bytes) -> dict[str, tuple[bytes, str]]:
    cv2 = pytest.importorskip("cv2")
    png = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    jpg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    npz = io.BytesIO()
    np.savez(npz, a=np.ones(2))
    header = b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
    corrupt = bytearray(good)
    start = good.find(b"data.pkl") + 40  # inside the pickle of the archive
    corrupt[start : start + 64] = b"\x00" * 64
    return {
        "model.onnx.pt": (_onnx_bytes(), "is an ONNX model, not a checkpoint: use it with runtime.infer"),
        "model.engine": (b"ftrt" + bytes(60), "is a TensorRT engine"),
        "model.plan": (b"\x01\x02\x03\x04" * 16, "is a TensorRT engine"),
        "trunc.pt": (good[: len(good) // 2], "truncated or corrupt zip archive"),
        "corrupt.pt": (bytes(corrupt), "corrupt PyTorch archive"),
        "photo.pt": (png, "is a PNG image"),
        "photo.pth": (jpg, "is a JPEG image"),
        "empty.pt": (b"", "empty file"),
        "legacy.pkl": (pickle.dumps({"w": [1.0, 2.0]}, protocol=4), "legacy pickle not written by torch.save"),
        "legacy_torch_cut.pt": (_torch_bytes({"w": torch.ones(3)}, _use_new_zipfile_serialization=False)[:60],
                                "legacy (non-zip) torch.save file"),
        "text.pt": (b"model: ugtsr\nscale: 4\n", "is a text file"),
        "arrays.pt": (npz.getvalue(), "NumPy .npz archive"),
        "other.zip": (_zip({"readme.txt": b"hi"}), "zip archive but not a PyTorch checkpoint"),
        "garbage.pt": (b"\x00garbage", "is corrupt or not a PyTorch file"),
        "w.safetensors": (struct.pack("<Q", len(header)) + header + bytes(4), "is a safetensors file"),
        "evil_zip.pt": (_torch_bytes({"format": "ugtsr-checkpoint", "x": _Evil()}), "pickled Python objects (code"),
        "evil_raw.pkl": (pickle.dumps(_Evil(), protocol=4), "pickled Python objects (code"),
        "evil_raw2.pkl": (pickle.dumps(_Evil(), protocol=2), "pickled Python objects (code"),
    }


@pytest.mark.parametrize("loader", [load_checkpoint, read_femasr_file], ids=["load_checkpoint", "load_femasr"])
def test_each_kind_of_unreadable_file_is_named(loader, good_bytes, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, (data, needle) in _cases(good_bytes).items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(CheckpointError) as err:
            loader(path)
        msg = str(err.value)
        assert msg.startswith(str(path)) and needle in msg and "\n" not in msg, (name, msg)
        if "evil" not in name:
            assert "pickled Python objects" not in msg, (name, msg)
        assert path.read_bytes() == data  # never modified
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()


def test_malicious_pickle_names_the_global(tmp_path):
    path = tmp_path / "evil.pt"
    path.write_bytes(_torch_bytes({"x": _Evil()}))
    with pytest.raises(CheckpointError, match=r"code: (posix|nt|os)\.system\)"):
        load_checkpoint(path)


def test_femasr_weights_and_ugtsr_checkpoints_point_to_the_right_loader(good_bytes, tmp_path):
    femasr = tmp_path / "FeMaSR_SRX4.pth"
    torch.save({"params": {"module.quantize_group.0.embedding.weight": torch.zeros(2, 2)}}, femasr)
    with pytest.raises(CheckpointError, match="FeMaSR weights: load them with ugtsr.femasr.load_femasr"):
        load_checkpoint(femasr)
    ours = tmp_path / "ours.pt"
    ours.write_bytes(good_bytes)
    with pytest.raises(CheckpointError, match="is a UGTSR checkpoint, not FeMaSR weights: load it with ugtsr.load_model"):
        read_femasr_file(ours)
    assert load_checkpoint(ours).config.name == "tiny_x4"
