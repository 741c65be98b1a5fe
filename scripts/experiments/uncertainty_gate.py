"""Could the uncertainty map tell the fidelity gate where to lean on bicubic (issue 14)?

For the images of ``gate_samples`` (held-out and training photos under five pipelines): the optimal
image-level blend weight ``w*``, the shipped x4 gate's ``w``, the mean and 90 % quantile of the
network's uncertainty output ``s = ln theta`` (averaged over the colour channels), and the per-pixel
correlation of ``s`` with how much worse the network is than bicubic there (squared error of the
network minus that of bicubic). Prints one line per image, then the correlations per split. Run from
the repository root with the dev venv::

    python scripts/experiments/uncertainty_gate.py
"""
from __future__ import annotations

import numpy as np
import torch
from gate_samples import samples


def main() -> None:
    rows = []
    for smp in samples():
        s = smp.uncertainty.mean(1)
        worse = ((smp.sr - smp.target).square().mean(1) - (smp.bicubic - smp.target).square().mean(1)).flatten()
        corr_px = float(np.corrcoef(s.flatten().numpy(), worse.numpy())[0, 1])
        row = (smp.split, smp.w_opt, smp.w, float(s.mean()), float(torch.quantile(s.flatten(), 0.9)), corr_px)
        rows.append(row)
        print(f"{smp.split} {smp.photo[:14]:14s} {smp.pipeline:12s} w* {smp.w_opt:.2f} w {smp.w:.2f} "
              f"mean s {row[3]:+.2f} q90 s {row[4]:+.2f} corr_px(s, network worse) {corr_px:+.2f}", flush=True)
    for split in ("val", "train"):
        sel = [r for r in rows if r[0] == split]
        w_opt = np.array([r[1] for r in sel])
        corr = {name: np.corrcoef([r[j] for r in sel], w_opt)[0, 1] for j, name in ((2, "gate w"), (3, "mean s"), (4, "q90 s"))}
        print(f"{split}: corr with w*: " + ", ".join(f"{k} {v:+.2f}" for k, v in corr.items())
              + f"; median per-pixel corr(s, network worse) {np.median([r[5] for r in sel]):+.2f}")


if __name__ == "__main__":
    main()
