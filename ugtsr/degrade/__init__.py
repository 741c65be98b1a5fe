"""Synthetic degradations for blind SR: BSRGAN, BSRGAN-plus and Real-ESRGAN's second-order model,
plus the classic bicubic protocol and a training mixture (``ugtsr/degrade/simple.py``).

Every pipeline is ``fn(hr, *, scale, rng) -> DegradedPair(lr, hr)``:

- ``hr``: ``(H, W, 3)`` float RGB in [0, 1]; ``scale``: 2 or 4; ``rng``: ``np.random.Generator``, the
  only source of randomness (same seed -> byte-identical output on the same machine and library
  versions);
- ``lr``: ``(H // scale, W // scale, 3)`` float32 in [0, 1]; ``hr``: the input mod-cropped to a multiple
  of ``scale`` (never sharpened), aligned with ``lr``. A tuple is returned because every pipeline
  mod-crops the HR, and a caller that saves pairs must save that crop.

``PIPELINES`` maps the CLI names to the functions. Files: ``python -m ugtsr.degrade HR_DIR -o LR_DIR
--scale 4 --pipeline bsrgan --seed 0 [--hr-out DIR]`` (see ``ugtsr/degrade/__main__.py``).

cv2 and scipy (extra ``train``) are imported on first use; importing this package needs numpy only.
"""
from __future__ import annotations

from collections.abc import Callable

from ._io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    float_to_image,
    image_to_float,
    list_images,
    read_image,
    write_png_atomic,
)
from ._ops import (
    SCALES,
    DegradedPair,
    anisotropic_gaussian_kernel,
    bivariate_kernel,
    blur,
    imresize,
    isotropic_gaussian_kernel,
    jpeg,
    rng_from_key,
    shift_pixel,
    sinc_kernel,
    usm_sharpen,
)
from .bsrgan import degradation_bsrgan, degradation_bsrgan_plus
from .realesrgan import RealESRGANOptions, degradation_realesrgan
from .simple import (
    MIXTURE,
    MIXTURE_WIDE,
    degradation_bicubic,
    degradation_classic,
    degradation_clean,
    degradation_light,
    degradation_mixed,
    degradation_mixed_wide,
    mixed_choice,
)

__all__ = [
    "DegradedPair",
    "Pipeline",
    "PIPELINES",
    "SCALES",
    "degradation_bsrgan",
    "degradation_bsrgan_plus",
    "degradation_realesrgan",
    "degradation_bicubic",
    "degradation_light",
    "degradation_mixed",
    "mixed_choice",
    "MIXTURE",
    "degradation_classic",
    "degradation_clean",
    "degradation_mixed_wide",
    "MIXTURE_WIDE",
    "RealESRGANOptions",
    # building blocks
    "isotropic_gaussian_kernel",
    "anisotropic_gaussian_kernel",
    "bivariate_kernel",
    "sinc_kernel",
    "blur",
    "imresize",
    "jpeg",
    "usm_sharpen",
    "shift_pixel",
    "rng_from_key",
    # image files
    "IMAGE_EXTENSIONS",
    "DEFAULT_MAX_PIXELS",
    "list_images",
    "read_image",
    "image_to_float",
    "float_to_image",
    "write_png_atomic",
]

#: ``pipeline(hr, *, scale, rng) -> DegradedPair``
Pipeline = Callable[..., DegradedPair]

#: the pipelines by CLI name (a plain dict, not a registry)
PIPELINES: dict[str, Pipeline] = {
    "bsrgan": degradation_bsrgan,
    "bsrgan_plus": degradation_bsrgan_plus,
    "realesrgan": degradation_realesrgan,
    "bicubic": degradation_bicubic,
    "mixed": degradation_mixed,
    "classic": degradation_classic,
    "clean": degradation_clean,
    "mixed_wide": degradation_mixed_wide,
}
