"""Image files for the degradation CLI and the training datasets: scan, decode, write atomically.

Decoded images are HWC **RGB** with exactly 3 channels in their stored dtype (uint8 or uint16):
grey is replicated to 3 channels and alpha is dropped. :func:`image_to_float` maps them to float32 in
[0, 1] (uint16 / 65535, not / 255). Files are read through the runtime's checked reader
(``runtime.imageio.read_image``: header size check and pixel limit before decoding).
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_bytes
from ._ops import _cv2

__all__ = [
    "IMAGE_EXTENSIONS",
    "list_images",
    "read_image",
    "DEFAULT_MAX_PIXELS",
    "image_to_float",
    "float_to_image",
    "write_png_atomic",
]

#: file suffixes (lower case) treated as images
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def list_images(root: str | os.PathLike[str], *, exclude: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """Image files under ``root`` (recursive, by suffix, case-insensitive), sorted by relative path.

    Files inside any folder of ``exclude`` are left out (used when an output folder sits inside the
    input folder). Hidden files and folders (name starting with '.') are skipped. ``root`` must be an
    existing folder (the caller checks; a missing one gives an empty list).
    """
    root = Path(root)
    skip = [Path(p).resolve() for p in exclude]
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        resolved = here.resolve()
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and (resolved / d).resolve() not in skip
        )
        found.extend(
            here / f for f in filenames
            if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS
        )
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


#: default pixel limit of :func:`read_image`, 4096 x 4096: the runtime's ``DEFAULT_MAX_PIXELS`` (a test checks)
DEFAULT_MAX_PIXELS = 4096 * 4096


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file to ``(H, W, 3)`` RGB in its stored dtype (uint8 or uint16).

    Reads through ``runtime.imageio.read_image``: the format is judged by content, the size is checked
    from the header *before* decoding (a PNG claiming 100000x100000 is refused without allocating it),
    truncated files are refused and the EXIF orientation is applied. ``max_pixels`` bounds
    ``width * height`` (default 4096 x 4096; ``None``: no limit). Grey is replicated to
    3 channels, alpha is dropped.

    Raises :class:`UnsupportedInputError`, one line naming the file, for every bad file.
    """
    from runtime.imageio import read_image as _read_checked  # lazy: ugtsr imports only torch/numpy at top

    path = Path(path)
    img = _read_checked(path, max_pixels=max_pixels)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[2] == 1:  # grey
        img = np.repeat(img, 3, axis=2)
    else:  # BGR(A) -> RGB, alpha dropped
        img = img[..., 2::-1]
    return np.ascontiguousarray(img)


def image_to_float(img: np.ndarray) -> np.ndarray:
    """uint8 / 255, uint16 / 65535, float clipped: float32 in [0, 1], same shape."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    return np.clip(np.nan_to_num(img.astype(np.float32)), 0.0, 1.0)


def float_to_image(img: np.ndarray, dtype: type[np.unsignedinteger] | np.dtype = np.uint8) -> np.ndarray:
    """float in [0, 1] -> uint8 or uint16 with rounding and clipping."""
    peak = 65535.0 if np.dtype(dtype) == np.uint16 else 255.0
    return np.clip(np.round(img * peak), 0, peak).astype(dtype)


def write_png_atomic(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    """Write a ``(H, W, 3)`` uint8 / uint16 RGB array as PNG via a temp file + ``os.replace``.

    Parent folders are created. On any failure the temp file is removed and no file appears at
    ``path``.
    """
    cv2 = _cv2()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:  # pragma: no cover - PNG encoding of a valid array does not fail
        raise OSError(f"{path}: PNG encoding failed")
    atomic_write_bytes(path, buf.tobytes())
