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
* NIQE (Mittal et al. 2013) as BasicSR ``calculate_niqe``: Y (rounded), 96x96 blocks, two scales
  (the second by MATLAB bicubic x0.5 with antialiasing), 7x7 window; the pristine model is the npz
  BasicSR ships (``ugtsr/data_files/niqe_pris_params.npz``, from basicsr 1.4.2, Apache-2.0; the
  numbers are the NIQE authors' MATLAB release). Lower is better.

This module imports only numpy at load time; the ``*_torch`` batch helpers import torch when called.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ugtsr.errors import MissingDependencyError, UnsupportedInputError

if TYPE_CHECKING:
    import torch

__all__ = ["rgb_to_y", "psnr", "ssim", "niqe", "psnr_y_torch", "ssim_y_torch", "NIQE_PARAMS_PATH"]

#: BT.601 luma weights for RGB in [0, 1] giving Y on the 0..255 scale (plus the offset 16).
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0
_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2
_SSIM_SIZE, _SSIM_SIGMA = 11, 1.5
_NIQE_BLOCK = 96

#: The pristine multivariate-Gaussian model of NIQE (keys mu_pris_param, cov_pris_param, gaussian_window).
NIQE_PARAMS_PATH = Path(__file__).with_name("data_files") / "niqe_pris_params.npz"


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


# ------------------------------------------------------------------------------------------------- NIQE
@lru_cache(maxsize=1)
def _niqe_params() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not NIQE_PARAMS_PATH.is_file():
        raise MissingDependencyError(
            f"NIQE model file {NIQE_PARAMS_PATH} is missing; reinstall ugtsr (it is package data)"
        )
    with np.load(NIQE_PARAMS_PATH) as data:
        return data["mu_pris_param"], data["cov_pris_param"], data["gaussian_window"]


@lru_cache(maxsize=1)
def _aggd_table() -> tuple[np.ndarray, np.ndarray]:
    """Shape grid 0.2..10 (step 0.001) and r(γ) = Γ(2/γ)² / (Γ(1/γ) Γ(3/γ)) for moment matching."""
    gam = np.arange(0.2, 10.001, 0.001)
    r = np.array([math.gamma(2 / g) ** 2 / (math.gamma(1 / g) * math.gamma(3 / g)) for g in gam])
    return gam, r


def _aggd_fit(values: np.ndarray) -> tuple[float, float, float]:
    """Asymmetric generalised Gaussian fit (NIQE Eq. 7): shape α and left/right scales βl, βr."""
    gam, r_gam = _aggd_table()
    v = values.ravel()
    left = math.sqrt(np.mean(v[v < 0] ** 2)) if np.any(v < 0) else math.nan
    right = math.sqrt(np.mean(v[v > 0] ** 2)) if np.any(v > 0) else math.nan
    gamma_hat = left / right
    r_hat = np.mean(np.abs(v)) ** 2 / np.mean(v**2)
    r_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    alpha = float(gam[np.argmin((r_gam - r_norm) ** 2)])
    ratio = math.sqrt(math.gamma(1 / alpha) / math.gamma(3 / alpha))
    return alpha, left * ratio, right * ratio


def _block_features(block: np.ndarray) -> list[float]:
    """18 NIQE features of one normalised block: AGGD of the MSCN values and of 4 neighbour products."""
    alpha, beta_l, beta_r = _aggd_fit(block)
    feats = [alpha, (beta_l + beta_r) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):  # circular shifts, as the MATLAB circshift
        alpha, beta_l, beta_r = _aggd_fit(block * np.roll(block, shift, axis=(0, 1)))
        mean = (beta_r - beta_l) * math.gamma(2 / alpha) / math.gamma(1 / alpha)
        feats += [alpha, mean, beta_l, beta_r]
    return feats


def _convolve_nearest(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.convolve(img, kernel, mode='nearest')`` for an odd square kernel, in numpy."""
    k = kernel.shape[0]
    r = k // 2
    padded = np.pad(img, r, mode="edge")
    flipped = kernel[::-1, ::-1]
    h, w = img.shape
    return sum(flipped[i, j] * padded[i : i + h, j : j + w] for i in range(k) for j in range(k))


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    return np.where(
        ax <= 1,
        1.5 * ax**3 - 2.5 * ax**2 + 1,
        np.where(ax <= 2, -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2, 0.0),
    )


def _matlab_resize_matrix(in_len: int, scale: float) -> np.ndarray:
    """``(out, in)`` matrix of MATLAB ``imresize`` bicubic with antialiasing and symmetric borders."""
    out_len = math.ceil(in_len * scale)
    width = 4.0 / scale if scale < 1 else 4.0
    u = np.arange(1, out_len + 1) / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinate
    left = np.floor(u - width / 2)
    taps = math.ceil(width) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    dist = u[:, None] - idx
    weights = scale * _cubic(dist * scale) if scale < 1 else _cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    zero_based = idx.astype(np.int64) - 1
    zero_based = np.where(zero_based < 0, -zero_based - 1, zero_based)
    zero_based = np.where(zero_based >= in_len, 2 * in_len - 1 - zero_based, zero_based)
    matrix = np.zeros((out_len, in_len))
    np.add.at(matrix, (np.repeat(np.arange(out_len), taps), zero_based.ravel()), weights.ravel())
    return matrix


def _niqe_core(img: np.ndarray, mu_pris: np.ndarray, cov_pris: np.ndarray, window: np.ndarray) -> float:
    h, w = img.shape
    nbh, nbw = h // _NIQE_BLOCK, w // _NIQE_BLOCK
    img = img[: nbh * _NIQE_BLOCK, : nbw * _NIQE_BLOCK]
    per_scale = []
    for scale in (1, 2):
        mu = _convolve_nearest(img, window)
        sigma = np.sqrt(np.abs(_convolve_nearest(img * img, window) - mu * mu))
        mscn = (img - mu) / (sigma + 1)  # NIQE Eq. 1
        size = _NIQE_BLOCK // scale
        per_scale.append(
            np.array(
                [
                    _block_features(mscn[bh * size : (bh + 1) * size, bw * size : (bw + 1) * size])
                    for bw in range(nbw)
                    for bh in range(nbh)
                ]
            )
        )
        if scale == 1:
            img = (
                _matlab_resize_matrix(img.shape[0], 0.5)
                @ (img / 255.0)
                @ _matlab_resize_matrix(img.shape[1], 0.5).T
            )
            img = img * 255.0
    feats = np.concatenate(per_scale, axis=1)
    mu_dist = np.nanmean(feats, axis=0)
    rows = feats[~np.isnan(feats).any(axis=1)]
    if rows.shape[0] < 2:
        raise UnsupportedInputError(
            f"niqe: needs at least two textured {_NIQE_BLOCK}x{_NIQE_BLOCK} blocks, got {rows.shape[0]}"
        )
    cov_dist = np.cov(rows, rowvar=False)
    diff = mu_pris - mu_dist
    quality = diff @ np.linalg.pinv((cov_pris + cov_dist) / 2) @ diff.T  # NIQE Eq. 10
    return float(np.sqrt(np.squeeze(quality)))


def niqe(img: np.ndarray, *, crop_border: int = 0) -> float:
    """NIQE of one ``(H, W, 3)`` float RGB image in [0, 1] (or ``(H, W)`` grey in [0, 1]); lower is better.

    Computed on Y (0..255, rounded like BasicSR/MATLAB), cropped by ``crop_border`` first. Needs at
    least two 96x96 blocks after cropping (e.g. 192x96). Takes about 0.1 s per 96x96 block.
    """
    arr = np.asarray(img)
    if arr.ndim == 3:
        y = _prepare(arr, "niqe", crop_border=crop_border, y_channel=True)[:, :, 0]
    else:
        y = _prepare(arr, "niqe", crop_border=crop_border, y_channel=False)[:, :, 0]
    if min(y.shape) < _NIQE_BLOCK:
        raise UnsupportedInputError(
            f"niqe: needs at least {_NIQE_BLOCK}x{_NIQE_BLOCK} px after cropping, got {y.shape}"
        )
    mu_pris, cov_pris, window = _niqe_params()
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # flat blocks give NaN features; nanmean skips them
        return _niqe_core(np.round(y), mu_pris, cov_pris, window)


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
