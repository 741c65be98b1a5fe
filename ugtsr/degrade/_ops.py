"""Degradation primitives shared by the BSRGAN and Real-ESRGAN pipelines (numpy + cv2, per image).

Every function takes and returns an HWC float32 RGB image (values nominally in [0, 1]) unless it says
otherwise. Functions that draw random numbers take an explicit ``np.random.Generator``; nothing here
touches the global ``random`` / ``np.random`` state, so a seeded generator gives byte-identical output.

cv2 (``opencv-python-headless``, extra ``train``) is imported on first use, so ``import ugtsr.degrade``
works on a minimal install. Parameter ranges are *not* chosen here: the pipeline modules draw them
(the BSRGAN / Real-ESRGAN sources cited in ``bsrgan.py`` / ``realesrgan.py``) and pass them in.

Border handling: BSRGAN blurs with ``scipy.ndimage.convolve(mode='mirror')`` and Real-ESRGAN with
torch ``F.pad(mode='reflect')``; both reflect about the edge pixel *without* repeating it
(``d c b | a b c d | c b a``). That is ``cv2.BORDER_REFLECT_101`` -- not ``cv2.BORDER_REFLECT``, which
repeats the edge pixel (scipy's ``'reflect'``) -- so :func:`blur` uses ``BORDER_REFLECT_101`` and
matches both references exactly away from float rounding.
"""
from __future__ import annotations

import functools
import hashlib
import math
from typing import Any, NamedTuple

import numpy as np

from ..errors import ConfigError, UnsupportedInputError, require

__all__ = [
    "INTERPOLATIONS",
    "isotropic_gaussian_kernel",
    "anisotropic_gaussian_kernel",
    "bivariate_kernel",
    "sinc_kernel",
    "blur",
    "imresize",
    "resize",
    "random_interpolation",
    "add_gaussian_noise",
    "add_correlated_gaussian_noise",
    "add_poisson_noise",
    "jpeg",
    "usm_sharpen",
    "shift_pixel",
    "modcrop",
    "round_to_uint8_levels",
    "DegradedPair",
    "SCALES",
    "prepare_hr",
    "rng_from_key",
]

#: cv2 interpolation flags that BSRGAN draws from: 1 INTER_LINEAR, 2 INTER_CUBIC, 3 INTER_AREA.
INTERPOLATIONS = (1, 2, 3)

_LUMA_BT601 = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@functools.lru_cache(maxsize=1)
def _cv2() -> Any:
    return require("cv2", extra="train", purpose="the degradation pipelines")


# --------------------------------------------------------------------------------------------------
# kernels (all float64, odd square size, sum to 1, point-symmetric: k[i, j] == k[-1-i, -1-j])
# --------------------------------------------------------------------------------------------------


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred integer coordinates (x, y) of a ``size x size`` kernel, each ``(size, size)`` float64."""
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    return np.meshgrid(ax, ax)  # xx varies along columns, yy along rows


def _delta(size: int) -> np.ndarray:
    k = np.zeros((size, size), dtype=np.float64)
    k[size // 2, size // 2] = 1.0
    return k


def _check_size(size: int) -> None:
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd integer, got {size}")


def isotropic_gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, sigma)``: ``(size, size)`` float64 summing to 1.

    Values below ``eps * max`` are zeroed as in MATLAB. ``sigma <= 1e-6`` gives a delta (BSRGAN draws
    sigma from ``U[0, ...)``, whose lower end would otherwise divide by zero).
    """
    _check_size(size)
    if sigma <= 1e-6:
        return _delta(size)
    xx, yy = _grid(size)
    k = np.exp(-(xx * xx + yy * yy) / (2.0 * sigma * sigma))
    k[k < np.finfo(np.float64).eps * k.max()] = 0.0
    return k / k.sum()


