"""``python -m ugtsr.train``: train one stage; ``torchrun --nproc_per_node N -m ugtsr.train ...`` for DDP.

Examples::

    python -m ugtsr.train --stage prior --preset ugtsr_x4 --data HR/ --out runs/prior
    python -m ugtsr.train --stage uncertainty --preset ugtsr_x4 --data HR/ --out runs/s1 --init runs/prior/final.pt
    python -m ugtsr.train --stage sr --preset ugtsr_x4 --data HR/ --out runs/s2 --init runs/s1/final.pt
    python -m ugtsr.train ... --resume auto          # continue RUN_DIR/latest.pt after an interruption

A user error (bad option, missing data, a checkpoint that does not fit) prints one line to stderr and
exits with status 2.
"""
from __future__ import annotations

import logging
import os
import sys

from ..errors import UGTSRError
from .options import build_parser, options_from_args

__all__ = ["main"]


def _setup_logging(main_rank: bool) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("ugtsr").setLevel(logging.INFO if main_rank else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    _setup_logging(rank == 0)
    from .dist import init_distributed, shutdown_distributed
    from .trainer import train

    try:
        options = options_from_args(ns)
        info = init_distributed(options.device)
        result = train(options, info)
    except UGTSRError as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; continue from the last checkpoint with: --out {ns.out} --resume auto", file=sys.stderr)
        return 130
    finally:
        shutdown_distributed()
    if result.final_checkpoint is not None:
        val = f", val PSNR {result.val['psnr']:.3f} dB SSIM {result.val['ssim']:.4f}" if result.val else ""
        loss = f", loss {result.losses['loss']:.4f}" if "loss" in result.losses else ""
        print(f"{options.stage}: {result.step} iterations{loss}{val} -> {result.final_checkpoint}")
    return 0
