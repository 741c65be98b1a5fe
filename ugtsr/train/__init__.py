"""Training of the three UGTSR stages: the HQ prior, stage I (uncertainty) and stage II (UGTSR).

``python -m ugtsr.train --stage {prior,uncertainty,sr} --preset NAME --data HR_DIR --out RUN_DIR``;
multi-process with ``torchrun``. In Python: ``train(TrainOptions(...))``.

Names resolve lazily (PEP 562) so that ``python -m ugtsr.train`` can say in one line that torch is
missing before anything imports it.
"""
from __future__ import annotations

from .._lazy import lazy_attributes

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


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
