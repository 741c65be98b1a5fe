"""Does a noise-floor statistic of the LR tell a clean LR from a degraded one (issue 14, the gate)?

For every photo of ``--data`` (centre crop ``--crop``, first draw of seed 0 as in ``benchmarks.quality``)
and each pipeline: the ``--q`` quantile over the image of the local standard deviation (``--win`` x
``--win`` LR pixels) of the luma's residual against its 3x3 mean. Flat regions of a clean LR have
almost no residual; noise and JPEG leave a floor there whatever the content, blur lowers it. Prints
one row per photo and, per pipeline, the range over the photos. Run from the repository root::

    python scripts/experiments/noise_floor.py --data data/photos/val
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from benchmarks.quality import degraded_pair


def noise_floor(lr_bgr: np.ndarray, *, win: int, q: float) -> float:
    y = cv2.cvtColor(lr_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255
    res = y - cv2.blur(y, (3, 3), borderType=cv2.BORDER_REFLECT)
    mean = cv2.blur(res, (win, win), borderType=cv2.BORDER_REFLECT)
    var = cv2.blur(res * res, (win, win), borderType=cv2.BORDER_REFLECT) - mean * mean
    return float(np.quantile(np.sqrt(np.clip(var, 0, None)), q))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/photos/val")
    p.add_argument("--pipelines", nargs="+", default=["bicubic", "bsrgan", "bsrgan_plus", "realesrgan", "classic"])
    p.add_argument("--crop", type=int, default=512)
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--win", type=int, default=4)
    p.add_argument("--q", type=float, default=0.1)
    args = p.parse_args()
    rows: dict[str, list[float]] = {k: [] for k in args.pipelines}
    print("| photo | " + " | ".join(args.pipelines) + " |\n|---|" + "---:|" * len(args.pipelines))
    for path in sorted(Path(args.data).glob("*.png")):
        vals = []
        for pipe in args.pipelines:
            lr, _ = degraded_pair(path, path.name, scale=args.scale, pipeline=pipe, seed=0, crop=args.crop)
            v = noise_floor(lr, win=args.win, q=args.q) * 1000
            rows[pipe].append(v)
            vals.append(v)
        print(f"| {path.stem} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
    print("\n| pipeline | min | max |\n|---|---:|---:|")
    for pipe, v in rows.items():
        print(f"| {pipe} | {min(v):.2f} | {max(v):.2f} |")


if __name__ == "__main__":
    main()
