"""Run-folder logs: ``log.csv`` (one fixed header for every stage), TensorBoard events, ``settings.json``.

``log.csv`` rows are either training rows (losses, learning rates, images/s) or validation rows
(``val_psnr``, ``val_ssim``); unused cells are empty. On resume, rows written after the resumed
step (by the interrupted process) are dropped so the file reads as one uninterrupted run.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..fileio import atomic_write_bytes

__all__ = ["LOG_COLUMNS", "LOSS_COLUMNS", "RunLog", "CsvRows", "write_json_atomic", "environment", "launch_record"]

logger = logging.getLogger(__name__)

#: every loss term any stage logs (raw, unweighted values) plus bookkeeping
LOSS_COLUMNS = ("loss", "l1", "esu", "udl", "codebook", "codebook_fused", "vq", "ce", "perceptual", "adv_g", "d_loss",
                "d_real", "d_fake")
LOG_COLUMNS = ("step", "wall_s", *LOSS_COLUMNS, "lr_g", "lr_d", "images_per_s", "val_psnr", "val_ssim")


def write_json_atomic(path: str | Path, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write_bytes(path, text.encode())


def environment() -> dict[str, Any]:
    """Versions and machine, for ``settings.json`` and benchmark files."""
    return {
        "ugtsr": __version__, "torch": torch.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine(),
        "processor": platform.processor(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


class RunLog:
    """``log.csv`` + optional TensorBoard writer for one run folder (rank 0 only)."""

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True, resume_step: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.csv_path = self.run_dir / "log.csv"
        if resume_step is not None and self.csv_path.is_file():
            self._truncate_after(resume_step)
        elif self.csv_path.exists():
            self.csv_path.unlink()  # a fresh start in an old folder: the old log would mislead
        new = not self.csv_path.is_file()
        self._fh = open(self.csv_path, "a", newline="")  # noqa: SIM115 - closed in close()
        self._csv = csv.DictWriter(self._fh, fieldnames=LOG_COLUMNS, extrasaction="ignore")
        if new:
            self._csv.writeheader()
            self._fh.flush()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.info("tensorboard is not installed: no TensorBoard events (pip install tensorboard)")
            else:
                self.tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=resume_step)

    def _truncate_after(self, step: int) -> None:
        with open(self.csv_path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("step", "").isdigit() and int(r["step"]) <= step]
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        atomic_write_bytes(self.csv_path, buf.getvalue().encode())

    def write(self, step: int, values: Mapping[str, float | None]) -> None:
        row = {"step": step, **{k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in values.items() if v is not None}}
        self._csv.writerow(row)
        self._fh.flush()
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and k not in ("wall_s",):
                    group = "val" if k.startswith("val_") else ("perf" if k in ("images_per_s", "lr_g", "lr_d") else "loss")
                    self.tb.add_scalar(f"{group}/{k.removeprefix('val_')}", v, step)

    def close(self) -> None:
        self._fh.close()
        if self.tb is not None:
            self.tb.close()


class CsvRows:
    """A CSV file whose header is the first row's keys; every row is flushed (a killed run keeps
    what it logged). ``CsvRows(None)`` writes nothing. Use as a context manager."""

    def __init__(self, path: str | Path | None) -> None:
        self._fh = open(path, "w", newline="") if path else None
        self._writer: csv.DictWriter | None = None

    def write(self, row: Mapping[str, Any]) -> None:
        if self._fh is None:
            return
        if self._writer is None:
            self._writer = csv.DictWriter(self._fh, fieldnames=list(row))
            self._writer.writeheader()
        self._writer.writerow(row)
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> CsvRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def launch_record(options: Mapping[str, Any], config: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    return {"options": dict(options), "config": dict(config), "environment": environment(),
            "command": [sys.executable, *sys.argv], **extra}
