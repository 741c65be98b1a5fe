"""Training and validation datasets: HR patches degraded on the fly, and pre-generated LR/HR pairs.

Both return dicts of ``(3, h, w)`` float32 RGB tensors in [0, 1]: ``"lq"`` (the network input) and
``"gt"`` (the target, ``scale`` times larger).

Determinism (so that a resumed run sees the same data): every random choice of item ``index`` comes
from ``np.random.default_rng([seed, epoch, index])``. ``__getitem__`` depends only on the index, the
seed and the counter set by :meth:`set_epoch`, never on the call order or the worker. The trainer calls
``set_epoch(e)`` before each pass. With DataLoader workers this needs ``persistent_workers=False`` (the
default), because persistent workers keep their own copy of the dataset and never see the new epoch.

Image decoding needs cv2 (extra ``train``) and goes through the runtime's checked reader
(``ugtsr.degrade.read_image``: header size check and pixel limit before decoding); this module imports
torch and numpy only at the top.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .degrade import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    PIPELINES,
    SCALES,
    Pipeline,
    image_to_float,
    list_images,
    read_image,
)
from .errors import ConfigError, UnsupportedInputError

__all__ = ["find_images", "augment", "HRPatchDataset", "PairedDataset"]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def find_images(root: PathLike) -> list[Path]:
    """Image files under ``root``: recursive, sorted by relative path, suffixes ``IMAGE_EXTENSIONS``.

    Raises :class:`ConfigError` if ``root`` is not a folder or holds no image.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: image folder does not exist")
    files = list_images(root)
    if not files:
        exts = ", ".join(e[1:] for e in IMAGE_EXTENSIONS)
        raise ConfigError(f"{root}: no image files ({exts}) found")
    return files


