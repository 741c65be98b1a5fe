"""NIQE (Mittal, Soundararajan and Bovik, "Making a 'Completely Blind' Image Quality Analyzer", IEEE
Signal Processing Letters 20(3), 2013), computed as BasicSR 1.4.2's ``calculate_niqe`` computes it.

The image is the BT.601 Y channel (0..255, rounded), cut into 96x96 blocks (no overlap); the
features of every block are the asymmetric-generalised-Gaussian fits of its MSCN coefficients and
of their four neighbour products (Eqs. 1-8), at the full scale and after MATLAB bicubic resizing
by 0.5 with antialiasing; Eq. 10 compares their multivariate Gaussian with the pristine model
(``ugtsr/data_files/niqe_pris_params.npz``, from basicsr 1.4.2, Apache-2.0; the numbers are the
NIQE authors' MATLAB release).

**Arithmetic follows BasicSR, not MATLAB.** BasicSR casts the image to float32 and keeps it there:
the Y conversion (float64 dot product, stored as float32 ``Y / 255`` times 255), the 7x7 Gaussian
filters (scipy: double sums, float32 result), the local variance ``E[x²] - E[x]²`` (float32: in flat
regions -- JPEG blocks -- this difference is rounding noise of ~0.01 where float64 gives ~0, so the
MSCN values there differ), the AGGD moments and the half-size resize (torch float32). The earlier
float64 version of this module differed from BasicSR by up to 0.13 on JPEG-compressed photos
(0.69 on another one); the float32 steps are reproduced here. The resize is bit-identical when it
runs through torch (float32 ``Tensor.mv`` on the same views, as BasicSR): that path is used when
torch is importable, and then NIQE equals BasicSR's to ~1e-12 (tests/ugtsr/test_metrics.py compares
with a port of BasicSR's code). Without torch the resize sums in float64 and rounds to float32;
its 1-ulp differences, amplified by the float32 variance of flat blocks, then move NIQE by up to
~2e-2 on heavily compressed or two-block images and by < 1e-3 on the uncompressed scikit-image
photos (measured on this project's test images).
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import MissingDependencyError, UnsupportedInputError

__all__ = ["niqe", "NIQE_PARAMS_PATH", "NIQE_BLOCK"]

#: The pristine multivariate-Gaussian model of NIQE (keys mu_pris_param, cov_pris_param, gaussian_window).
NIQE_PARAMS_PATH = Path(__file__).with_name("data_files") / "niqe_pris_params.npz"
#: block side in pixels (the authors' recommended 96, no overlap)
NIQE_BLOCK = 96

_F32 = np.float32
_Y_WEIGHTS_RGB = (65.481, 128.553, 24.966)  # BT.601 for RGB in [0, 1] -> Y - 16 on the 0..255 scale


@lru_cache(maxsize=1)
def _params() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def _aggd_fit(block: np.ndarray) -> tuple[float, float, float]:
    """AGGD fit (Eq. 7) of a float32 block: shape α and left/right scales βl, βr.

    The moments stay float32 numpy reductions (as BasicSR's); α is the grid point nearest in r.
    """
    gam, r_gam = _aggd_table()
    v = block.ravel()
    left = np.sqrt(np.mean(v[v < 0] ** 2))
    right = np.sqrt(np.mean(v[v > 0] ** 2))
    gamma_hat = left / right
    r_hat = np.mean(np.abs(v)) ** 2 / np.mean(v**2)
    r_norm = (r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1)) / ((gamma_hat**2 + 1) ** 2)
    alpha = gam[np.argmin((r_gam - r_norm) ** 2)]
    ratio = np.sqrt(math.gamma(1 / alpha) / math.gamma(3 / alpha))
    return alpha, left * ratio, right * ratio


def _block_features(block: np.ndarray) -> list[float]:
    """18 features of one MSCN block: AGGD of the values and of 4 neighbour products (Eq. 8)."""
    alpha, beta_l, beta_r = _aggd_fit(block)
    feats = [alpha, (beta_l + beta_r) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):  # circular shifts, as MATLAB's circshift
        alpha, beta_l, beta_r = _aggd_fit(block * np.roll(block, shift, axis=(0, 1)))
        mean = (beta_r - beta_l) * (math.gamma(2 / alpha) / math.gamma(1 / alpha))
        feats += [alpha, mean, beta_l, beta_r]
    return feats


def _filter_nearest(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.convolve(img, kernel, mode='nearest')`` of a float32 image: float64 sums, float32 out."""
    k = kernel.shape[0]
    r = k // 2
    padded = np.pad(img.astype(np.float64), r, mode="edge")
    flipped = kernel[::-1, ::-1]
    h, w = img.shape
    out = sum(flipped[i, j] * padded[i : i + h, j : j + w] for i in range(k) for j in range(k))
    return out.astype(_F32)


def _resize_weights(in_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB ``imresize`` bicubic weights with antialiasing, in float32 as BasicSR's torch code.

    Returns ``(weights (out, taps), first input index (out,))``: output ``i`` reads the inputs
    ``first[i] .. first[i] + taps - 1`` (zero-based, before the symmetric border extension, so they
    may fall outside ``[0, in_len)``). The steps and their float32 rounding are those of BasicSR's
    ``calculate_weights_indices``: normalised over all ``ceil(4 / scale) + 2`` taps, then an
    all-zero first/last tap dropped.
    """
    out_len = math.ceil(in_len * scale)
    width = 4.0 / scale if scale < 1 else 4.0
    x = np.linspace(1, out_len, out_len, dtype=_F32)
    u = x / _F32(scale) + _F32(0.5 * (1 - 1 / scale))  # 1-based input coordinate of each output
    left = np.floor(u - _F32(width / 2))
    taps = math.ceil(width) + 2
    idx = left[:, None] + np.linspace(0, taps - 1, taps, dtype=_F32)[None, :]
    dist = u[:, None] - idx
    ax = np.abs(dist * _F32(scale)) if scale < 1 else np.abs(dist)
    ax2, ax3 = ax**2, ax**3
    cubic = ((_F32(1.5) * ax3 - _F32(2.5) * ax2 + _F32(1)) * (ax <= 1).astype(_F32)
             + (_F32(-0.5) * ax3 + _F32(2.5) * ax2 - _F32(4) * ax + _F32(2)) * ((ax > 1) & (ax <= 2)).astype(_F32))
    weights = _F32(scale) * cubic if scale < 1 else cubic
    weights = weights / weights.sum(axis=1, keepdims=True)
    zero = (weights == 0).sum(axis=0)
    keep = slice(1 if zero[0] else 0, taps - 1 if zero[-1] else taps)
    return np.ascontiguousarray(weights[:, keep]), idx[:, keep][:, 0].astype(np.int64) - 1


def _symmetric(first: np.ndarray, taps: int, in_len: int) -> np.ndarray:
    """Zero-based input indices ``(out, taps)`` with MATLAB's symmetric border (the edge repeated)."""
    idx = first[:, None] + np.arange(taps)[None, :]
    idx = np.where(idx < 0, -idx - 1, idx)
    return np.where(idx >= in_len, 2 * in_len - 1 - idx, idx)


def _resize_half(img: np.ndarray) -> np.ndarray:
    """MATLAB ``imresize(img, 0.5)`` (bicubic, antialiased) of a float32 ``(h, w)`` image, float32 out."""
    (h, w) = img.shape
    wh, fh = _resize_weights(h, 0.5)
    ww, fw = _resize_weights(w, 0.5)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is None:  # float64 sums rounded to float32 (see the module docstring)
        rows = np.einsum("ik,ikj->ij", wh.astype(np.float64),
                         img[_symmetric(fh, wh.shape[1], h)].astype(np.float64)).astype(_F32)
        cols = rows[:, _symmetric(fw, ww.shape[1], w)].astype(np.float64)
        return np.einsum("jk,ijk->ij", ww.astype(np.float64), cols).astype(_F32)
    # As BasicSR's imresize: extend the borders symmetrically, then one float32 matrix-vector product
    # per output row (on a transposed view) and per output column (on a row-major view). The same
    # views give the same BLAS calls, hence bit-identical results.
    with torch.no_grad():
        def extend(t: torch.Tensor, first: np.ndarray, taps: int, dim: int) -> tuple[torch.Tensor, np.ndarray]:
            n = t.shape[dim]
            before, after = max(0, int(-first.min())), max(0, int(first.max()) + taps - n)
            parts = [t.narrow(dim, 0, before).flip(dim), t, t.narrow(dim, n - after, after).flip(dim)]
            return torch.cat(parts, dim).contiguous(), first + before

        src, start = extend(torch.from_numpy(np.ascontiguousarray(img, dtype=_F32)), fh, wh.shape[1], 0)
        t_wh, t_ww, kh, kw = torch.from_numpy(wh), torch.from_numpy(ww), wh.shape[1], ww.shape[1]
        rows = torch.empty(len(wh), w)
        for i in range(len(wh)):
            rows[i, :] = src[start[i] : start[i] + kh, :].transpose(0, 1).mv(t_wh[i])
        src, start = extend(rows, fw, kw, 1)
        out = torch.empty(len(wh), len(ww))
        for j in range(len(ww)):
            out[:, j] = src[:, start[j] : start[j] + kw].mv(t_ww[j])
        return out.numpy()


def _niqe_y(img: np.ndarray) -> float:
    """NIQE of a rounded float32 Y image ``(h, w)`` on the 0..255 scale, at least one 96x96 block."""
    mu_pris, cov_pris, window = _params()
    h, w = img.shape
    nbh, nbw = h // NIQE_BLOCK, w // NIQE_BLOCK
    img = img[: nbh * NIQE_BLOCK, : nbw * NIQE_BLOCK]
    per_scale = []
    for scale in (1, 2):
        mu = _filter_nearest(img, window)
        sigma = np.sqrt(np.abs(_filter_nearest(np.square(img), window) - np.square(mu)))
        mscn = (img - mu) / (sigma + 1)  # Eq. 1, float32
        size = NIQE_BLOCK // scale
        per_scale.append(np.array([
            _block_features(mscn[bh * size : (bh + 1) * size, bw * size : (bw + 1) * size])
            for bw in range(nbw) for bh in range(nbh)
        ]))
        if scale == 1:
            img = _resize_half(img / _F32(255.0)) * _F32(255.0)
    feats = np.concatenate(per_scale, axis=1)
    mu_dist = np.nanmean(feats, axis=0)
    rows = feats[~np.isnan(feats).any(axis=1)]
    if rows.shape[0] < 2:
        raise UnsupportedInputError(
            f"niqe: needs at least two textured {NIQE_BLOCK}x{NIQE_BLOCK} blocks, got {rows.shape[0]}"
        )
    cov_dist = np.cov(rows, rowvar=False)
    diff = mu_pris - mu_dist
    quality = diff @ np.linalg.pinv((cov_pris + cov_dist) / 2) @ diff.T  # Eq. 10
    return float(np.sqrt(np.squeeze(quality)))


def niqe(img: np.ndarray, *, crop_border: int = 0) -> float:
    """NIQE of one ``(H, W, 3)`` float RGB image in [0, 1] (or ``(H, W)`` grey in [0, 1]); lower is better.

    As BasicSR 1.4.2 ``calculate_niqe(img_bgr_uint8, crop_border)`` for 8-bit images (``img / 255``):
    Y conversion, crop, rounding, float32 arithmetic. Needs at least two 96x96 blocks after cropping
    (e.g. 192x96). Takes about 0.1 s per 96x96 block.
    """
    arr = np.asarray(img)
    if arr.dtype.kind != "f":
        raise UnsupportedInputError(
            f"niqe: expected a float image in [0, 1], got dtype {arr.dtype} (divide 8-bit images by 255)"
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3:
        if arr.shape[2] != 3:
            raise UnsupportedInputError(f"niqe: expected an (H, W, 3) RGB or (H, W) grey image, got {arr.shape}")
        # BasicSR: float32 [0, 1] image, float64 dot product, stored as float32 Y / 255, times 255 (float32)
        x = arr.astype(_F32)
        y = ((np.dot(x, _Y_WEIGHTS_RGB) + 16.0) / 255.0).astype(_F32) * _F32(255.0)
    elif arr.ndim == 2:
        y = arr.astype(_F32) * _F32(255.0)
    else:
        raise UnsupportedInputError(f"niqe: expected an (H, W, 3) RGB or (H, W) grey image, got {arr.shape}")
    if crop_border < 0:
        raise UnsupportedInputError(f"niqe: crop_border must be >= 0, got {crop_border}")
    if crop_border:
        y = y[crop_border:-crop_border, crop_border:-crop_border]
    if min(y.shape) < NIQE_BLOCK:
        raise UnsupportedInputError(
            f"niqe: needs at least {NIQE_BLOCK}x{NIQE_BLOCK} px after cropping, got {y.shape}"
        )
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # flat blocks give NaN features; nanmean skips them
        return _niqe_y(np.round(y))
