"""Two pipelines besides the published ones: the classic bicubic protocol and a training mixture.

* ``bicubic`` -- the "BI" protocol of non-blind SR benchmarks: MATLAB ``imresize(hr, 1/scale,
  'bicubic')`` (antialiased), rounded to 8 bits. No randomness. A clean LR is the mildest case
  a blind model meets; testing on it shows whether the model keeps detail the LR has.
* ``mixed`` -- one of four degradations per image, drawn from ``rng``: BSRGAN (40 %), Real-ESRGAN's
  second-order model (30 %) and a *light* degradation (30 %): a downsampling with a random
  method (MATLAB antialiased bicubic or cv2 area / bilinear / bicubic, uniformly), then with p = 0.5
  Gaussian noise of level U[1, 8]/255 (grey for a third of the images) and with p = 0.5 a JPEG
  round trip at quality randint(60, 95), finally 8-bit rounding. BSRGAN-plus is deliberately
  left out, so that it stays a degradation the mixture has not seen.
* ``classic`` -- the classical degradation model ``y = JPEG((x * k)↓s + n)``: with p = 0.9 a
  bivariate Gaussian blur (sigmas U[0.2, 0.75 s], random angle; s = scale), a downsampling with a
  random method (as ``light``: cv2 area, bilinear, bicubic or MATLAB bicubic), with p = 0.8 Gaussian
  noise of level U[1, 20]/255 (grey for 30 %), with p = 0.8 a JPEG at quality randint(35, 95).
* ``clean`` -- the downsampling alone (random method as ``light``): the nearly clean end.
* ``mixed_wide`` -- the mixture of the second default model: BSRGAN 30 %, Real-ESRGAN 20 %,
  classic 25 %, light 15 %, clean 10 %. BSRGAN-plus is again left out.
"""
from __future__ import annotations

import numpy as np

from ._ops import (
    INTERPOLATIONS,
    DegradedPair,
    add_gaussian_noise,
    bivariate_kernel,
    blur,
    imresize,
    jpeg,
    prepare_hr,
    resize,
    round_to_uint8_levels,
)

__all__ = ["degradation_bicubic", "degradation_light", "degradation_mixed", "MIXTURE", "mixed_choice",
           "degradation_classic", "degradation_clean", "degradation_mixed_wide", "MIXTURE_WIDE", "COMPONENTS",
           "mixture_component"]


def degradation_bicubic(hr: np.ndarray, *, scale: int, rng: np.random.Generator | None = None) -> DegradedPair:
    """MATLAB antialiased bicubic downsampling by ``scale``, clipped and rounded to 8-bit levels.

    ``rng`` is accepted for the pipeline interface and not used.
    """
    hr = prepare_hr(hr, scale)
    lr = imresize(hr, 1.0 / scale)
    return DegradedPair(round_to_uint8_levels(np.clip(lr, 0.0, 1.0)), hr)


