"""Real-ESRGAN's second-order degradation (Wang et al., "Real-ESRGAN: Training Real-World Blind
Super-Resolution with Pure Synthetic Data", ICCVW 2021, https://arxiv.org/abs/2107.10833).

Re-implemented per image in numpy / cv2 from Real-ESRGAN's x4plus training options and BasicSR's ``degradations.py`` (read from
Real-ESRGAN ``options/train_realesrgan_x4plus.yml``, ``realesrgan/data/realesrgan_dataset.py``,
``realesrgan/models/realesrgan_model.py`` and BasicSR ``basicsr/data/degradations.py``). The reference
runs the pipeline batched on the GPU in torch; the per-image CPU port differs in these documented ways:

- resizes use cv2 (INTER_AREA / INTER_LINEAR / INTER_CUBIC) for torch's ``area`` / ``bilinear`` /
  ``bicubic`` ``F.interpolate``. Bilinear and bicubic (a = -0.75, no antialias) match; ``area`` matches
  for integer factors, and for fractional ones cv2 weights partial pixels where torch's adaptive
  average pooling uses whole-pixel windows (upscaling with ``area`` is near-nearest in torch and
  bilinear-like in cv2);
- JPEG is a real libjpeg round trip through cv2 at ``round(quality)`` instead of DiffJPEG at a float
  quality (so it also quantises to 8 bits);
- the Poisson grey luma uses BT.601 (0.299, 0.587, 0.114) where torchvision uses 0.2989;
- there is no training-pair queue (``queue_size`` 180 mixes degradations across batches; that is a
  batching detail, not part of the degradation);
- randomness comes from the ``np.random.Generator`` argument.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ._ops import (
    DegradedPair,
    add_gaussian_noise,
    add_poisson_noise,
    bivariate_kernel,
    blur,
    jpeg,
    prepare_hr,
    resize,
    round_to_uint8_levels,
    sinc_kernel,
    usm_sharpen,
)

__all__ = ["RealESRGANOptions", "degradation_realesrgan"]

_KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
_RESIZE_MODES = (3, 1, 2)  # cv2 INTER_AREA, INTER_LINEAR, INTER_CUBIC for torch area/bilinear/bicubic


@dataclass(frozen=True)
class RealESRGANOptions:
    """The degradation settings of ``train_realesrgan_x4plus.yml`` (x2plus: identical values).

    Ranges are (low, high) for uniform draws; ``*_prob`` are probabilities; the ``*2`` fields are the
    second stage. Noise sigmas are on the 0..255 scale.
    """

    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # order of _KERNEL_TYPES
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)

    second_blur_prob: float = 0.8
    kernel_probs2: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob2: float = 0.1
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    betag_range2: tuple[float, float] = (0.5, 4.0)
    betap_range2: tuple[float, float] = (1.0, 2.0)
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range2: tuple[float, float] = (30.0, 95.0)

    final_sinc_prob: float = 0.8
    #: degrade the USM-sharpened HR, as ``RealESRGANModel.feed_data`` does (``gt_usm``)
    sharpen_input: bool = True

    def __post_init__(self) -> None:
        for name in ("kernel_probs", "kernel_probs2"):
            probs = getattr(self, name)
            if len(probs) != len(_KERNEL_TYPES) or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
                raise ConfigError(f"{name} must be {len(_KERNEL_TYPES)} probabilities summing to 1")
        for name in ("resize_prob", "resize_prob2"):
            probs = getattr(self, name)
            if len(probs) != 3 or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
                raise ConfigError(f"{name} must be 3 probabilities (up, down, keep) summing to 1")
        if any(k < 1 or k % 2 == 0 for k in self.kernel_sizes):
            raise ConfigError(f"kernel_sizes must be odd and positive, got {self.kernel_sizes}")


def _draw_beta(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    """Half the time U[lo, 1], half the time U[1, hi] (BasicSR's generalized / plateau kernels)."""
    if rng.random() < 0.5:
        return float(rng.uniform(lo_hi[0], 1.0))
    return float(rng.uniform(1.0, lo_hi[1]))


def _random_kernel(
    rng: np.random.Generator,
    opt: RealESRGANOptions,
    *,
    probs: tuple[float, ...],
    sinc_prob: float,
    sigma: tuple[float, float],
    betag: tuple[float, float],
    betap: tuple[float, float],
) -> np.ndarray:
    """One blur kernel: size from ``kernel_sizes``; with ``sinc_prob`` a sinc (omega_c U[pi/3, pi] for
    size < 13, else U[pi/5, pi]); otherwise a mixed Gaussian-family kernel (``random_mixed_kernels``)."""
    size = int(opt.kernel_sizes[int(rng.integers(len(opt.kernel_sizes)))])
    if rng.random() < sinc_prob:
        low = math.pi / 3 if size < 13 else math.pi / 5
        return sinc_kernel(size, rng.uniform(low, math.pi))
    kind = _KERNEL_TYPES[int(rng.choice(len(_KERNEL_TYPES), p=np.asarray(probs)))]
    sigma_x = float(rng.uniform(*sigma))
    if kind.endswith("aniso"):
        sigma_y = float(rng.uniform(*sigma))
        theta = float(rng.uniform(-math.pi, math.pi))
    else:
        sigma_y, theta = sigma_x, 0.0
    if kind.startswith("generalized"):
        return bivariate_kernel(size, sigma_x, sigma_y, theta, kind="generalized", beta=_draw_beta(rng, betag))
    if kind.startswith("plateau"):
        return bivariate_kernel(size, sigma_x, sigma_y, theta, kind="plateau", beta=_draw_beta(rng, betap))
    return bivariate_kernel(size, sigma_x, sigma_y, theta)


def _random_factor(rng: np.random.Generator, probs: tuple[float, ...], lo_hi: tuple[float, float]) -> float:
    updown = int(rng.choice(3, p=np.asarray(probs)))
    if updown == 0:
        return float(rng.uniform(1.0, lo_hi[1]))
    if updown == 1:
        return float(rng.uniform(lo_hi[0], 1.0))
    return 1.0


def _random_mode(rng: np.random.Generator) -> int:
    return _RESIZE_MODES[int(rng.integers(len(_RESIZE_MODES)))]


def _random_noise(
    img: np.ndarray,
    rng: np.random.Generator,
    *,
    gaussian_prob: float,
    sigma_range: tuple[float, float],
    poisson_range: tuple[float, float],
    gray_prob: float,
) -> np.ndarray:
    """Gaussian (sigma U[...] / 255) with ``gaussian_prob``, else Poisson scaled by U[...]; either is
    grey (one map for all channels) with ``gray_prob``; clipped, not rounded."""
    if rng.random() < gaussian_prob:
        sigma = float(rng.uniform(*sigma_range)) / 255.0
        img = add_gaussian_noise(img, sigma, rng, gray=bool(rng.random() < gray_prob))
    else:
        strength = float(rng.uniform(*poisson_range))
        img = add_poisson_noise(img, None, rng, gray=bool(rng.random() < gray_prob), strength=strength)
    return np.clip(img, 0.0, 1.0)


def _random_jpeg(img: np.ndarray, rng: np.random.Generator, quality: tuple[float, float]) -> np.ndarray:
    return jpeg(np.clip(img, 0.0, 1.0), int(round(float(rng.uniform(*quality)))))


def degradation_realesrgan(
    hr: np.ndarray,
    *,
    scale: int,
    rng: np.random.Generator,
    options: RealESRGANOptions | None = None,
) -> DegradedPair:
    """Real-ESRGAN's second-order degradation of one image.

    Args:
        hr: ``(H, W, 3)`` float RGB in [0, 1]; mod-cropped to a multiple of ``scale`` first.
        scale: 2 or 4.
        rng: the only source of randomness.
        options: the ranges below; ``None`` = :class:`RealESRGANOptions` defaults (the yml values).

    Returns:
        :class:`DegradedPair`: ``lr`` ``(H//scale, W//scale, 3)`` float32 in [0, 1] on 8-bit levels;
        ``hr`` the mod-cropped, **unsharpened** input. Real-ESRGAN degrades the USM-sharpened GT and
        trains its L1 / perceptual losses against that sharpened GT (its GAN loss against the plain
        GT); whether to sharpen the target is the trainer's choice (``usm_sharpen(pair.hr)``).

    Steps (defaults from ``train_realesrgan_x4plus.yml``):

    0. USM-sharpen the HR (weight 0.5, radius 51, threshold 10/255) and degrade the sharpened image.
    1. Stage 1: blur with kernel 1 -- size from {7, 9, ..., 21}; p 0.1 sinc (omega_c U[pi/3, pi] for
       size < 13, else U[pi/5, pi]); else iso 0.45 / aniso 0.25 / generalized iso 0.12 / aniso 0.03 /
       plateau iso 0.12 / aniso 0.03, sigma U[0.2, 3], angle U[-pi, pi], generalized beta from
       [0.5, 4], plateau beta from [1, 2] (50 % below 1, 50 % above). Resize up/down/keep with
       p (0.2, 0.7, 0.1), up U[1, 1.5], down U[0.15, 1], mode from {area, bilinear, bicubic}.
       Noise: p 0.5 Gaussian sigma U[1, 30]/255, else Poisson scale U[0.05, 3]; grey with p 0.4;
       clip. JPEG quality U[30, 95].
    2. Stage 2: with p 0.8 blur with kernel 2 (as kernel 1 but sigma U[0.2, 1.5]; sinc p 0.1).
       Resize p (0.3, 0.4, 0.3), up U[1, 1.2], down U[0.3, 1], to ``(H/scale, W/scale) * factor``.
       Noise: Gaussian sigma U[1, 25]/255 (p 0.5) else Poisson U[0.05, 2.5]; grey p 0.4; clip.
    3. Final, either order with p 0.5: [resize to ``(H/scale, W/scale)`` (random mode) + final sinc]
       then JPEG U[30, 95], or JPEG then [resize + sinc]. The final sinc (p 0.8) has size from
       {7, ..., 21} and omega_c U[pi/3, pi]; otherwise it is the identity.
    4. Clip and round to 8-bit levels.
    """
    opt = options if options is not None else RealESRGANOptions()
    hr = prepare_hr(hr, scale)
    h, w = hr.shape[:2]
    img = usm_sharpen(hr) if opt.sharpen_input else hr.copy()

    # kernels are drawn up front, as the reference data loader does
    kernel1 = _random_kernel(rng, opt, probs=opt.kernel_probs, sinc_prob=opt.sinc_prob,
                             sigma=opt.blur_sigma, betag=opt.betag_range, betap=opt.betap_range)
    kernel2 = _random_kernel(rng, opt, probs=opt.kernel_probs2, sinc_prob=opt.sinc_prob2,
                             sigma=opt.blur_sigma2, betag=opt.betag_range2, betap=opt.betap_range2)
    final_sinc = None
    if rng.random() < opt.final_sinc_prob:
        size = int(opt.kernel_sizes[int(rng.integers(len(opt.kernel_sizes)))])
        final_sinc = sinc_kernel(size, rng.uniform(math.pi / 3, math.pi))

    # ---- stage 1
    img = blur(img, kernel1)
    factor = _random_factor(rng, opt.resize_prob, opt.resize_range)
    img = resize(img, int(h * factor), int(w * factor), _random_mode(rng))
    img = _random_noise(img, rng, gaussian_prob=opt.gaussian_noise_prob, sigma_range=opt.noise_range,
                        poisson_range=opt.poisson_scale_range, gray_prob=opt.gray_noise_prob)
    img = _random_jpeg(img, rng, opt.jpeg_range)

    # ---- stage 2
    if rng.random() < opt.second_blur_prob:
        img = blur(img, kernel2)
    factor = _random_factor(rng, opt.resize_prob2, opt.resize_range2)
    img = resize(img, int(h / scale * factor), int(w / scale * factor), _random_mode(rng))
    img = _random_noise(img, rng, gaussian_prob=opt.gaussian_noise_prob2, sigma_range=opt.noise_range2,
                        poisson_range=opt.poisson_scale_range2, gray_prob=opt.gray_noise_prob2)

    # ---- final resize + sinc and JPEG, in random order
    def resize_and_sinc(x: np.ndarray) -> np.ndarray:
        x = resize(x, h // scale, w // scale, _random_mode(rng))
        return blur(x, final_sinc) if final_sinc is not None else x

    if rng.random() < 0.5:
        img = resize_and_sinc(img)
        img = _random_jpeg(img, rng, opt.jpeg_range2)
    else:
        img = _random_jpeg(img, rng, opt.jpeg_range2)
        img = resize_and_sinc(img)
    return DegradedPair(lr=round_to_uint8_levels(img), hr=hr)
