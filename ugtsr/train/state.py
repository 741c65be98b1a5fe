"""Resumable training state: what a run saves at each checkpoint and how it comes back.

A state file is an ordinary UGTSR checkpoint (:func:`ugtsr.checkpoint.save_checkpoint`: config,
weights, optional EMA, metadata) whose ``training_state`` holds, as plain data and tensors:

``step`` (completed iterations), ``data_epoch`` / ``samples_seen`` (where the data stream stands;
the stream itself is a pure function of the step, :mod:`ugtsr.train.sampling`), the optimizer
states (``optimizer_g``, ``optimizer_d``), the discriminator (``discriminator``), the RNG states
(``rng``: python, numpy, torch CPU, torch CUDA), ``wall_time`` so far and the run's ``stage``,
``preset`` and ``seed``.

Files: ``RUN_DIR/ckpt_{step:07d}.pt`` is written atomically (temp file + ``os.replace``), then
``RUN_DIR/latest.pt`` is pointed at it atomically (a hard link, or a copy where links are not
supported, renamed over the old one). A process killed at any moment therefore leaves the previous
``latest.pt`` whole, and ``--resume auto`` continues from it.
"""
from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ..errors import CheckpointError
from ..model import UGTSRNet

__all__ = ["LATEST", "FINAL", "checkpoint_name", "rng_state", "set_rng_state", "save_state", "find_resume",
           "load_state", "point_latest"]

LATEST = "latest.pt"
FINAL = "final.pt"
_REQUIRED = ("step", "optimizer_g", "rng", "stage", "preset", "seed")


def checkpoint_name(step: int) -> str:
    return f"ckpt_{step:07d}.pt"


# --- RNG states (plain data + tensors, loadable with weights_only=True) --------------------------
def rng_state() -> dict[str, Any]:
    """The python, numpy and torch (CPU, and CUDA if initialised) generator states."""
    version, py_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(py_state), "gauss_next": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
    }
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# --- saving ----------------------------------------------------------------------------------------
def point_latest(target: Path, latest: Path) -> None:
    """Make ``latest`` a new name of ``target`` atomically (hard link; a copy where links fail)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{latest.name}.", suffix=".tmp", dir=latest.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(target, tmp)
        except OSError:
            shutil.copyfile(target, tmp)
        os.replace(tmp, latest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_state(run_dir: str | Path, model: UGTSRNet, *, training_state: Mapping[str, Any],
               ema: nn.Module | None = None, **metadata: Any) -> Path:
    """Write ``ckpt_{step}.pt`` (``step`` from ``training_state``) and point ``latest.pt`` at it.

    Returns the checkpoint path.
    """
    run_dir = Path(run_dir)
    name = checkpoint_name(int(training_state["step"]))
    path = save_checkpoint(run_dir / name, model, ema=ema, training_state=training_state, **metadata)
    point_latest(path, run_dir / LATEST)
    return path


# --- resuming --------------------------------------------------------------------------------------
def find_resume(resume: str | None, run_dir: str | Path) -> Path | None:
    """The state file to resume from: ``None`` (fresh start), ``"auto"`` or a path (file or run folder)."""
    if resume is None:
        return None
    if resume == "auto":
        latest = Path(run_dir) / LATEST
        return latest if latest.is_file() else None
    path = Path(resume)
    if path.is_dir():
        path = path / LATEST
    if not path.is_file():
        raise CheckpointError(f"{path}: no such state file to resume from")
    return path


def load_state(path: str | Path, *, stage: str, preset: str, config: Any) -> Checkpoint:
    """Read a state file and check it belongs to a run of this stage and preset."""
    ckpt = load_checkpoint(path)
    ts = ckpt.training_state
    if not isinstance(ts, dict) or any(k not in ts for k in _REQUIRED):
        raise CheckpointError(f"{path}: not a training state file (no optimizer/step state); "
                              "resume from RUN_DIR/latest.pt or a ckpt_*.pt of a run")
    if ts["stage"] != stage or ts["preset"] != preset:
        raise CheckpointError(f"{path}: is a state of a --stage {ts['stage']} --preset {ts['preset']} run; "
                              f"this run is --stage {stage} --preset {preset}")
    if ckpt.config != config:
        raise CheckpointError(f"{path}: its model config '{ckpt.config.name}' differs from this run's '{config.name}'")
    return ckpt
