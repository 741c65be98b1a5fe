"""Before/after figure for the README: LR (nearest), bicubic, the model, HR, and the uncertainty map.

    python scripts/make_figure.py --model runtime/models/ugtsr_tiny_x4.onnx \\
        --hr data/photos/val/chelsea.png --crop 150,60,128 --out docs/before_after.png

The LR input is made from the HR photo with the seeded BSRGAN degradation (the model card's
protocol); crops are taken at the same place in every panel and enlarged with nearest
neighbour so pixels stay visible.
"""
from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import argparse
from pathlib import Path

import cv2
import numpy as np


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def main(argv: list[str] | None = None) -> int:
    from runtime import Upscaler
    from ugtsr.degrade import PIPELINES
    from ugtsr.fileio import atomic_write_bytes

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model (default: the shipped one)")
    p.add_argument("--hr", required=True, type=Path)
    p.add_argument("--crop", default=None, help="x,y,size of the crop in HR pixels (default: centre 128)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--zoom", type=int, default=2)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    hr_bgr = cv2.imread(str(args.hr), cv2.IMREAD_COLOR)
    pair = PIPELINES["bsrgan"](hr_bgr[..., ::-1].astype(np.float32) / 255.0, scale=4,
                               rng=np.random.default_rng(args.seed))
    lr = np.round(pair.lr[..., ::-1] * 255).astype(np.uint8)
    hr = np.round(pair.hr[..., ::-1] * 255).astype(np.uint8)
    with Upscaler(args.model, tile=0) as up:
        sr, unc = up.upscale_with_uncertainty(lr)
    H, W = hr.shape[:2]
    bic = cv2.resize(lr, (W, H), interpolation=cv2.INTER_CUBIC)
    near = cv2.resize(lr, (W, H), interpolation=cv2.INTER_NEAREST)
    if unc is not None:
        from runtime.infer import uncertainty_heatmap
        heat = uncertainty_heatmap(unc)
    else:
        heat = np.zeros_like(hr)
    if args.crop:
        x, y, s = (int(v) for v in args.crop.split(","))
    else:
        s = min(128, H, W)
        x, y = (W - s) // 2, (H - s) // 2
    panels = []
    for img, name in [(near, "LR (nearest)"), (bic, "bicubic"), (sr, "UGTSR tiny x4"), (hr, "HR"),
                      (heat, "uncertainty s")]:
        c = img[y:y + s, x:x + s]
        c = cv2.resize(c, (s * args.zoom, s * args.zoom), interpolation=cv2.INTER_NEAREST)
        panels.append(_label(c, name))
    sep = np.full((s * args.zoom, 4, 3), 255, np.uint8)
    row = np.concatenate([x for pnl in panels for x in (pnl, sep)][:-1], axis=1)
    ok, buf = cv2.imencode(".png", row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out, buf.tobytes())
    print(f"wrote {args.out} ({row.shape[1]}x{row.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
