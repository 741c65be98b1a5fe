"""Full-reference (PSNR, SSIM) and no-reference (NIQE) image-quality metrics, BasicSR conventions.

Inputs are numpy ``(H, W, 3)`` float RGB arrays in [0, 1] (``(H, W)`` grey also accepted where no
colour conversion is needed). Internally every value is scaled to the 0..255 range that BasicSR's
metrics see on uint8 images and computed in float64; the images are *not* re-quantised, so images
read from 8-bit files give exactly BasicSR's numbers, while raw network outputs give the
un-rounded value. Conventions (BasicSR's ``basicsr/metrics``):

* ``y_channel=True`` (default) measures on BT.601 luma ``Y = 16 + 65.481 R + 128.553 G + 24.966 B``
  (MATLAB ``rgb2ycbcr``; Y in [16, 235]). Our arrays are **RGB**; BasicSR's numpy path expects BGR.
* ``crop_border`` pixels are removed from every edge *before* the colour conversion; use the SR
  scale (4 for x4) for tables.
* PSNR = ``10 log10(255² / MSE)``, ``inf`` for identical images.
* SSIM: 11x11 Gaussian window (sigma 1.5), C1 = (0.01·255)², C2 = (0.03·255)², statistics only on the
  'valid' region (5 px less on each side), mean of the SSIM map, channels averaged when not on Y.
* NIQE (Mittal et al. 2013) as BasicSR ``calculate_niqe``, including its float32 arithmetic: see
  :mod:`ugtsr.niqe` (re-exported here). Lower is better.

This module imports only numpy at load time; the ``*_torch`` batch helpers import torch when called.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ugtsr.errors import UnsupportedInputError

from .niqe import NIQE_PARAMS_PATH, niqe

if TYPE_CHECKING:
    import torch

__all__ = ["rgb_to_y", "psnr", "ssim", "niqe", "psnr_y_torch", "ssim_y_torch", "NIQE_PARAMS_PATH"]

#: BT.601 luma weights for RGB in [0, 1] giving Y on the 0..255 scale (plus the offset 16).
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0
_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2
_SSIM_SIZE, _SSIM_SIGMA = 11, 1.5


# ---------------------------------------------------------------------------------------------- shared
def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of ``(..., 3)`` RGB in [0, 1]: float64 ``(...)`` in [16, 235] (0..255 scale), unrounded."""
    arr = np.asarray(img, dtype=np.float64)
    if arr.shape[-1:] != (3,):
        raise UnsupportedInputError(f"rgb_to_y: expected (..., 3) RGB, got shape {arr.shape}")
    return arr @ np.asarray(_Y_WEIGHTS) + _Y_OFFSET


def _prepare(img: np.ndarray, name: str, *, crop_border: int, y_channel: bool) -> np.ndarray:
    """Validate, crop, convert: float64 ``(h, w, c)`` on the 0..255 scale."""
    arr = np.asarray(img)
    if arr.dtype.kind != "f":
        raise UnsupportedInputError(
            f"{name}: expected a float image in [0, 1], got dtype {arr.dtype} (divide 8-bit images by 255)"
        )
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise UnsupportedInputError(f"{name}: expected an (H, W, C) or (H, W) image, got shape {arr.shape}")
    if crop_border < 0:
        raise UnsupportedInputError(f"{name}: crop_border must be >= 0, got {crop_border}")
    if crop_border:
        arr = arr[crop_border:-crop_border, crop_border:-crop_border]
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise UnsupportedInputError(
            f"{name}: nothing left after cropping {crop_border} px from a {np.shape(img)} image"
        )
    if y_channel:
        if arr.shape[2] != 3:
            raise UnsupportedInputError(
                f"{name}: y_channel=True needs an RGB (H, W, 3) image, got shape {np.shape(img)}"
            )
        return rgb_to_y(arr)[:, :, None]
    return arr.astype(np.float64) * 255.0


def _pair(
    a: np.ndarray, b: np.ndarray, name: str, *, crop_border: int, y_channel: bool
) -> tuple[np.ndarray, np.ndarray]:
    if np.shape(a) != np.shape(b):
        raise UnsupportedInputError(f"{name}: image shapes differ, {np.shape(a)} vs {np.shape(b)}")
    return (
        _prepare(a, name, crop_border=crop_border, y_channel=y_channel),
        _prepare(b, name, crop_border=crop_border, y_channel=y_channel),
    )


# ------------------------------------------------------------------------------------------ PSNR / SSIM
def psnr(a: np.ndarray, b: np.ndarray, *, crop_border: int = 0, y_channel: bool = True) -> float:
    """PSNR in dB between two ``(H, W, 3)`` float RGB images in [0, 1] (0..255 scale inside); ``inf`` if equal."""
    x, y = _pair(a, b, "psnr", crop_border=crop_border, y_channel=y_channel)
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0**2 / mse)