def anisotropic_gaussian_kernel(size: int, theta: float, l1: float, l2: float) -> np.ndarray:
    """BSRGAN's anisotropic Gaussian: covariance with eigenvalues ``l1, l2`` (*variances*, in px^2).

    The first eigenvector points at angle ``theta`` (radians). Eigenvalues are floored at 1e-6 so that
    a draw at the open lower end of ``U[0, 4 + sf)`` stays finite (it then acts as a delta along that
    axis). Returns ``(size, size)`` float64 summing to 1.
    """
    _check_size(size)
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    cov = rot @ np.diag([max(l1, 1e-6), max(l2, 1e-6)]) @ rot.T
    return _gaussian_from_cov(size, cov, beta=None, kind="gaussian")


def _gaussian_from_cov(size: int, cov: np.ndarray, *, beta: float | None, kind: str) -> np.ndarray:
    xx, yy = _grid(size)
    inv = np.linalg.inv(cov)
    quad = inv[0, 0] * xx * xx + (inv[0, 1] + inv[1, 0]) * xx * yy + inv[1, 1] * yy * yy
    if kind == "gaussian":
        k = np.exp(-0.5 * quad)
    elif kind == "generalized":
        k = np.exp(-0.5 * np.power(quad, beta))
    elif kind == "plateau":
        k = 1.0 / (np.power(quad, beta) + 1.0)
    else:
        raise ValueError(f"unknown kernel kind {kind!r}")
    total = k.sum()
    if not np.isfinite(total) or total <= 0:  # all mass underflowed: the kernel is a delta
        return _delta(size)
    return k / total


def bivariate_kernel(
    size: int,
    sigma_x: float,
    sigma_y: float,
    theta: float,
    *,
    kind: str = "gaussian",
    beta: float = 1.0,
) -> np.ndarray:
    """Real-ESRGAN / BasicSR bivariate kernel with covariance ``R diag(sx^2, sy^2) R^T``.

    ``kind``: ``"gaussian"`` exp(-q/2); ``"generalized"`` exp(-q^beta / 2);
    ``"plateau"`` 1 / (1 + q^beta), with ``q = x^T S^-1 x``. Isotropic = ``sigma_x == sigma_y``,
    ``theta = 0``. Returns ``(size, size)`` float64 summing to 1.
    """
    _check_size(size)
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    cov = rot @ np.diag([sigma_x * sigma_x, sigma_y * sigma_y]) @ rot.T
    return _gaussian_from_cov(size, cov, beta=beta, kind=kind)


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """Circular low-pass (2-D sinc / Airy) kernel ``wc J1(wc r) / (2 pi r)``, normalised to sum 1.

    ``cutoff`` is omega_c in radians per pixel (pi = no filtering). The centre takes the limit
    ``wc^2 / (4 pi)``. Real-ESRGAN zero-pads these kernels to 21x21; that does not change the
    convolution, so no padding is done here. Returns ``(size, size)`` float64.
    """
    _check_size(size)
    special = require("scipy.special", extra="train", purpose="the sinc kernel (Bessel J1)")
    xx, yy = _grid(size)
    r = np.sqrt(xx * xx + yy * yy)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = cutoff * special.j1(cutoff * r) / (2.0 * np.pi * r)
    k[size // 2, size // 2] = cutoff * cutoff / (4.0 * np.pi)
    return k / k.sum()


# --------------------------------------------------------------------------------------------------
# filtering and resizing
# --------------------------------------------------------------------------------------------------


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """True 2-D convolution of every channel with ``kernel`` (reflect-101 borders, see module doc).

    cv2.filter2D computes a correlation, so the kernel is flipped first; this matters only for the
    shifted (asymmetric) kernel of BSRGAN's nearest-downsampling branch. Output: same shape, float32.
    """
    cv2 = _cv2()
    flipped = np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float32)
    out = cv2.filter2D(np.ascontiguousarray(img, dtype=np.float32), -1, flipped,
                       borderType=cv2.BORDER_REFLECT_101)
    return out.reshape(img.shape)  # filter2D drops a trailing channel axis of size 1


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's imresize 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


