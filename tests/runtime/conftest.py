"""Fixtures for runtime tests: synthetic ONNX models that honour the export contract, and image files.

The synthetic models stand in for ``python -m export.onnx`` output (``docs/INTERFACES.md``): one
input ``lq`` ``(N, 3, H, W)`` with dynamic N/H/W, an ``sr`` output that is a Resize x``scale`` of the
input (nearest = exactly ``np.repeat``, or linear), optional ``uncertainty`` and ``indices`` outputs,
and the UGTSR ``metadata_props``. ``stats=True`` makes ``sr`` depend on whole-image statistics
(``resize(lq - mean(lq) + 0.5)``), like GroupNorm / channel attention in the real model, so tiling
changes the result. They build in milliseconds and run instantly.
"""
from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

OPSET = 18


def build_synthetic_onnx(
    path: Path,
    *,
    mode: str = "nearest",
    scale: int = 4,
    multiple_of: int = 16,
    min_size: int = 16,
    uncertainty: bool = False,
    indices: bool = False,
    stats: bool = False,
    metadata: bool = True,
    extra_metadata: dict[str, str] | None = None,
    input_name: str = "lq",
) -> Path:
    """Write a synthetic UGTSR-contract ONNX model to ``path`` and return ``path``."""
    onnx = pytest.importorskip("onnx", reason="building synthetic test models needs the onnx package")
    from onnx import TensorProto, helper

    nodes = []
    inits = [helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, float(scale), float(scale)])]
    x = input_name
    if stats:
        inits += [helper.make_tensor("axes_hw", TensorProto.INT64, [2], [2, 3]),
                  helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])]
        nodes += [helper.make_node("ReduceMean", [x, "axes_hw"], ["mean"], keepdims=1),
                  helper.make_node("Sub", [x, "mean"], ["centred"]),
                  helper.make_node("Add", ["centred", "half"], ["shifted"])]
        x = "shifted"
    if mode == "nearest":
        resize = helper.make_node("Resize", [x, "", "scales"], ["sr"], mode="nearest",
                                  coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    else:
        resize = helper.make_node("Resize", [x, "", "scales"], ["sr"], mode="linear",
                                  coordinate_transformation_mode="half_pixel")
    nodes.append(resize)
    dims = ["N", 3, "H", "W"]
    out_dims = ["N", 3, "Hs", "Ws"]
    outputs = [helper.make_tensor_value_info("sr", TensorProto.FLOAT, out_dims)]
    names = ["sr"]
    if indices:
        nodes += [helper.make_node("AveragePool", [input_name], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]),
                  helper.make_node("ArgMax", ["pooled"], ["indices"], axis=1, keepdims=0)]
        outputs.append(helper.make_tensor_value_info("indices", TensorProto.INT64, ["N", "h", "w"]))
        names.append("indices")
    if uncertainty:
        # local and distinct from sr: s = -sr (in [-1, 0] for inputs in [0, 1])
        nodes.append(helper.make_node("Neg", ["sr"], ["uncertainty"]))
        outputs.append(helper.make_tensor_value_info("uncertainty", TensorProto.FLOAT, out_dims))
        names.append("uncertainty")
    graph = helper.make_graph(nodes, "synthetic_ugtsr",
                              [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, dims)],
                              outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tests")
    model.ir_version = 10
    if metadata:
        meta = {
            "ugtsr_format": "1", "scale": str(scale), "multiple_of": str(multiple_of), "min_size": str(min_size),
            "config": json.dumps({"name": "synthetic", "scale": scale, "channels": [8, 8, 8, 8]}),
            "ugtsr_version": "0.0.0-test", "matching": "nearest", "precision": "fp32",
            "outputs": ",".join(names), "opset": str(OPSET), "variant": "standard",
        }
        meta.update(extra_metadata or {})
        helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def make_model(tmp_path_factory) -> Callable[..., Path]:
    """Factory: ``make_model(**options)`` -> path of a synthetic model (cached per option set)."""
    root = tmp_path_factory.mktemp("models")
    cache: dict[str, Path] = {}

    def make(**options) -> Path:
        key = json.dumps(options, sort_keys=True)
        if key not in cache:
            cache[key] = build_synthetic_onnx(root / f"m{len(cache)}.onnx", **options)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def nearest_model(make_model) -> Path:
    """x4 nearest-resize model with ``sr`` and ``uncertainty`` outputs (multiple_of 16, min_size 16)."""
    return make_model(uncertainty=True)


def jpeg_with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an EXIF APP1 segment with the given orientation right after the JPEG's SOI marker."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHIHH", 274, 3, 1, orientation, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + app1 + jpeg[2:]


def random_image(h: int, w: int, channels: int | None, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    """A random OpenCV image: ``channels=None`` gives ``(H, W)``."""
    rng = np.random.default_rng(seed)
    high = 65536 if dtype == np.uint16 else 256
    shape = (h, w) if channels is None else (h, w, channels)
    return rng.integers(0, high, size=shape, dtype=np.int64).astype(dtype)


def load_script(name: str):
    """A module from ``scripts/<name>.py`` (scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[2] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
