"""Tiled inference over any callable backend, with feathered blending (a pure function over the backend, as Real-ESRGAN's ``RealESRGANer.tile_process``).

Geometry. The image is first padded once, as a whole, to the model's ``multiple_of`` (and
``min_size``) exactly as untiled inference would pad it; the tiles are then cut from the *padded*
image, so every tile starts on a multiple of ``multiple_of`` and has a size that is a multiple of it.
No tile needs padding of its own, every tile has the same shape (they can be stacked into batches and
a fixed-shape engine fits all of them), and a model whose receptive field is local produces exactly the
untiled result. Each tile is a "core" of ``tile`` pixels plus ``tile_pad`` pixels of context on every
side (Real-ESRGAN's ``tile`` / ``tile_pad``), rounded up to the multiple; tiles along an axis are spread
evenly, so neighbours overlap by at least ``2 * tile_pad`` input pixels; at the image border a tile is
shifted inwards instead of being cut short.

Blending. Real-ESRGAN pastes the centre of each tile with a hard cut. Here every tile gets a separable
weight that is 0 for a margin (``blend_margin``, default ``tile_pad // 2``) next to an inner edge, where
the tile lacks context, then ramps to 1 across the rest of the overlap with its neighbour -- a raised
cosine (``"feather"``, default) or a linear ramp (``"linear"``) -- and is 1 up to the image border. ``"none"`` reproduces the hard cut at the middle of each overlap. The 1-D weights
of each axis are normalised to sum to 1 at every pixel, so the 2-D products form a partition of unity
and no weight map has to be stored.

Whole-image statistics. UGTSR normalises with GroupNorm and attends with channel attention (MDTA)
over the whole input, so a tile sees other statistics than the full image and the output changes.
Blending hides the seams but cannot undo that shift; ``tests/runtime/test_tiling.py`` measures
tiled-vs-untiled PSNR on a synthetic whole-image-statistics model. Prefer no tiling
(:func:`choose_tile` returns 0) whenever the image fits in memory.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Literal

import numpy as np

from ugtsr.errors import UGTSRError, UnsupportedInputError

from .padding import crop, pad_to_multiple, padded_size

__all__ = ["tile_process", "tile_grid", "choose_tile", "available_memory_bytes", "BLEND_MODES"]

logger = logging.getLogger(__name__)

BLEND_MODES = ("feather", "linear", "none")
Blend = Literal["feather", "linear", "none"]
TileFn = Callable[[np.ndarray], "np.ndarray | Mapping[str, np.ndarray]"]

#: used when the available memory cannot be determined (no psutil, no /proc/meminfo)
_FALLBACK_AVAILABLE_BYTES = 4 * 2**30


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _axis_windows(size: int, tile: int, tile_pad: int, multiple: int, min_size: int) -> list[tuple[int, int]]:
    """Windows ``(start, length)`` along one axis of a padded image of ``size`` (a multiple of ``multiple``).

    All windows have the same length (a multiple of ``multiple``), start on multiples of ``multiple``,
    cover ``[0, size)`` and overlap their neighbours by at least ``2 * tile_pad``.
    """
    win = _round_up(tile + 2 * tile_pad, multiple)
    while win - 2 * tile_pad < multiple:  # the stride must be a positive multiple
        win += multiple
    win = max(win, _round_up(min_size, multiple))
    if win >= size:
        return [(0, size)]
    span = (size - win) // multiple  # in units of `multiple`
    max_step = (win - 2 * tile_pad) // multiple  # >= 1 by construction
    n = 1 + math.ceil(span / max_step)
    # round(k * span / (n - 1)) steps by at most ceil(span / (n - 1)) <= max_step units
    return [(multiple * round(k * span / (n - 1)), win) for k in range(n)]


def tile_grid(
    height: int, width: int, *, tile: int, tile_pad: int, multiple_of: int, min_size: int = 1
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The tile windows of an ``height x width`` image: ``(rows, cols)`` lists of ``(start, length)``.

    Coordinates are in the image padded by :func:`runtime.padding.pad_to_multiple`. A tile is the
    product of one row window and one column window. ``tile <= 0`` gives a single window per axis.
    """
    hp = padded_size(height, multiple_of, min_size=min_size)
    wp = padded_size(width, multiple_of, min_size=min_size)
    if tile is None or tile <= 0:
        return [(0, hp)], [(0, wp)]
    if tile_pad < 0:
        raise UnsupportedInputError(f"tile_pad must be >= 0, got {tile_pad}")
    return (_axis_windows(hp, tile, tile_pad, multiple_of, min_size),
            _axis_windows(wp, tile, tile_pad, multiple_of, min_size))


def _ramp(t: np.ndarray, blend: Blend, *, rising: bool) -> np.ndarray:
    """Weight going from 0 (``t <= 0``) to 1 (``t >= 1``); ``t`` is the distance into the overlap."""
    if blend == "none":  # hard cut at the middle of the overlap; the middle belongs to the later tile
        return (t >= 0.5 if rising else t > 0.5).astype(np.float64)
    t = np.clip(t, 0.0, 1.0)
    if blend == "linear":
        return t
    return 0.5 - 0.5 * np.cos(np.pi * t)


