"""How well an HQ prior (a ``--stage prior`` checkpoint) reconstructs clean photos: PSNR-Y of
``prior(hr)`` against ``hr`` (4-pixel border cropped).

    python scripts/experiments/prior_reconstruction.py runs/gpu/prior.pt data/photos/val

``runs/gpu/prior.pt`` is written by ``scripts/gpu_session.sh``. Source of the model card's "reconstructs
even clean images at only about 23 dB" (chelsea 24.9, coffee 22.8, flower 21.2).
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ugtsr import load_model  # noqa: E402
from ugtsr.metrics import psnr  # noqa: E402


def main() -> None:
    prior = load_model(sys.argv[1])
    for path in sorted(Path(sys.argv[2]).glob("*.png")):
        hr = cv2.imread(str(path))[..., ::-1].astype(np.float32) / 255
        with torch.no_grad():
            rec = prior(torch.from_numpy(hr.copy()).permute(2, 0, 1)[None]).sr.clamp(0, 1)
        print(f"{path.stem:12} {psnr(rec[0].permute(1, 2, 0).numpy(), hr, crop_border=4):.2f} dB")


if __name__ == "__main__":
    main()
