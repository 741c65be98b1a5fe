"""Console-command entry points for the parts that need torch (``ugtsr-export``, ``ugtsr-train``).

A ``pip install ".[runtime]"`` has no torch (issue 11 item 9). These wrappers are torch-free: they
check that torch can be imported before importing the real CLI, so a user who runs ``ugtsr-train``
on a runtime-only install reads one line naming what to install instead of a ``ModuleNotFoundError``
traceback. The ``python -m`` forms call the real ``main`` directly.
"""
from __future__ import annotations

import importlib
import sys

from ugtsr.errors import torch_missing_message

__all__ = ["export_main", "train_main", "torch_missing_message"]


def _run(command: str, extra: str, module: str, argv: list[str] | None) -> int:
    problem = torch_missing_message(command, extra)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    return int(importlib.import_module(module).main(argv))


def export_main(argv: list[str] | None = None) -> int:
    """``ugtsr-export`` = ``python -m export.onnx``."""
    return _run("ugtsr-export", "export", "export.onnx", argv)


def train_main(argv: list[str] | None = None) -> int:
    """``ugtsr-train`` = ``python -m ugtsr.train``."""
    return _run("ugtsr-train", "train", "ugtsr.train.cli", argv)