def _axis_weights(windows: list[tuple[int, int]], scale: int, blend: Blend, margin: int) -> list[np.ndarray]:
    """Per-window 1-D weights at output resolution, normalised to sum to 1 at every output pixel.

    Across the overlap with a neighbour, a window's weight is 0 for the ``margin`` input pixels next to
    its inner edge (they lack context), ramps over the middle of the overlap, and is 1 beyond it.
    """
    total = (windows[-1][0] + windows[-1][1]) * scale
    raw: list[np.ndarray] = []
    for i, (start, length) in enumerate(windows):
        end = start + length
        u = (np.arange(length * scale, dtype=np.float64) + 0.5) / scale + start  # input coords
        w = np.ones_like(u)
        if i > 0:  # ramp up across the overlap with the previous window
            overlap = windows[i - 1][0] + windows[i - 1][1] - start
            m = min(margin, overlap // 4)
            if overlap - 2 * m > 0:
                w *= _ramp((u - start - m) / (overlap - 2 * m), blend, rising=True)
        if i < len(windows) - 1:  # ramp down across the overlap with the next window
            overlap = end - windows[i + 1][0]
            m = min(margin, overlap // 4)
            if overlap - 2 * m > 0:
                w *= _ramp((end - m - u) / (overlap - 2 * m), blend, rising=False)
        raw.append(w)
    norm = np.zeros(total, dtype=np.float64)
    for (start, length), w in zip(windows, raw):
        norm[start * scale:(start + length) * scale] += w
    if np.any(norm <= 0):  # cannot happen with overlapping or abutting windows; guards a logic error
        raise UGTSRError("internal error: tile weights do not cover the image")
    return [(w / norm[s * scale:(s + n) * scale]).astype(np.float32) for (s, n), w in zip(windows, raw)]


def _as_dict(result: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if isinstance(result, Mapping):
        return dict(result)
    return {"": result}


def tile_process(
    lq: np.ndarray,
    fn: TileFn,
    *,
    scale: int,
    tile: int | None,
    tile_pad: int = 32,
    multiple_of: int = 1,
    min_size: int = 1,
    batch_size: int = 1,
    blend: Blend = "feather",
    blend_margin: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray | dict[str, np.ndarray]:
    """Run ``fn`` over ``lq`` whole or in overlapping tiles, and stitch the scaled outputs.

    Args:
        lq: ``(1, C, H, W)`` float32 (the model input, RGB in [0, 1] for UGTSR).
        fn: maps a batch ``(n, C, h, w)`` float32 (``h``, ``w`` multiples of ``multiple_of`` and
            ``>= min_size``, ``1 <= n <= batch_size``) to ``(n, C', h*scale, w*scale)``, or to a dict of
            such arrays (e.g. ``{"sr": ..., "uncertainty": ...}``). Dict entries whose shape is not
            ``(n, *, h*scale, w*scale)`` (e.g. ``indices`` at latent resolution) are dropped.
        scale: the model's upscaling factor.
        tile: core tile size in input pixels; ``None`` or ``0`` runs the whole (padded) image at once.
        tile_pad: context on each side of a tile, in input pixels (overlap is ``>= 2 * tile_pad``).
        multiple_of, min_size: what ``fn`` accepts (see :func:`runtime.padding.pad_to_multiple`).
        batch_size: tiles per call of ``fn`` (all tiles have the same shape).
        blend: ``"feather"`` (raised cosine), ``"linear"`` or ``"none"`` (hard cut, Real-ESRGAN).
        blend_margin: input pixels next to a tile's inner edge that get weight 0 (default
            ``tile_pad // 2``, at most a quarter of the overlap). A model whose receptive field
            reaches no further than this gives exactly the untiled result.
        progress: called as ``progress(done_tiles, total_tiles)`` after every call of ``fn``.

    Returns:
        ``(1, C', H*scale, W*scale)`` float32 (not clamped), or a dict of them when ``fn`` returns dicts.
    """
    if lq.ndim != 4 or lq.shape[0] != 1:
        raise UnsupportedInputError(f"tile_process expects a (1, C, H, W) array, got shape {lq.shape}")
    if blend not in BLEND_MODES:
        raise UnsupportedInputError(f"blend must be one of {BLEND_MODES}, got {blend!r}")
    if scale < 1 or batch_size < 1 or multiple_of < 1:
        raise UnsupportedInputError("scale, batch_size and multiple_of must be >= 1")
    h, w = lq.shape[-2:]
    padded, _ = pad_to_multiple(np.asarray(lq, dtype=np.float32), multiple_of, min_size=min_size)
    rows, cols = tile_grid(h, w, tile=tile or 0, tile_pad=tile_pad, multiple_of=multiple_of, min_size=min_size)
    margin = tile_pad // 2 if blend_margin is None else int(blend_margin)
    wy = _axis_weights(rows, scale, blend, margin)
    wx = _axis_weights(cols, scale, blend, margin)
    tiles = [(iy, ix) for iy in range(len(rows)) for ix in range(len(cols))]
    th, tw = rows[0][1], cols[0][1]
    if len(tiles) > 1:
        logger.debug("tiling %dx%d into %d tiles of %dx%d", h, w, len(tiles), th, tw)

    returns_dict: bool | None = None
    outputs: dict[str, np.ndarray] = {}
    for first in range(0, len(tiles), batch_size):
        chunk = tiles[first:first + batch_size]
        batch = np.ascontiguousarray(np.stack([
            padded[0, :, rows[iy][0]:rows[iy][0] + th, cols[ix][0]:cols[ix][0] + tw] for iy, ix in chunk
        ]))
        raw = fn(batch)
        returns_dict = isinstance(raw, Mapping)
        result = _as_dict(raw)
        want = (len(chunk), th * scale, tw * scale)
        kept = {k: v for k, v in result.items()
                if isinstance(v, np.ndarray) and v.ndim == 4 and (v.shape[0], *v.shape[2:]) == want}
        if not kept:
            shapes = {k: getattr(v, "shape", None) for k, v in result.items()}
            raise UGTSRError(f"the model returned {shapes} for a {batch.shape} input; expected "
                             f"(N, C, {th * scale}, {tw * scale}) for scale {scale}")
        for key, value in kept.items():
            if len(tiles) == 1:  # whole image: no weights, no second full-size buffer
                outputs[key] = value.astype(np.float32, copy=False)
                continue
            if key not in outputs:
                outputs[key] = np.zeros((1, value.shape[1], padded.shape[2] * scale, padded.shape[3] * scale),
                                        dtype=np.float32)
            out = outputs[key]
            for j, (iy, ix) in enumerate(chunk):
                y0, x0 = rows[iy][0] * scale, cols[ix][0] * scale
                weight = wy[iy][:, None] * wx[ix][None, :]
                out[0, :, y0:y0 + th * scale, x0:x0 + tw * scale] += value[j].astype(np.float32) * weight
        if progress is not None:
            progress(min(first + batch_size, len(tiles)), len(tiles))

    cropped = {k: np.ascontiguousarray(crop(v, h * scale, w * scale)) for k, v in outputs.items()}
    if returns_dict:
        return cropped
    return cropped[""]


def available_memory_bytes() -> int | None:
    """Memory available to a new allocation: psutil if installed, else ``MemAvailable`` of /proc/meminfo.

    ``None`` when neither works (then :func:`choose_tile` assumes 4 GiB).
    """
    try:
        import psutil  # optional: not a dependency of the runtime
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def choose_tile(
    h: int,
    w: int,
    *,
    bytes_per_pixel_estimate: float,
    available_bytes: int | None = None,
    multiple_of: int = 16,
    tile_pad: int = 0,
    memory_fraction: float = 0.5,
    max_hw: tuple[int, int] | None = None,
) -> int:
    """The default tile size for an ``h x w`` input: 0 (no tiling) when the whole image fits.

    ``bytes_per_pixel_estimate`` is the peak memory the backend needs per *input* pixel. The budget
    is ``memory_fraction`` of ``available_bytes`` (default: :func:`available_memory_bytes`, or 4 GiB
    when unknown). Otherwise the largest multiple of ``multiple_of`` whose tile plus ``2 * tile_pad``
    context fits the budget (at least ``multiple_of``). ``max_hw`` caps the tile window at a backend's
    largest accepted input (e.g. a TensorRT profile's max shape).
    """
    if bytes_per_pixel_estimate <= 0:
        raise UnsupportedInputError("bytes_per_pixel_estimate must be > 0")
    if available_bytes is None:
        available_bytes = available_memory_bytes()
        if available_bytes is None:
            logger.warning("cannot determine the available memory; assuming %d GiB",
                           _FALLBACK_AVAILABLE_BYTES // 2**30)
            available_bytes = _FALLBACK_AVAILABLE_BYTES
    budget = max(0.0, memory_fraction * float(available_bytes))
    hp, wp = _round_up(max(h, 1), multiple_of), _round_up(max(w, 1), multiple_of)
    fits_cap = max_hw is None or (hp <= max_hw[0] and wp <= max_hw[1])
    if fits_cap and hp * wp * bytes_per_pixel_estimate <= budget:
        return 0
    side = int(math.isqrt(int(budget / bytes_per_pixel_estimate)))
    if max_hw is not None:
        side = min(side, *max_hw)
    # the window is round_up(tile + 2 * tile_pad) <= tile + round_up(2 * tile_pad) <= side
    tile = (side - _round_up(2 * tile_pad, multiple_of)) // multiple_of * multiple_of
    if tile < multiple_of:
        logger.warning("memory budget allows only tiny tiles; using %d", multiple_of)
        tile = multiple_of
    return int(tile)

