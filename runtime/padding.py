"""Padding an NCHW batch to what a model accepts, and cropping its output back (pure numpy).

The exported graphs accept only ``H`` and ``W`` that are multiples of ``multiple_of`` and at least
``min_size`` (``docs/INTERFACES.md``). The runtime pads at the bottom and right so that the top-left
pixel grid of the image coincides with the model's grid, and crops the (scaled) output back.
Reflect padding is used because it keeps local statistics continuous at the border; where it is
impossible (reflect needs ``pad < size``: a 5-pixel-wide image cannot be reflected out to 16) that axis is
padded by replicating its edge instead -- the same fallback spandrel and ``ugtsr.model`` use.
"""
from __future__ import annotations

import numpy as np

from ugtsr.errors import UnsupportedInputError

__all__ = ["padded_size", "pad_to_multiple", "crop"]


def padded_size(size: int, multiple: int, *, min_size: int = 1) -> int:
    """The smallest ``n >= max(size, min_size)`` that is a multiple of ``multiple``."""
    if multiple < 1:
        raise UnsupportedInputError(f"multiple must be >= 1, got {multiple}")
    n = max(int(size), int(min_size), 1)
    return -(-n // multiple) * multiple


def _pad_axis(arr: np.ndarray, axis: int, pad: int) -> np.ndarray:
    """Pad ``arr`` by ``pad`` at the end of ``axis``: reflect when ``pad < size``, else replicate."""
    if pad <= 0:
        return arr
    widths = [(0, 0)] * arr.ndim
    widths[axis] = (0, pad)
    # reflect (mirror without repeating the edge) needs pad <= size - 1; numpy would otherwise
    # reflect repeatedly, which is not what the exported graph or the torch model does
    mode = "reflect" if pad < arr.shape[axis] else "edge"
    return np.pad(arr, widths, mode=mode)


def pad_to_multiple(
    img_nchw: np.ndarray, multiple: int, *, min_size: int = 1
) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad ``(N, C, H, W)`` at the bottom/right to multiples of ``multiple`` and at least ``min_size``.

    Returns ``(padded, (pad_h, pad_w))``; ``padded`` is ``(N, C, H + pad_h, W + pad_w)`` with the
    input's dtype and C-contiguous. Each axis is reflect-padded (mirror without repeating the edge
    pixel) when its pad is smaller than its size, and edge-replicated otherwise.
    """
    if img_nchw.ndim != 4:
        raise UnsupportedInputError(f"expected an (N, C, H, W) array, got shape {img_nchw.shape}")
    h, w = img_nchw.shape[-2:]
    if h < 1 or w < 1:
        raise UnsupportedInputError(f"cannot pad an empty image of size {h}x{w}")
    pad_h = padded_size(h, multiple, min_size=min_size) - h
    pad_w = padded_size(w, multiple, min_size=min_size) - w
    out = _pad_axis(img_nchw, 2, pad_h)
    out = _pad_axis(out, 3, pad_w)
    return np.ascontiguousarray(out), (pad_h, pad_w)


def crop(img_nchw: np.ndarray, height: int, width: int) -> np.ndarray:
    """The top-left ``height x width`` of ``(N, C, H, W)`` (undoes :func:`pad_to_multiple` after scaling).

    ``height``/``width`` are the target sizes at the array's own resolution, e.g. ``H * scale``.
    """
    if img_nchw.shape[-2] < height or img_nchw.shape[-1] < width:
        raise UnsupportedInputError(
            f"cannot crop {img_nchw.shape[-2]}x{img_nchw.shape[-1]} to a larger {height}x{width}"
        )
    return img_nchw[..., :height, :width]