def _gaussian_1d(size: int = _SSIM_SIZE, sigma: float = _SSIM_SIGMA) -> np.ndarray:
    # cv2.getGaussianKernel(11, 1.5): normalised samples at integer offsets from the centre
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def _filter_valid(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D array with ``outer(kernel, kernel)``."""
    k = len(kernel)
    h, w = x.shape
    rows = sum(kernel[i] * x[i : h - k + 1 + i] for i in range(k))
    return sum(kernel[i] * rows[:, i : w - k + 1 + i] for i in range(k))


def _ssim_plane(x: np.ndarray, y: np.ndarray) -> float:
    g = _gaussian_1d()
    mu_x, mu_y = _filter_valid(x, g), _filter_valid(y, g)
    var_x = _filter_valid(x * x, g) - mu_x**2
    var_y = _filter_valid(y * y, g) - mu_y**2
    cov = _filter_valid(x * y, g) - mu_x * mu_y
    num = (2 * mu_x * mu_y + _SSIM_C1) * (2 * cov + _SSIM_C2)
    den = (mu_x**2 + mu_y**2 + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    return float(np.mean(num / den))


def ssim(a: np.ndarray, b: np.ndarray, *, crop_border: int = 0, y_channel: bool = True) -> float:
    """SSIM of two ``(H, W, 3)`` float RGB images in [0, 1]; 1.0 if equal. Needs >= 11x11 px after cropping."""
    x, y = _pair(a, b, "ssim", crop_border=crop_border, y_channel=y_channel)
    if min(x.shape[:2]) < _SSIM_SIZE:
        raise UnsupportedInputError(
            f"ssim: needs at least {_SSIM_SIZE}x{_SSIM_SIZE} px after cropping, got {x.shape[:2]}"
        )
    return float(np.mean([_ssim_plane(x[:, :, c], y[:, :, c]) for c in range(x.shape[2])]))


# ---------------------------------------------------------------------------------- torch batch helpers
def _y_torch(x: torch.Tensor, crop_border: int, name: str) -> torch.Tensor:
    import torch

    if x.dim() != 4 or x.shape[1] != 3:
        raise UnsupportedInputError(f"{name}: expected (B, 3, H, W) RGB, got shape {tuple(x.shape)}")
    if crop_border:
        x = x[..., crop_border:-crop_border, crop_border:-crop_border]
    weights = torch.tensor(_Y_WEIGHTS, dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
    return (x.double() * weights).sum(dim=1, keepdim=True) + _Y_OFFSET


def psnr_y_torch(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 0) -> torch.Tensor:
    """Per-image Y-channel PSNR of ``(B, 3, H, W)`` RGB batches in [0, 1]: ``(B,)`` float64, ``inf`` if equal.

    Same numbers as :func:`psnr` with ``y_channel=True`` (BasicSR's ``calculate_psnr_pt`` instead adds
    1e-8 to the MSE). No gradient is intended (validation).
    """
    if sr.shape != hr.shape:
        raise UnsupportedInputError(f"psnr_y_torch: shapes differ, {tuple(sr.shape)} vs {tuple(hr.shape)}")
    mse = (
        (_y_torch(sr, crop_border, "psnr_y_torch") - _y_torch(hr, crop_border, "psnr_y_torch"))
        .square()
        .mean(dim=(1, 2, 3))
    )
    return 10.0 * (255.0**2 / mse).log10()


def ssim_y_torch(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 0) -> torch.Tensor:
    """Per-image Y-channel SSIM of ``(B, 3, H, W)`` RGB batches in [0, 1]: ``(B,)`` float64 (as :func:`ssim`)."""
    import torch
    from torch.nn import functional as F

    if sr.shape != hr.shape:
        raise UnsupportedInputError(f"ssim_y_torch: shapes differ, {tuple(sr.shape)} vs {tuple(hr.shape)}")
    x, y = _y_torch(sr, crop_border, "ssim_y_torch"), _y_torch(hr, crop_border, "ssim_y_torch")
    if min(x.shape[-2:]) < _SSIM_SIZE:
        raise UnsupportedInputError(
            f"ssim_y_torch: needs at least {_SSIM_SIZE}x{_SSIM_SIZE} px after cropping, got {tuple(x.shape[-2:])}"
        )
    g = torch.from_numpy(_gaussian_1d()).to(x.device)
    window = (g[:, None] * g[None, :]).view(1, 1, _SSIM_SIZE, _SSIM_SIZE)
    mu_x, mu_y = F.conv2d(x, window), F.conv2d(y, window)
    var_x = F.conv2d(x * x, window) - mu_x**2
    var_y = F.conv2d(y * y, window) - mu_y**2
    cov = F.conv2d(x * y, window) - mu_x * mu_y
    num = (2 * mu_x * mu_y + _SSIM_C1) * (2 * cov + _SSIM_C2)
    den = (mu_x**2 + mu_y**2 + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    return (num / den).mean(dim=(1, 2, 3))
