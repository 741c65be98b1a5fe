"""Training of the three UGTSR stages: the HQ prior, stage I (uncertainty) and stage II (UGTSR).

``python -m ugtsr.train --stage {prior,uncertainty,sr} --preset NAME --data HR_DIR --out RUN_DIR``;
multi-process with ``torchrun``. In Python: ``train(TrainOptions(...))``.

Names resolve lazily (PEP 562) so that ``python -m ugtsr.train`` can say in one line that torch is
missing before anything imports it.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "main": "ugtsr.train.cli",
    "TrainOptions": "ugtsr.train.options",
    "build_parser": "ugtsr.train.options",
    "options_from_args": "ugtsr.train.options",
    "Trainer": "ugtsr.train.trainer",
    "TrainResult": "ugtsr.train.trainer",
    "train": "ugtsr.train.trainer",
}

__all__ = ["TrainOptions", "Trainer", "TrainResult", "train", "main", "build_parser", "options_from_args"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ugtsr.train' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
