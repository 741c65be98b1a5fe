"""Does a back-projection residual tell when the fidelity gate should lean on bicubic (issue 14)?

For every photo of ``data/photos/val`` (512 px centre crops) and ``data/photos/train`` (384 px) and
each pipeline (first draw of seed 0, as ``benchmarks.quality`` draws them): the shipped x4 gate's
image-level weight ``w``, the optimal weight ``w*`` (least squares against the HR, clamped to [0, 1]),
and the log ratio of the network's back-projection residual (its output bicubic-downscaled minus the
LR, mean square) to the LR's high-pass energy (LR minus its 3x3 mean). A clean LR is the downscaled
HR, so a faithful output downscales back to it; what the network removes or adds on a degraded LR
shows up as residual. Prints one line per image and writes ``/tmp/exp/feat.json``. Run from the
repository root with the dev venv::

    python scripts/experiments/backprojection.py
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.quality import degraded_pair
from ugtsr.checkpoint import load_model
from ugtsr.postfilters import bicubic_upsample

PIPELINES = ("bicubic", "bsrgan", "bsrgan_plus", "realesrgan", "classic")


def _down(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=0.25, mode="bicubic", antialias=True, align_corners=False)


def main() -> None:
    torch.set_num_threads(1)
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
                    sr = net(lq).sr
                    net.fidelity_gate = saved
                    bic = bicubic_upsample(lq, gate.bicubic, 4)
                    logit = float(gate.global_estimate(lq)[0, 0] + const)
                d = bic - sr
                w_opt = float(((d * (target - sr)).sum() / (d * d).sum().clamp_min(1e-12)).clamp(0, 1))
                e_hp = float((lq - F.avg_pool2d(lq, 3, 1, 1, count_include_pad=False)).square().mean())
                r_s = float((_down(sr) - lq).square().mean())
                row = dict(split=split, photo=path.stem, pipe=pipe, w=float(1 / (1 + np.exp(-logit))), w_opt=w_opt,
                           e_hp=e_hp, r_s=r_s, feature=float(np.log(r_s / e_hp)))
                rows.append(row)
                print(f"{split} {path.stem[:14]:14s} {pipe:12s} w {row['w']:.2f} w* {w_opt:.2f} "
                      f"log(residual/high-pass) {row['feature']:+.2f}", flush=True)
    for split in ("val", "train"):
        sel = [r for r in rows if r["split"] == split]
        for pipe in PIPELINES:
            f = [r["feature"] for r in sel if r["pipe"] == pipe]
            w = [r["w_opt"] for r in sel if r["pipe"] == pipe]
            print(f"{split} {pipe}: feature {min(f):+.2f}..{max(f):+.2f}, w* {min(w):.2f}..{max(w):.2f}")
        f, w, g = (np.array([r[k] for r in sel]) for k in ("feature", "w_opt", "w"))
        print(f"{split}: corr(feature, w*) {np.corrcoef(f, w)[0, 1]:+.2f}, corr(gate w, w*) {np.corrcoef(g, w)[0, 1]:+.2f}")
    Path("/tmp/exp").mkdir(parents=True, exist_ok=True)
    Path("/tmp/exp/feat.json").write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
