"""Could the uncertainty map tell the fidelity gate where to lean on bicubic (issue 14)?

For every photo of ``data/photos/val`` (512 px centre crops) and ``data/photos/train`` (384 px) and
each pipeline (first draw of seed 0, as ``benchmarks.quality``): the optimal image-level blend weight
``w*``, the shipped x4 gate's ``w``, the mean and 90 % quantile of the network's uncertainty output
``s = ln theta`` (averaged over the colour channels), and the per-pixel correlation of ``s`` with how
much worse the network is than bicubic there (squared error of the network minus that of bicubic).
Prints one line per image, then the correlations with ``w*`` per split. Run from the repository root
with the dev venv::

    python scripts/experiments/uncertainty_gate.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmarks.quality import degraded_pair
from ugtsr.checkpoint import load_model
from ugtsr.postfilters import bicubic_upsample

PIPELINES = ("bicubic", "bsrgan", "bsrgan_plus", "realesrgan", "classic")


def main() -> None:
    net = load_model("runtime/models/ugtsr_tiny_x4.pt").eval()
    gate = net.fidelity_gate
    const = gate.body[-1].bias + gate.context[-1].bias
    rows = []
    for split, crop in (("val", 512), ("train", 384)):
        for path in sorted(Path("data/photos", split).glob("*.png")):
            for pipe in PIPELINES:
                lr, hr = degraded_pair(path, path.name, scale=4, pipeline=pipe, seed=0, crop=crop)
                lq = torch.from_numpy(np.ascontiguousarray(lr[:, :, ::-1], dtype=np.float32) / 255).permute(2, 0, 1)[None]
                target = torch.from_numpy(np.ascontiguousarray(hr, dtype=np.float32)).permute(2, 0, 1)[None]
                with torch.no_grad():
                    saved, net.fidelity_gate = net.fidelity_gate, None
                    out = net(lq)
                    net.fidelity_gate = saved
                    bic = bicubic_upsample(lq, gate.bicubic, 4)
                    w = float(torch.sigmoid(gate.global_estimate(lq)[0, 0] + const))
                sr, s = out.sr, out.uncertainty.mean(1)
                d = bic - sr
                w_opt = float(((d * (target - sr)).sum() / (d * d).sum().clamp_min(1e-12)).clamp(0, 1))
                worse = ((sr - target).square().mean(1) - (bic - target).square().mean(1)).flatten().numpy()
                corr_px = float(np.corrcoef(s.flatten().numpy(), worse)[0, 1])
                row = (split, path.stem, pipe, w_opt, w, float(s.mean()), float(torch.quantile(s.flatten(), 0.9)), corr_px)
                rows.append(row)
                print(f"{split} {path.stem[:14]:14s} {pipe:12s} w* {w_opt:.2f} w {w:.2f} mean s {row[5]:+.2f} "
                      f"q90 s {row[6]:+.2f} corr_px(s, network worse) {corr_px:+.2f}", flush=True)
    for split in ("val", "train"):
        sel = [r for r in rows if r[0] == split]
        w_opt = np.array([r[3] for r in sel])
        corr = {name: np.corrcoef([r[j] for r in sel], w_opt)[0, 1] for j, name in ((4, "gate w"), (5, "mean s"), (6, "q90 s"))}
        print(f"{split}: corr with w*: " + ", ".join(f"{k} {v:+.2f}" for k, v in corr.items())
              + f"; median per-pixel corr(s, network worse) {np.median([r[7] for r in sel]):+.2f}")


if __name__ == "__main__":
    main()
