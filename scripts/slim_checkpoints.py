"""Model-only copies of training runs' ``final.pt`` (no optimizer, discriminator or EMA state), for
fetching from a lent GPU: ``RUNS/NAME/final.pt`` -> ``OUT/NAME.pt`` with the run's scalar metadata.

    python scripts/slim_checkpoints.py RUNS OUT [NAME ...]     # default: every run in RUNS
    python scripts/slim_checkpoints.py --files SRC DST [SRC DST ...] [--license TEXT]

Prints ``slim NAME BYTES`` per copy and ``missing NAME`` for a run without ``final.pt``. ``--files``
copies the given checkpoints to the given paths (how ``scripts/finalize_default_model_v2.sh`` ships a
model), ``--license`` sets the copies' ``license`` metadata.
"""
from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def slim(src: Path, dst: Path, license_text: str | None = None) -> int:
    """Write the model and the scalar metadata of checkpoint ``src`` to ``dst``; return its size."""
    from ugtsr.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(src)
    meta = {k: v for k, v in ck.metadata.items() if isinstance(v, (str, int, float, bool, type(None)))}
    if license_text is not None:
        meta["license"] = license_text
    save_checkpoint(dst, ck.build_model(), **meta)
    return dst.stat().st_size


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="*", type=Path)
    p.add_argument("--files", action="store_true", help="PATHS are SRC DST pairs of checkpoint files")
    p.add_argument("--license", default=None, help="the copies' license metadata")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.files:
        if not args.paths or len(args.paths) % 2:
            print("usage: python scripts/slim_checkpoints.py --files SRC DST [SRC DST ...]", file=sys.stderr)
            return 2
        for src, dst in zip(args.paths[::2], args.paths[1::2]):
            print("slim", dst, slim(src, dst, args.license))
        return 0
    if len(args.paths) < 2:
        print("usage: python scripts/slim_checkpoints.py RUNS OUT [NAME ...]", file=sys.stderr)
        return 2
    runs, out, *names = args.paths
    names = [str(n) for n in names] or sorted(p.name for p in runs.iterdir() if p.is_dir())
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = runs / name / "final.pt"
        if not path.is_file():
            print("missing", name)
            continue
        print("slim", name, slim(path, out / f"{name}.pt", args.license))
    return 0


if __name__ == "__main__":
    sys.exit(main())
