"""Does a back-projection residual tell when the fidelity gate should lean on bicubic (issue 14)?

For the images of ``gate_samples`` (held-out and training photos under five pipelines): the shipped
x4 gate's image-level weight ``w``, the optimal weight ``w*``, and the log ratio of the network's
back-projection residual (its output bicubic-downscaled minus the LR, mean square) to the LR's
high-pass energy (LR minus its 3x3 mean). A clean LR is the downscaled HR, so a faithful output
downscales back to it; what the network removes or adds on a degraded LR shows up as residual.
Prints one line per image, the range per pipeline and the correlations with ``w*``. Run from the
repository root with the dev venv::

    python scripts/experiments/backprojection.py
"""
from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from gate_samples import PIPELINES, samples


def main() -> None:
    rows = []
    for s in samples():
        down = F.interpolate(s.sr, scale_factor=1 / (s.sr.shape[-1] // s.lq.shape[-1]), mode="bicubic",
                             antialias=True, align_corners=False)
        e_hp = float((s.lq - F.avg_pool2d(s.lq, 3, 1, 1, count_include_pad=False)).square().mean())
        feature = float(np.log(float((down - s.lq).square().mean()) / e_hp))
        rows.append((s.split, s.pipeline, s.w, s.w_opt, feature))
        print(f"{s.split} {s.photo[:14]:14s} {s.pipeline:12s} w {s.w:.2f} w* {s.w_opt:.2f} "
              f"log(residual/high-pass) {feature:+.2f}", flush=True)
    for split in ("val", "train"):
        sel = [r for r in rows if r[0] == split]
        for pipe in PIPELINES:
            f = [r[4] for r in sel if r[1] == pipe]
            w = [r[3] for r in sel if r[1] == pipe]
            print(f"{split} {pipe}: feature {min(f):+.2f}..{max(f):+.2f}, w* {min(w):.2f}..{max(w):.2f}")
        g, w, f = (np.array([r[j] for r in sel]) for j in (2, 3, 4))
        print(f"{split}: corr(feature, w*) {np.corrcoef(f, w)[0, 1]:+.2f}, corr(gate w, w*) {np.corrcoef(g, w)[0, 1]:+.2f}")


if __name__ == "__main__":
    main()
