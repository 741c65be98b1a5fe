"""Start a model of another scale from a trained one: copy every tensor whose name and shape fit.

    python scripts/rescale_checkpoint.py runtime/models/ugtsr_tiny_x4.pt --scale 2 -o runs/x2_init.pt

The x2 and x4 models of a preset share the codebook, the decoder half, the Swin groups, the
matcher, the Align-Attention skips, the uncertainty head and the fidelity gate; they differ in the
LQ encoder's stride-2 stages, which start from their fresh initialisation (seed ``--seed``). The
colour fix keeps its width in LR pixels (sigma x new_scale / old_scale). The result is a starting
point for ``python -m ugtsr.train --stage sr --train-decoder --init OUT``, not a usable model.
"""
from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import torch

    from ugtsr.checkpoint import load_checkpoint, load_matching, save_checkpoint
    from ugtsr.errors import UGTSRError
    from ugtsr.model import build_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--scale", type=int, choices=(2, 4), required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        ckpt = load_checkpoint(args.checkpoint)
        old = ckpt.config
        if old.is_prior:
            raise UGTSRError(f"{args.checkpoint}: is an HQ prior (scale 1); pass an SR checkpoint")
        name = old.name.replace(f"_x{old.scale}", f"_x{args.scale}")
        config = old.replace(name=name, scale=args.scale, color_fix_sigma=old.color_fix_sigma * args.scale / old.scale)
        torch.manual_seed(args.seed)
        model = build_model(config)
        fresh = load_matching(model, ckpt.state_dict)
        copied = len(model.state_dict()) - len(fresh)
        meta = {"rescaled_from": str(args.checkpoint), "rescaled_fresh": fresh}
        save_checkpoint(args.output, model, **meta)
    except (UGTSRError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: x{old.scale} -> x{args.scale}, {copied} tensors copied, "
          f"{len(fresh)} fresh: {', '.join(fresh) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
