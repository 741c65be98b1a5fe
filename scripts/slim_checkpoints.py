"""Model-only copies of training runs' ``final.pt`` (no optimizer, discriminator or EMA state), for
fetching from a lent GPU: ``RUNS/NAME/final.pt`` -> ``OUT/NAME.pt`` with the run's scalar metadata.

    python scripts/slim_checkpoints.py RUNS OUT [NAME ...]     # default: every run in RUNS

Prints ``slim NAME BYTES`` per copy and ``missing NAME`` for a run without ``final.pt``.
"""
from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print("usage: python scripts/slim_checkpoints.py RUNS OUT [NAME ...]", file=sys.stderr)
        return 2
    from ugtsr.checkpoint import load_checkpoint, save_checkpoint

    runs, out = Path(args[0]), Path(args[1])
    names = args[2:] or sorted(p.name for p in runs.iterdir() if p.is_dir())
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = runs / name / "final.pt"
        if not path.is_file():
            print("missing", name)
            continue
        ck = load_checkpoint(path)
        meta = {k: v for k, v in ck.metadata.items() if isinstance(v, (str, int, float, bool, type(None)))}
        save_checkpoint(out / f"{name}.pt", ck.build_model(), **meta)
        print("slim", name, (out / f"{name}.pt").stat().st_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
