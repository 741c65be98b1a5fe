"""Training batches as a pure function of ``(seed, step, rank)``, so a resumed run sees the same data.

The data stream is one infinite sequence of dataset items: epoch ``e`` is a permutation of the
``N`` items drawn from ``np.random.default_rng([seed, e, 0x5EED])``, and the epochs follow each
other. Step ``t`` of rank ``r`` (of ``W`` ranks, batch ``B`` per rank) takes stream positions
``(t·W + r)·B + i`` for ``i < B``: the ranks read disjoint shards and together cover each epoch
once. Each item is addressed as ``(epoch, index)``; the dataset (``HRPatchDataset`` /
``PairedDataset``) seeds its crop, flips and degradation from ``(dataset seed, epoch, index)``
(``set_epoch`` before the item). Nothing depends on the call order, the worker that loads an item
or on global RNG state, so resuming at step ``t`` replays exactly the batches of an uninterrupted
run, with or without DataLoader workers.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import ConfigError

__all__ = ["StepSampler", "EpochIndexed", "collate", "batch_stream"]

_PERM_SALT = 0x5EED


class StepSampler:
    """Which ``(epoch, index)`` items make up the batch of a step (see the module docstring).

    ``fixed=True`` (``--overfit-batch``) returns the step-0 batch at every step.
    """

    def __init__(self, num_items: int, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 fixed: bool = False) -> None:
        if num_items < 1:
            raise ConfigError("the training set is empty")
        self.num_items = int(num_items)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.fixed = bool(fixed)
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        perm = self._perms.get(epoch)
        if perm is None:
            if len(self._perms) > 4:  # only the current epoch or two are ever needed
                self._perms.clear()
            perm = np.random.default_rng([self.seed, epoch, _PERM_SALT]).permutation(self.num_items)
            self._perms[epoch] = perm
        return perm

    def first_position(self, step: int) -> int:
        """Stream position of this rank's first item at ``step``."""
        step = 0 if self.fixed else int(step)
        return (step * self.world_size + self.rank) * self.batch_size

    def epoch_at(self, step: int) -> int:
        """The data epoch that ``step`` reads from (of its first item)."""
        return self.first_position(step) // self.num_items

    def samples_before(self, step: int) -> int:
        """Items all ranks together consumed in steps ``0 .. step-1``."""
        return int(step) * self.world_size * self.batch_size

    def keys(self, step: int) -> list[tuple[int, int]]:
        """``[(epoch, dataset index), ...]`` of length ``batch_size`` for this rank at ``step``."""
        start = self.first_position(step)
        out = []
        for pos in range(start, start + self.batch_size):
            epoch, offset = divmod(pos, self.num_items)
            out.append((epoch, int(self._perm(epoch)[offset])))
        return out


class EpochIndexed(Dataset):
    """Wraps a dataset with ``set_epoch`` so that items are addressed as ``(epoch, index)``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack the ``lq`` / ``gt`` tensors of the items (other keys, e.g. ``name``, are dropped)."""
    return {k: torch.stack([it[k] for it in items]) for k in ("lq", "gt") if k in items[0]}


class _StepBatches:
    """Batch sampler for a DataLoader: the keys of steps ``start .. stop-1``."""

    def __init__(self, sampler: StepSampler, start: int, stop: int) -> None:
        self.sampler, self.start, self.stop = sampler, start, stop

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.stop):
            yield self.sampler.keys(step)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers decode and degrade; the main process owns the cores for compute


def batch_stream(dataset: Any, sampler: StepSampler, *, start: int, stop: int, num_workers: int = 0,
                 pin_memory: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Batches for steps ``start .. stop-1`` in order (a DataLoader when ``num_workers > 0``)."""
    wrapped = EpochIndexed(dataset)
    if num_workers == 0:
        for step in range(start, stop):
            yield collate([wrapped[key] for key in sampler.keys(step)])
        return
    loader = DataLoader(wrapped, batch_sampler=_StepBatches(sampler, start, stop), num_workers=num_workers,
                        collate_fn=collate, pin_memory=pin_memory, worker_init_fn=_worker_init,
                        persistent_workers=False)
    yield from loader
