"""Training of the three UGTSR stages: the HQ prior, stage I (uncertainty) and stage II (UGTSR).

``python -m ugtsr.train --stage {prior,uncertainty,sr} --preset NAME --data HR_DIR --out RUN_DIR``;
multi-process with ``torchrun``. In Python: ``train(TrainOptions(...))``.
"""
from .cli import main
from .options import TrainOptions, build_parser, options_from_args
from .trainer import Trainer, TrainResult, train

__all__ = ["TrainOptions", "Trainer", "TrainResult", "train", "main", "build_parser", "options_from_args"]
