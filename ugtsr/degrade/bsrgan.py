"""BSRGAN degradation models (Zhang et al., "Designing a Practical Degradation Model for Deep Blind Image
Super-Resolution", ICCV 2021, https://arxiv.org/abs/2103.14006), as FeMaSR uses them.

Re-implemented from BSRGAN's ``utils/utils_blindsr.py`` (read from
cszn/BSRGAN ``utils/utils_blindsr.py`` and FeMaSR's copy ``basicsr/data/bsrgan_util.py``), with the
parameter ranges unchanged. Differences from the reference code, all deliberate:

- randomness comes from the ``np.random.Generator`` argument instead of the global ``random`` /
  ``np.random`` state, so a seed reproduces an image byte for byte (the draws themselves differ from
  the reference's, so the same seed does not give the reference's image);
- no final random crop: the whole image is degraded (FeMaSR's ``use_crop=False`` / ``crop=False``,
  which is how its training and test LR were generated); crop afterwards if you need patches;
- the camera-ISP step is inactive, as in FeMaSR and in the public BSRGAN code, which never pass an
  ISP model; no random number is drawn for it;
- ``shift_pixel`` uses our bilinear resampler instead of scipy's removed ``interp2d``; blurs use
  cv2.filter2D with reflect-101 borders (== scipy ``mode='mirror'``), see ``_ops``;
- the channel-correlated noise factors a possibly non-PSD covariance by clipped eigenvalues.
"""
from __future__ import annotations

import math

import numpy as np

from ._ops import (
    DegradedPair,
    add_correlated_gaussian_noise,
    add_gaussian_noise,
    add_poisson_noise,
    anisotropic_gaussian_kernel,
    blur,
    imresize,
    isotropic_gaussian_kernel,
    jpeg,
    prepare_hr,
    random_interpolation,
    resize,
    round_to_uint8_levels,
    shift_pixel,
    usm_sharpen,
)

__all__ = ["degradation_bsrgan", "degradation_bsrgan_plus"]

# degradation_bsrgan's fixed probabilities (utils_blindsr.py)
_SCALE2_PROB = 0.25  # sf=4 only: halve first, then degrade with sf=2
_JPEG_PROB = 0.9  # the in-loop JPEG; the final JPEG is always applied
# degradation_bsrgan_plus
_SHUFFLE_PROB = 0.5
_POISSON_PROB = 0.1
_SPECKLE_PROB = 0.1
_NOISE_LEVELS = (2, 25)  # integer noise level in 0..255 units, inclusive
_JPEG_QUALITY = (30, 95)  # inclusive


def _clip(img: np.ndarray) -> np.ndarray:
    return np.clip(img, 0.0, 1.0)


def _add_blur(img: np.ndarray, sf: int, rng: np.random.Generator) -> np.ndarray:
    """``add_blur``: 50 % anisotropic (eigen-variances U[0, 4+sf), angle U[0, pi)), 50 % isotropic
    (sigma U[0, 2+0.2 sf)); kernel size 2*randint(2, 11)+3 (odd 7..25)."""
    if rng.random() < 0.5:
        l1 = (4.0 + sf) * rng.random()
        l2 = (4.0 + sf) * rng.random()
        size = 2 * int(rng.integers(2, 12)) + 3
        kernel = anisotropic_gaussian_kernel(size, rng.random() * math.pi, l1, l2)
    else:
        size = 2 * int(rng.integers(2, 12)) + 3
        kernel = isotropic_gaussian_kernel(size, (2.0 + 0.2 * sf) * rng.random())
    return blur(img, kernel)


def _add_resize(img: np.ndarray, sf: int, rng: np.random.Generator) -> np.ndarray:
    """``add_resize``: 20 % up by U[1, 2], 70 % down by U[0.5/sf, 1], 10 % keep; random cv2 interp."""
    r = rng.random()
    if r > 0.8:
        factor = rng.uniform(1.0, 2.0)
    elif r < 0.7:
        factor = rng.uniform(0.5 / sf, 1.0)
    else:
        factor = 1.0
    h, w = img.shape[:2]
    return _clip(resize(img, int(factor * h), int(factor * w), random_interpolation(rng)))


def _correlated_cov(rng: np.random.Generator) -> np.ndarray:
    """``|L^2 U^T D U|`` with L = 25/255 (the upper noise bound), D = diag(U[0,1)^3), U = orth(rand 3x3)."""
    level = _NOISE_LEVELS[1] / 255.0
    d = np.diag(rng.random(3))
    u = np.linalg.svd(rng.random((3, 3)))[0]  # scipy.linalg.orth of a full-rank 3x3
    return np.abs(level * level * (u.T @ d @ u))