def _random_downsample(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """``hr`` downsampled by ``scale`` with a random method: cv2 area / bilinear / bicubic or MATLAB
    antialiased bicubic (uniformly), clipped to [0, 1]."""
    h, w = hr.shape[0] // scale, hr.shape[1] // scale
    method = int(rng.integers(len(INTERPOLATIONS) + 1))
    lr = imresize(hr, 1.0 / scale) if method == len(INTERPOLATIONS) else resize(hr, h, w, INTERPOLATIONS[method])
    return np.clip(lr, 0.0, 1.0)


def degradation_light(hr: np.ndarray, *, scale: int, rng: np.random.Generator) -> DegradedPair:
    """Random downsampling, then with p = 0.5 weak Gaussian noise and with p = 0.5 a mild JPEG."""
    hr = prepare_hr(hr, scale)
    lr = _random_downsample(hr, scale, rng)
    if rng.random() < 0.5:
        level = rng.uniform(1.0, 8.0) / 255.0
        lr = np.clip(add_gaussian_noise(lr, level, rng, gray=bool(rng.random() < 1 / 3)), 0.0, 1.0)
    if rng.random() < 0.5:
        lr = jpeg(lr, int(rng.integers(60, 96)))
    return DegradedPair(round_to_uint8_levels(lr), hr)


#: (name, probability) of the mixture's components, in the order the draw tests them
MIXTURE = (("bsrgan", 0.4), ("realesrgan", 0.3), ("light", 0.3))


def mixed_choice(rng: np.random.Generator, mixture: tuple[tuple[str, float], ...] = MIXTURE) -> str:
    """The component of ``mixture`` (default :data:`MIXTURE`) for one image (one ``rng.random()`` draw)."""
    u = rng.random()
    for name, p in mixture:
        if u < p:
            return name
        u -= p
    return mixture[-1][0]


#: the names a mixture may draw (:func:`mixture_component`)
COMPONENTS = ("bsrgan", "realesrgan", "classic", "light", "clean")


def mixture_component(name: str):
    """The degradation function of a mixture component name (one of :data:`COMPONENTS`)."""
    from .bsrgan import degradation_bsrgan
    from .realesrgan import degradation_realesrgan

    return {"bsrgan": degradation_bsrgan, "realesrgan": degradation_realesrgan, "classic": degradation_classic,
            "light": degradation_light, "clean": degradation_clean}[name]


def _run_mixture(hr: np.ndarray, scale: int, rng: np.random.Generator,
                 mixture: tuple[tuple[str, float], ...]) -> DegradedPair:
    """The component of ``mixture`` that one draw of ``rng`` picks, run with the same ``rng``."""
    return mixture_component(mixed_choice(rng, mixture))(hr, scale=scale, rng=rng)


def degradation_mixed(hr: np.ndarray, *, scale: int, rng: np.random.Generator) -> DegradedPair:
    """One of :data:`MIXTURE`'s degradations, chosen and run with ``rng``."""
    return _run_mixture(hr, scale, rng, MIXTURE)


def degradation_classic(hr: np.ndarray, *, scale: int, rng: np.random.Generator) -> DegradedPair:
    """Blur (p = 0.9), random downsampling, Gaussian noise (p = 0.8), JPEG (p = 0.8); see the module doc."""
    hr = prepare_hr(hr, scale)
    img = hr
    if rng.random() < 0.9:
        hi = 0.75 * scale
        sx, sy = rng.uniform(0.2, hi), rng.uniform(0.2, hi)
        size = 2 * int(np.ceil(3.0 * max(sx, sy))) + 1
        img = np.clip(blur(img, bivariate_kernel(size, sx, sy, float(rng.uniform(0.0, np.pi)))), 0.0, 1.0)
    lr = _random_downsample(img, scale, rng)
    if rng.random() < 0.8:
        level = rng.uniform(1.0, 20.0) / 255.0
        lr = np.clip(add_gaussian_noise(lr, level, rng, gray=bool(rng.random() < 0.3)), 0.0, 1.0)
    if rng.random() < 0.8:
        lr = jpeg(lr, int(rng.integers(35, 96)))
    return DegradedPair(round_to_uint8_levels(lr), hr)


def degradation_clean(hr: np.ndarray, *, scale: int, rng: np.random.Generator) -> DegradedPair:
    """Downsampling with a random method only, rounded to 8-bit levels."""
    hr = prepare_hr(hr, scale)
    return DegradedPair(round_to_uint8_levels(_random_downsample(hr, scale, rng)), hr)


#: (name, probability) of ``mixed_wide``'s components, in the order the draw tests them
MIXTURE_WIDE = (("bsrgan", 0.3), ("realesrgan", 0.2), ("classic", 0.25), ("light", 0.15), ("clean", 0.1))


def degradation_mixed_wide(hr: np.ndarray, *, scale: int, rng: np.random.Generator) -> DegradedPair:
    """One of :data:`MIXTURE_WIDE`'s degradations, chosen and run with ``rng``."""
    return _run_mixture(hr, scale, rng, MIXTURE_WIDE)