def augment(arrays: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random horizontal flip, vertical flip and transpose (each p = 0.5) on every HWC array.

    Together these give the 8 rotations / reflections (BasicSR's ``augment(hflip, rotation)``).
    Returns contiguous arrays.
    """
    hflip, vflip, transpose = rng.random(3) < 0.5
    out = []
    for a in arrays:
        if hflip:
            a = a[:, ::-1]
        if vflip:
            a = a[::-1]
        if transpose:
            a = a.transpose(1, 0, 2)
        out.append(np.ascontiguousarray(a))
    return out


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` float32 -> ``(3, H, W)`` float32 tensor (owns its memory)."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))


def _check_seed(seed: int) -> int:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_length(length: int | None, default: int) -> int:
    if length is None:
        return default
    if not isinstance(length, (int, np.integer)) or length < 1:
        raise ConfigError(f"length must be a positive integer or None, got {length!r}")
    return int(length)


def _item_index(index: int, length: int) -> int:
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for a dataset of length {length}")
    return index


class HRPatchDataset(Dataset):
    """Random HR patches degraded on the fly: ``{"lq": (3, p/s, p/s), "gt": (3, p, p)}``.

    Each item: pick image ``index % num_images``, crop a random ``patch_size`` square, apply a random
    flip / transpose (if ``augment``), then degrade the patch with ``pipeline`` (crop first, degrade the
    patch). All images are decoded once and kept in memory in their stored dtype (uint8 = 3 bytes per
    pixel), so this suits folders of a few hundred photos; for large sets, pre-generate pairs with
    ``python -m ugtsr.degrade`` and use :class:`PairedDataset`.

    Args:
        root: folder of HR images (recursive).
        scale: 2 or 4.
        patch_size: HR patch side in pixels, a multiple of ``scale``.
        pipeline: a name in ``ugtsr.degrade.PIPELINES`` or a pipeline function; ``None`` yields only
            ``"gt"`` (for training the HQ prior, which never looks at an LR image).
        seed: base seed (non-negative).
        length: virtual length (e.g. iterations x batch size); ``None`` = number of usable images.
        augment: random flips and transposes of the HR patch.
        max_pixels: files of more pixels are skipped as unreadable, checked from the header before
            decoding (default 4096 x 4096, as the runtime; ``None``: no limit).

    Images smaller than the patch are skipped (one warning with the count); unreadable files are
    skipped with a warning each. The counts are ``num_too_small`` and ``num_unreadable``. If nothing
    usable is left, :class:`ConfigError`.
    """

    def __init__(
        self,
        root: PathLike,
        *,
        scale: int,
        patch_size: int,
        pipeline: str | Pipeline | None = "bsrgan",
        seed: int = 0,
        length: int | None = None,
        augment: bool = True,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        if scale not in SCALES:
            raise ConfigError(f"scale must be one of {SCALES}, got {scale!r}")
        if not isinstance(patch_size, (int, np.integer)) or patch_size < scale or patch_size % scale:
            raise ConfigError(f"patch_size must be a positive multiple of scale {scale}, got {patch_size!r}")
        if isinstance(pipeline, str):
            if pipeline not in PIPELINES:
                raise ConfigError(f"unknown pipeline {pipeline!r}; choose from {sorted(PIPELINES)}")
            pipeline = PIPELINES[pipeline]
        self.root = Path(root)
        self.scale = int(scale)
        self.patch_size = int(patch_size)
        self.pipeline = pipeline
        self.seed = _check_seed(seed)
        self.augment = bool(augment)
        self.epoch = 0

        self.paths: list[Path] = []
        self._images: list[np.ndarray] = []
        self.num_too_small = 0
        self.num_unreadable = 0
        for path in find_images(self.root):
            try:
                img = read_image(path, max_pixels=max_pixels)
            except UnsupportedInputError as exc:
                logger.warning("skipping unreadable image: %s", exc)
                self.num_unreadable += 1
                continue
            if img.shape[0] < self.patch_size or img.shape[1] < self.patch_size:
                self.num_too_small += 1
                continue
            self.paths.append(path)
            self._images.append(img)
        if self.num_too_small:
            logger.warning(
                "skipped %d image(s) under %s smaller than the %dx%d patch",
                self.num_too_small, self.root, self.patch_size, self.patch_size,
            )
        if not self._images:
            raise ConfigError(
                f"{self.root}: no usable training image ({self.num_too_small} smaller than the "
                f"{self.patch_size}x{self.patch_size} patch, {self.num_unreadable} unreadable)"
            )
        self.length = _check_length(length, len(self._images))

    @property
    def num_images(self) -> int:
        """Usable images (after skipping)."""
        return len(self._images)

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream for the next pass (call before iterating; see module doc)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = _item_index(int(index), self.length)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        img = self._images[index % len(self._images)]
        p = self.patch_size
        top = int(rng.integers(0, img.shape[0] - p + 1))
        left = int(rng.integers(0, img.shape[1] - p + 1))
        patch = image_to_float(img[top : top + p, left : left + p])
        if self.augment:
            (patch,) = augment([patch], rng)
        if self.pipeline is None:
            return {"gt": _to_tensor(patch)}
        pair = self.pipeline(patch, scale=self.scale, rng=rng)
        return {"lq": _to_tensor(pair.lr), "gt": _to_tensor(pair.hr)}


class PairedDataset(Dataset):
    """Pre-generated LR/HR pairs matched by relative path without suffix (``a/b.png`` <-> ``a/b.jpg``).

    ``patch_size=None`` (validation): whole images, ``{"lq": (3, h, w), "gt": (3, h*s, w*s),
    "name": relative stem}``, the GT mod-cropped to ``scale`` times the LR. With ``patch_size`` (HR
    side, a multiple of ``scale``; training): an aligned random crop, plus flips / transposes if
    ``augment`` (default: on when cropping).

    A GT must be ``scale`` times its LR up to the mod-crop remainder, else ``__getitem__`` raises
    :class:`UnsupportedInputError` naming both files; so does an unreadable file or one of more than
    ``max_pixels`` pixels (default 4096 x 4096; ``None``: no limit). Files with no
    partner are left out with one warning (counted in ``num_unmatched``); two files with the same
    stem in one folder (``a.png``, ``a.jpg``) are a :class:`ConfigError`. Images are read on demand.
    """

    def __init__(
        self,
        lq_dir: PathLike,
        gt_dir: PathLike,
        scale: int,
        patch_size: int | None = None,
        *,
        seed: int = 0,
        augment: bool | None = None,
        length: int | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        if not isinstance(scale, (int, np.integer)) or scale < 1:
            raise ConfigError(f"scale must be a positive integer, got {scale!r}")
        if patch_size is not None and (
            not isinstance(patch_size, (int, np.integer)) or patch_size < scale or patch_size % scale
        ):
            raise ConfigError(f"patch_size must be a positive multiple of scale {scale}, got {patch_size!r}")
        self.lq_dir, self.gt_dir = Path(lq_dir), Path(gt_dir)
        self.scale = int(scale)
        self.patch_size = None if patch_size is None else int(patch_size)
        self.seed = _check_seed(seed)
        self.augment = self.patch_size is not None if augment is None else bool(augment)
        self.epoch = 0
        self.max_pixels = max_pixels

        lq = self._by_stem(self.lq_dir)
        gt = self._by_stem(self.gt_dir)
        self.names = sorted(lq.keys() & gt.keys())
        self.num_unmatched = len(lq.keys() ^ gt.keys())
        if not self.names:
            raise ConfigError(f"no LR/HR pairs: no file of {self.lq_dir} has a same-named file in {self.gt_dir}")
        if self.num_unmatched:
            example = sorted(lq.keys() ^ gt.keys())[0]
            logger.warning(
                "%d file(s) have no partner between %s and %s and are left out (e.g. %s)",
                self.num_unmatched, self.lq_dir, self.gt_dir, example,
            )
        self._pairs = [(lq[n], gt[n]) for n in self.names]
        self.length = _check_length(length, len(self.names))

    @staticmethod
    def _by_stem(root: Path) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for path in find_images(root):
            stem = path.relative_to(root).with_suffix("").as_posix()
            if stem in found:
                raise ConfigError(f"{path}: same name as {found[stem]}; keep one file per image in {root}")
            found[stem] = path
        return found

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream for the next pass (crops and flips; see module doc)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        index = _item_index(int(index), self.length)
        k = index % len(self._pairs)
        lq_path, gt_path = self._pairs[k]
        lq = image_to_float(read_image(lq_path, max_pixels=self.max_pixels))
        gt = image_to_float(read_image(gt_path, max_pixels=self.max_pixels))
        s = self.scale
        lh, lw = lq.shape[:2]
        if gt.shape[0] // s != lh or gt.shape[1] // s != lw:
            raise UnsupportedInputError(
                f"{gt_path}: {gt.shape[0]}x{gt.shape[1]} is not x{s} of its LR {lh}x{lw} ({lq_path})"
            )
        gt = gt[: lh * s, : lw * s]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.patch_size is not None:
            lp = self.patch_size // s
            if lh < lp or lw < lp:
                raise UnsupportedInputError(f"{lq_path}: {lh}x{lw} is smaller than the {lp}x{lp} LR patch")
            top = int(rng.integers(0, lh - lp + 1))
            left = int(rng.integers(0, lw - lp + 1))
            lq = lq[top : top + lp, left : left + lp]
            gt = gt[top * s : (top + lp) * s, left * s : (left + lp) * s]
        if self.augment:
            lq, gt = augment([lq, gt], rng)
        return {"lq": _to_tensor(lq), "gt": _to_tensor(gt), "name": self.names[k]}
