"""Validation during training: PSNR / SSIM on the Y channel (BasicSR conventions, ``ugtsr.metrics``).

``--val DIR`` is either a folder with ``lq/`` and ``gt/`` sub-folders of pairs, or a folder of HR
images, each degraded once with the training pipeline and a fixed seed (``[seed, image number]``),
so every validation of a run (and of a resumed run) sees the same inputs. HR images are
centre-cropped to ``crop`` pixels first (0 keeps them whole). The HQ prior is validated on
reconstruction (input = HR). Outputs are clamped and rounded to 8-bit levels before measuring, as
BasicSR's ``tensor2img`` does; ``crop_border`` is the scale (0 for the prior).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..data import PairedDataset, find_images
from ..degrade import PIPELINES, image_to_float, read_image
from ..errors import ConfigError, UnsupportedInputError
from ..metrics import psnr, ssim
from ..model import UGTSRNet

__all__ = ["ValidationSet"]

logger = logging.getLogger(__name__)

_MIN_LR = 16  # UGTSRNet.min_size


def _center_crop(img: np.ndarray, size: int) -> np.ndarray:
    if size <= 0:
        return img
    h, w = img.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[top : top + size, left : left + size]


def _to_batch(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))[None]


class ValidationSet:
    """Fixed LR/HR pairs held in memory; :meth:`evaluate` runs a model over them."""

    def __init__(self, root: str | Path, *, scale: int, pipeline: str, seed: int, crop: int = 256) -> None:
        root = Path(root)
        self.scale = scale
        self.pairs: list[tuple[str, torch.Tensor, torch.Tensor]] = []
        self.num_skipped = 0
        if (root / "lq").is_dir() and (root / "gt").is_dir() and scale > 1:
            ds = PairedDataset(root / "lq", root / "gt", scale)
            for i in range(len(ds)):
                try:
                    item = ds[i]
                except UnsupportedInputError as exc:
                    logger.warning("validation: skipping %s", exc)
                    self.num_skipped += 1
                    continue
                self.pairs.append((str(item["name"]), item["lq"][None], item["gt"][None]))
        else:
            degrade = PIPELINES[pipeline]
            for n, path in enumerate(find_images(root)):
                try:
                    hr = _center_crop(image_to_float(read_image(path)), crop)
                except UnsupportedInputError as exc:
                    logger.warning("validation: skipping %s", exc)
                    self.num_skipped += 1
                    continue
                if min(hr.shape[:2]) < _MIN_LR * max(scale, 1):
                    logger.warning("validation: skipping %s: smaller than %d px", path, _MIN_LR * max(scale, 1))
                    self.num_skipped += 1
                    continue
                if scale == 1:
                    lq = gt = hr
                else:
                    pair = degrade(hr, scale=scale, rng=np.random.default_rng([seed, n]))
                    lq, gt = pair.lr, pair.hr
                self.pairs.append((path.relative_to(root).as_posix(), _to_batch(lq), _to_batch(gt)))
        if not self.pairs:
            raise ConfigError(f"{root}: no usable validation image")

    def __len__(self) -> int:
        return len(self.pairs)

    @torch.no_grad()
    def evaluate(self, model: UGTSRNet, device: torch.device) -> dict[str, float]:
        """Mean PSNR / SSIM (dB / [0, 1], Y channel, border ``scale`` cropped) over the set."""
        was_training = model.training
        model.eval()
        border = self.scale if self.scale > 1 else 0
        scores_p, scores_s = [], []
        try:
            for _, lq, gt in self.pairs:
                sr = model(lq.to(device)).sr.clamp(0, 1)
                sr_np = np.round(sr[0].permute(1, 2, 0).cpu().numpy().astype(np.float64) * 255.0) / 255.0
                gt_np = gt[0].permute(1, 2, 0).numpy().astype(np.float64)
                scores_p.append(psnr(sr_np, gt_np, crop_border=border))
                scores_s.append(ssim(sr_np, gt_np, crop_border=border))
        finally:
            model.train(was_training)
        return {"psnr": float(np.mean(scores_p)), "ssim": float(np.mean(scores_s))}
