"""The shipped default model: present, loads without arguments, runs the quickstart, and its ONNX
export agrees with the checkpoint it came from."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtime import Upscaler, default_model_path
from runtime.infer import main as infer_main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def test_default_model_is_shipped_and_loads():
    path = Path(default_model_path())
    assert path.is_file() and path.name == "ugtsr_tiny_x4.onnx"
    assert path.stat().st_size < 20 * 2**20  # small enough to live in the repository
    with Upscaler() as up:
        assert up.info.scale == 4 and "uncertainty" in up.info.outputs
        img = (np.random.default_rng(0).random((24, 40, 3)) * 255).astype(np.uint8)
        out, unc = up.upscale_with_uncertainty(img)
    assert out.shape == (96, 160, 3) and out.dtype == np.uint8
    assert unc.shape == (96, 160) and np.isfinite(unc).all() and unc.std() > 0


def test_quickstart_command(tmp_path, capsys):
    assert infer_main([str(EXAMPLES), "-o", str(tmp_path), "--save-uncertainty"]) == 0
    import cv2

    for src in sorted(EXAMPLES.glob("*.png")):
        lr = cv2.imread(str(src))
        sr = cv2.imread(str(tmp_path / src.name))
        assert sr.shape == (lr.shape[0] * 4, lr.shape[1] * 4, 3)
        assert (tmp_path / f"{src.stem}_uncertainty.png").is_file()


def test_shipped_onnx_matches_shipped_checkpoint():
    pytest.importorskip("torch", reason="the torch backend needs torch")
    ckpt = Path(default_model_path()).with_suffix(".pt")
    assert ckpt.is_file()
    from runtime.backends import load_backend

    x = np.random.default_rng(1).random((1, 3, 48, 64), dtype=np.float32)
    with load_backend(str(default_model_path())) as ort_be, load_backend(str(ckpt), backend="torch") as torch_be:
        a, b = ort_be.run(x), torch_be.run(x)
    assert np.abs(np.clip(a["sr"], 0, 1) - np.clip(b["sr"], 0, 1)).max() <= 1e-4