@functools.lru_cache(maxsize=64)
def _imresize_matrix(in_len: int, out_len: int, scale: float, antialias: bool) -> np.ndarray:
    """Dense ``(out_len, in_len)`` float32 weights of MATLAB's imresize along one axis."""
    width = 4.0
    shrink = scale < 1 and antialias
    if shrink:  # stretch the kernel to low-pass before subsampling
        width /= scale
    x = np.arange(1, out_len + 1, dtype=np.float64)  # 1-based output coordinates, as in MATLAB
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)  # maps pixel centres onto pixel centres
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    dist = u[:, None] - idx
    w = scale * _cubic(dist * scale) if shrink else _cubic(dist)
    w /= w.sum(axis=1, keepdims=True)
    # MATLAB pads 'symmetric' (half-sample: index -1 -> 0, n -> n-1); the modulo form also covers
    # inputs shorter than the kernel.
    j = (idx - 1).astype(np.int64) % (2 * in_len)
    j = np.where(j >= in_len, 2 * in_len - 1 - j, j)
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(mat, (np.repeat(np.arange(out_len), taps), j.ravel()), w.ravel())
    return mat.astype(np.float32)


def imresize(img: np.ndarray, scale: float, *, antialias: bool = True) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` (BSRGAN's ``imresize_np``), no rounding or clipping.

    ``img``: ``(H, W)`` or ``(H, W, C)`` float. Output: ``(ceil(H*scale), ceil(W*scale)[, C])``
    float32. With ``antialias`` and ``scale < 1`` the cubic kernel is widened by ``1/scale``.
    """
    h, w = img.shape[:2]
    out_h, out_w = math.ceil(h * scale), math.ceil(w * scale)
    mh = _imresize_matrix(h, out_h, float(scale), antialias)
    mw = _imresize_matrix(w, out_w, float(scale), antialias)
    x = np.asarray(img, dtype=np.float32)
    out = np.tensordot(mh, x, axes=(1, 0))  # (out_h, W, C)
    out = np.tensordot(mw, out, axes=(1, 1))  # (out_w, out_h, C)
    return np.ascontiguousarray(np.swapaxes(out, 0, 1))


def resize(img: np.ndarray, height: int, width: int, interpolation: int) -> np.ndarray:
    """cv2.resize to ``(height, width)`` (each clamped to >= 1); keeps HWC shape for 1 channel."""
    cv2 = _cv2()
    height, width = max(1, int(height)), max(1, int(width))
    out = cv2.resize(np.ascontiguousarray(img, dtype=np.float32), (width, height),
                     interpolation=interpolation)
    return out.reshape(height, width, *img.shape[2:])


def random_interpolation(rng: np.random.Generator) -> int:
    """One of cv2 INTER_LINEAR / INTER_CUBIC / INTER_AREA, uniformly (BSRGAN ``random.choice([1,2,3])``)."""
    return INTERPOLATIONS[int(rng.integers(len(INTERPOLATIONS)))]


# --------------------------------------------------------------------------------------------------
# noise (the caller draws the level / mode; these only apply it)
# --------------------------------------------------------------------------------------------------


def add_gaussian_noise(
    img: np.ndarray,
    sigma: float,
    rng: np.random.Generator,
    *,
    gray: bool = False,
    multiplicative: bool = False,
) -> np.ndarray:
    """``img + n`` (or ``img + img * n`` for speckle) with n ~ N(0, sigma^2), sigma on the [0, 1] scale.

    ``gray``: one noise map shared by all channels. Not clipped (the caller clips).
    """
    shape = (*img.shape[:2], 1) if gray else img.shape
    noise = (rng.standard_normal(shape) * sigma).astype(np.float32)
    if multiplicative:
        noise = img * noise
    return (img + noise).astype(np.float32)


def add_correlated_gaussian_noise(
    img: np.ndarray,
    cov: np.ndarray,
    rng: np.random.Generator,
    *,
    multiplicative: bool = False,
) -> np.ndarray:
    """Add channel-correlated noise n ~ N(0, cov) per pixel (``cov``: 3x3). Not clipped.

    BSRGAN's ``|L^2 U^T D U|`` (element-wise abs) need not be positive semi-definite; numpy's
    ``multivariate_normal`` then warns and factors it by SVD. Here negative eigenvalues are clipped to
    0 (the nearest PSD matrix), and the square-root factor comes from ``eigh``.
    """
    evals, evecs = np.linalg.eigh((cov + cov.T) / 2.0)
    factor = evecs * np.sqrt(np.clip(evals, 0.0, None))[None, :]  # factor @ factor.T == PSD(cov)
    z = rng.standard_normal((*img.shape[:2], 3))
    noise = (z @ factor.T).astype(np.float32)
    if multiplicative:
        noise = img * noise
    return (img + noise).astype(np.float32)


def add_poisson_noise(
    img: np.ndarray,
    vals: float | None,
    rng: np.random.Generator,
    *,
    gray: bool = False,
    strength: float = 1.0,
) -> np.ndarray:
    """Shot noise: ``img + strength * (Poisson(q * vals) / vals - q)``, ``q`` = img rounded to 8 bits.

    ``gray``: ``q`` is the BT.601 luma (0.299, 0.587, 0.114) rounded to 8 bits and the one noise map
    is added to every channel. ``vals=None`` is BasicSR's rule ``2 ** ceil(log2(#distinct levels of
    q))``; BSRGAN passes ``10 ** U[2, 4]``. BSRGAN's colour mode returns the Poisson sample itself,
    which equals this when ``img`` is already on the 8-bit grid (the pipeline rounds first).
    Not clipped.
    """
    q = round_to_uint8_levels(img @ _LUMA_BT601)[..., None] if gray else round_to_uint8_levels(img)
    if vals is None:
        levels = np.unique(np.round(q * 255.0).astype(np.uint8)).size
        vals = float(2 ** math.ceil(math.log2(levels)))
    noise = rng.poisson(q.astype(np.float64) * vals) / vals - q
    return (img + strength * noise).astype(np.float32)


def round_to_uint8_levels(img: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] and snap to the 256 levels of 8-bit: ``round(255 x) / 255`` as float32."""
    return (np.clip(np.round(img * 255.0), 0, 255) / 255.0).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# compression, sharpening, geometry
# --------------------------------------------------------------------------------------------------


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip with cv2 (libjpeg, 4:2:0) at integer ``quality`` in [0, 100].

    The image is clipped and rounded to uint8 and encoded in BGR order (so libjpeg's YCbCr transform
    sees the right channels). Returns float32 RGB in [0, 1] on the 8-bit grid.
    """
    cv2 = _cv2()
    u8 = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:  # pragma: no cover - libjpeg does not fail on a valid uint8 image
        raise RuntimeError("cv2.imencode('.jpg') failed")
    dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return (dec[..., ::-1].astype(np.float32) / 255.0).copy()


def usm_sharpen(img: np.ndarray, *, weight: float = 0.5, radius: int = 50,
                threshold: float = 10.0) -> np.ndarray:
    """Unsharp masking as in Real-ESRGAN / BSRGAN ``add_sharpening`` (defaults 0.5, 50, 10).

    ``sharp = clip(img + weight * (img - G(img)), 0, 1)`` blended in where ``|img - G(img)| * 255 >
    threshold`` (mask softened by the same Gaussian). ``G``: cv2.GaussianBlur with an odd window
    (50 -> 51) and the sigma cv2 derives from it. Output: float32, same shape.
    """
    cv2 = _cv2()
    if radius % 2 == 0:
        radius += 1
    x = np.ascontiguousarray(img, dtype=np.float32)
    residual = x - cv2.GaussianBlur(x, (radius, radius), 0)
    mask = (np.abs(residual) * 255.0 > threshold).astype(np.float32)
    soft = cv2.GaussianBlur(mask, (radius, radius), 0).reshape(x.shape)
    sharp = np.clip(x + weight * residual, 0.0, 1.0)
    return (soft * sharp + (1.0 - soft) * x).astype(np.float32)


def _shift_matrix(n: int, shift: float) -> np.ndarray:
    """Rows of linear-interpolation weights sampling positions ``clip(i + shift, 0, n-1)``."""
    pos = np.clip(np.arange(n, dtype=np.float64) + shift, 0.0, n - 1)
    i0 = np.floor(pos).astype(np.int64)
    frac = pos - i0
    i1 = np.minimum(i0 + 1, n - 1)
    mat = np.zeros((n, n), dtype=np.float64)
    np.add.at(mat, (np.arange(n), i0), 1.0 - frac)
    np.add.at(mat, (np.arange(n), i1), frac)
    return mat


def shift_pixel(x: np.ndarray, shift: float) -> np.ndarray:
    """Resample ``x`` at ``(row + shift, col + shift)`` with bilinear interpolation, clamped at edges.

    Replaces BSRGAN's ``shift_pixel(x, sf)`` (``shift = (sf - 1) / 2``, upper-left), which used
    scipy's removed ``interp2d`` (linear on a grid == bilinear). ``x``: ``(H, W)`` or ``(H, W, C)``;
    output has the same shape and float64 (2-D) / float32 (3-D) dtype.
    """
    mh = _shift_matrix(x.shape[0], shift)
    mw = _shift_matrix(x.shape[1], shift)
    if x.ndim == 2:
        return mh @ x @ mw.T
    out = np.tensordot(mh, x, axes=(1, 0))
    out = np.tensordot(mw, out, axes=(1, 1))
    return np.ascontiguousarray(np.swapaxes(out, 0, 1), dtype=np.float32)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom / right so that height and width are multiples of ``scale`` (a view)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale, ...]


# --------------------------------------------------------------------------------------------------
# pipeline plumbing
# --------------------------------------------------------------------------------------------------


class DegradedPair(NamedTuple):
    """What every pipeline returns.

    ``lr``: ``(H // scale, W // scale, 3)`` float32 in [0, 1]. ``hr``: the input mod-cropped to
    ``(H - H % scale, W - W % scale, 3)``, float32 in [0, 1], never sharpened -- the image the LR is
    aligned with, to be saved as the ground truth.
    """

    lr: np.ndarray
    hr: np.ndarray


SCALES = (2, 4)


def prepare_hr(hr: np.ndarray, scale: int) -> np.ndarray:
    """Validate a pipeline input and return it mod-cropped, clipped to [0, 1], as a float32 copy."""
    if scale not in SCALES:
        raise ConfigError(f"scale must be one of {SCALES}, got {scale!r}")
    if not isinstance(hr, np.ndarray) or hr.ndim != 3 or hr.shape[2] != 3:
        shape = getattr(hr, "shape", type(hr).__name__)
        raise UnsupportedInputError(f"expected an (H, W, 3) RGB array, got {shape}")
    if not np.issubdtype(hr.dtype, np.floating):
        raise UnsupportedInputError(
            f"expected a float image in [0, 1], got dtype {hr.dtype} (divide uint8 by 255, uint16 by 65535)"
        )
    if hr.shape[0] < scale or hr.shape[1] < scale:
        raise UnsupportedInputError(
            f"image of {hr.shape[0]}x{hr.shape[1]} px is smaller than the scale factor {scale}"
        )
    out = np.clip(modcrop(hr, scale), 0.0, 1.0).astype(np.float32)  # copies
    if not np.isfinite(out).all():
        raise UnsupportedInputError("image contains NaN or infinite values")
    return out


def rng_from_key(seed: int, key: str) -> np.random.Generator:
    """A generator seeded by ``(seed, key)`` through SHA-256, independent of any other key.

    The CLI uses the image's relative path as ``key``, so an image's degradation depends neither on
    the file order nor on which other files exist.
    """
    digest = hashlib.sha256(f"{int(seed)}\0{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))
