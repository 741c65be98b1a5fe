"""Average the weights of several checkpoints of one run (stochastic weight averaging).

    python scripts/average_checkpoints.py runs/s2/ckpt_*.pt --last 5 -o runs/s2/swa.pt

All checkpoints must hold the same config. Floating-point tensors are averaged; integer buffers
are taken from the newest checkpoint. The result is a normal UGTSR checkpoint whose metadata lists
its sources.
"""
from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import argparse
import sys
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    from ugtsr.checkpoint import load_checkpoint, save_checkpoint
    from ugtsr.errors import UGTSRError

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--last", type=int, default=None, help="only the last N (by file name order)")
    p.add_argument("-o", "--output", type=Path, required=True)
    args = p.parse_args(argv)
    paths = sorted(args.checkpoints)[-args.last:] if args.last else sorted(args.checkpoints)
    try:
        cks = [load_checkpoint(q) for q in paths]
        if any(c.config != cks[0].config for c in cks):
            raise UGTSRError("the checkpoints hold different model configs")
        state = {}
        for key, ref in cks[-1].state_dict.items():
            if ref.is_floating_point():
                state[key] = torch.stack([c.state_dict[key].double() for c in cks]).mean(0).to(ref.dtype)
            else:
                state[key] = ref
        model = cks[-1].build_model()
        model.load_state_dict(state, strict=True)
        meta = {k: v for k, v in cks[-1].metadata.items() if isinstance(v, (str, int, float, bool, type(None)))}
        meta["averaged_from"] = [str(q) for q in paths]
        save_checkpoint(args.output, model, **meta)
    except UGTSRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} (average of {len(paths)}: {', '.join(q.name for q in paths)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
