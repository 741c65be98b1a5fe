"""Shared fixtures: a fixed seed for every test, torch's thread count restored after each (the CLIs'
``--threads`` set it process-wide); ``write_package_photos`` for tests that need a few real photos."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    try:
        import torch
    except ImportError:  # runtime tests run without torch too
        return
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def write_package_photos(folder: Path, size: int, names=("astronaut", "coffee")) -> Path:
    """Centre crops of at most ``size`` x ``size`` of scikit-image's photos ``names`` as PNGs in ``folder``."""
    cv2 = pytest.importorskip("cv2")
    data = pytest.importorskip("skimage.data")
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        img = getattr(data, name)()
        h, w = img.shape[:2]
        s = min(size, h, w)
        crop = img[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2]
        assert cv2.imwrite(str(folder / f"{name}.png"), np.ascontiguousarray(crop[..., ::-1]))
    return folder