def _add_gaussian_noise(img: np.ndarray, rng: np.random.Generator, *, speckle: bool = False) -> np.ndarray:
    """``add_Gaussian_noise`` / ``add_speckle_noise``: level randint(2, 25)/255; 40 % colour,
    40 % grey, 20 % channel-correlated. Speckle multiplies the noise by the (clipped) image."""
    if speckle:
        img = _clip(img)
    sigma = int(rng.integers(_NOISE_LEVELS[0], _NOISE_LEVELS[1] + 1)) / 255.0
    r = rng.random()
    if r > 0.6:
        img = add_gaussian_noise(img, sigma, rng, multiplicative=speckle)
    elif r < 0.4:
        img = add_gaussian_noise(img, sigma, rng, gray=True, multiplicative=speckle)
    else:
        img = add_correlated_gaussian_noise(img, _correlated_cov(rng), rng, multiplicative=speckle)
    return _clip(img)


def _add_poisson_noise(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``add_Poisson_noise``: round to 8 bits; vals = 10^U[2, 4]; 50 % per channel, 50 % grey (luma)."""
    img = round_to_uint8_levels(img)
    vals = 10.0 ** (2.0 * rng.random() + 2.0)
    gray = rng.random() >= 0.5
    return _clip(add_poisson_noise(img, vals, rng, gray=gray))


def _add_jpeg(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``add_JPEG_noise``: quality randint(30, 95) inclusive."""
    return jpeg(img, int(rng.integers(_JPEG_QUALITY[0], _JPEG_QUALITY[1] + 1)))


def degradation_bsrgan(hr: np.ndarray, *, scale: int, rng: np.random.Generator) -> DegradedPair:
    """BSRGAN's shuffled degradation (``degradation_bsrgan``; FeMaSR's training LR, ``use_crop=False``).

    Args:
        hr: ``(H, W, 3)`` float RGB in [0, 1]; mod-cropped to a multiple of ``scale`` first.
        scale: 2 or 4.
        rng: the only source of randomness.

    Returns:
        :class:`DegradedPair`: ``lr`` ``(H//scale, W//scale, 3)`` float32 in [0, 1] (8-bit levels:
        the last step is a JPEG), ``hr`` the mod-cropped input.

    Steps and ranges (``utils_blindsr.py``; sf = ``scale``):

    1. sf = 4 only, p = 0.25: halve (50 % cv2.resize with interp from {linear, cubic, area}, 50 %
       MATLAB antialiased bicubic), clip, and continue with sf = 2.
    2. A random permutation of 7 ops, with op 2 swapped before op 3 if needed:
       - op 0, op 1: blur, 50 % anisotropic Gaussian (eigen-variances U[0, 4+sf), angle U[0, pi)),
         50 % isotropic (sigma U[0, 2+0.2 sf)); size 2*randint(2, 11)+3 = 7..25;
       - op 2: records the size (a, b); 75 % cv2.resize by 1/sf1, sf1 ~ U[1, 2 sf], random interp;
         25 % 25x25 isotropic Gaussian sigma U[0.1, 0.6 sf] shifted (sf-1)/2 px to the upper-left,
         then nearest subsampling ``[::sf, ::sf]``; clip;
       - op 3: cv2.resize to (a/sf, b/sf), random interp, clip (total factor exactly ``scale``);
       - op 4: Gaussian noise, level randint(2, 25)/255: 40 % colour, 40 % grey, 20 %
         channel-correlated (covariance |L^2 U^T D U|, L = 25/255); clip;
       - op 5: JPEG, quality randint(30, 95), with p = 0.9;
       - op 6: camera ISP noise -- inactive (no ISP model, as in FeMaSR).
    3. A final JPEG, quality randint(30, 95), always.
    """
    hr = prepare_hr(hr, scale)
    img = hr.copy()
    sf = scale
    if sf == 4 and rng.random() < _SCALE2_PROB:
        if rng.random() < 0.5:
            img = resize(img, img.shape[0] // 2, img.shape[1] // 2, random_interpolation(rng))
        else:
            img = imresize(img, 0.5)
        img = _clip(img)
        sf = 2

    order = [int(i) for i in rng.permutation(7)]
    i2, i3 = order.index(2), order.index(3)
    if i2 > i3:  # downsample2 must precede downsample3, which resizes relative to op 2's input size
        order[i2], order[i3] = order[i3], order[i2]

    size_at_op2 = img.shape[:2]
    for op in order:
        if op in (0, 1):
            img = _add_blur(img, sf, rng)
        elif op == 2:
            size_at_op2 = img.shape[:2]
            if rng.random() < 0.75:
                sf1 = rng.uniform(1.0, 2.0 * sf)
                h, w = img.shape[:2]
                img = resize(img, int(h / sf1), int(w / sf1), random_interpolation(rng))
            else:
                kernel = isotropic_gaussian_kernel(25, rng.uniform(0.1, 0.6 * sf))
                kernel = shift_pixel(kernel, (sf - 1) / 2.0)
                kernel /= kernel.sum()
                img = np.ascontiguousarray(blur(img, kernel)[0::sf, 0::sf])
            img = _clip(img)
        elif op == 3:
            h, w = size_at_op2
            img = _clip(resize(img, h // sf, w // sf, random_interpolation(rng)))
        elif op == 4:
            img = _add_gaussian_noise(img, rng)
        elif op == 5:
            if rng.random() < _JPEG_PROB:
                img = _add_jpeg(img, rng)
        # op 6: camera ISP -- inactive (see module docstring)

    img = _add_jpeg(img, rng)
    return DegradedPair(lr=img, hr=hr)


def degradation_bsrgan_plus(hr: np.ndarray, *, scale: int, rng: np.random.Generator) -> DegradedPair:
    """BSRGAN-plus (``degradation_bsrgan_plus``; FeMaSR's synthetic *test* LR, ``crop=False``).

    Args:
        hr: ``(H, W, 3)`` float RGB in [0, 1]; mod-cropped to a multiple of ``scale`` first.
        scale: 2 or 4.
        rng: the only source of randomness.

    Returns:
        :class:`DegradedPair`: ``lr`` ``(H//scale, W//scale, 3)`` float32 in [0, 1] (8-bit levels),
        ``hr`` the mod-cropped **original, unsharpened** input. The reference returns the
        USM-sharpened image as ``hq``; it is unverified which of the two FeMaSR saved as test GT
        (its code is not released), and we choose the original so the metrics compare against the real photo.

    Steps and ranges (``utils_blindsr.py``, defaults ``shuffle_prob=0.5, use_sharp=True``):

    1. USM-sharpen the HR (weight 0.5, radius 50 -> 51, threshold 10/255); degrade the sharpened image.
    2. 13 ops. With p = 0.5 a full random permutation; otherwise the order 0..12 with ops 2..5 and
       ops 9..12 each shuffled among themselves:
       - op 0, 7: blur as in :func:`degradation_bsrgan` (eigen-variances U[0, 4+sf), sigma U[0, 2+0.2 sf));
       - op 1, 8: resize, 20 % up by U[1, 2], 70 % down by U[0.5/sf, 1], 10 % keep; random interp
         from {linear, cubic, area}; clip;
       - op 2, 9: Gaussian noise, level randint(2, 25)/255, 40 % colour / 40 % grey / 20 % correlated;
       - op 3, 10: with p = 0.1, Poisson noise: round to 8 bits, vals = 10^U[2, 4], 50 % per channel,
         50 % grey (BT.601 luma) noise added to all channels; clip;
       - op 4, 11: with p = 0.1, speckle noise (img += img * n, n as the Gaussian modes);
       - op 5, 12: camera ISP -- inactive (no ISP model, as in FeMaSR);
       - op 6: JPEG, quality randint(30, 95).
    3. cv2.resize to (H/sf, W/sf) with a random interp, then a final JPEG, quality randint(30, 95).
    """
    hr = prepare_hr(hr, scale)
    img = usm_sharpen(hr)
    sf = scale
    if rng.random() < _SHUFFLE_PROB:
        order = [int(i) for i in rng.permutation(13)]
    else:
        order = list(range(13))
        order[2:6] = [int(i) for i in rng.permutation([2, 3, 4, 5])]
        order[9:13] = [int(i) for i in rng.permutation([9, 10, 11, 12])]

    for op in order:
        if op in (0, 7):
            img = _add_blur(img, sf, rng)
        elif op in (1, 8):
            img = _add_resize(img, sf, rng)
        elif op in (2, 9):
            img = _add_gaussian_noise(img, rng)
        elif op in (3, 10):
            if rng.random() < _POISSON_PROB:
                img = _add_poisson_noise(img, rng)
        elif op in (4, 11):
            if rng.random() < _SPECKLE_PROB:
                img = _add_gaussian_noise(img, rng, speckle=True)
        elif op == 6:
            img = _add_jpeg(img, rng)
        # op 5, 12: camera ISP -- inactive (see module docstring)

    h, w = hr.shape[:2]
    img = resize(img, h // sf, w // sf, random_interpolation(rng))
    img = _add_jpeg(img, rng)
    return DegradedPair(lr=img, hr=hr)
