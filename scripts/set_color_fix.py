"""Write a copy of a checkpoint with the colour fix (``ugtsr.postfilters.ColorFix``) switched on, changed or off.

    python scripts/set_color_fix.py runs/s2/final.pt 4 -o runs/s2/final_cf4.pt

The fix has no parameters, so this only changes the config that travels in the checkpoint; the
weights are copied unchanged (EMA copy included). Useful to compare a model with and without the
fix, or to add it to a model trained without it (``--color-fix`` in ``ugtsr.train`` trains through it).
"""
from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from ugtsr.checkpoint import load_checkpoint, save_checkpoint
    from ugtsr.errors import UGTSRError
    from ugtsr.model import build_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("sigma", type=float, help="Gaussian sigma in output pixels; 0 switches the fix off")
    p.add_argument("-o", "--output", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        ckpt = load_checkpoint(args.checkpoint)
        model = build_model(ckpt.config.replace(color_fix_sigma=args.sigma))
        model.load_state_dict(ckpt.state_dict)
        meta = {**ckpt.metadata, "color_fix_from": str(args.checkpoint)}
        save_checkpoint(args.output, model, ema=ckpt.ema_state_dict, **meta)
    except (UGTSRError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} (color_fix_sigma {args.sigma:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
