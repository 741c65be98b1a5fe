"""What the fidelity gate's image-level estimate chooses, per held-out photo and degradation (issue 14).

For each photo of ``--data`` (centre crop ``--crop``, first draw of ``--seed`` as in
``benchmarks.quality``) and each pipeline: the gate's image-level blend weight ``w`` (sigmoid of the
global logit plus the folded body/context biases; 1 = bicubic, 0 = the network) and the weight ``w*``
that would have minimised the squared error of ``sr + w (bic - sr)`` against the HR for that image
(clamped to [0, 1]), with the PSNR of the network alone, of bicubic and of the gated output (RGB),
and the PSNR-Y of bicubic, of the shipped output and of an oracle that blends with ``w*`` (what a
perfect image-level estimate would give), with their means per pipeline. Run from the repository
root with the dev venv::

    python scripts/experiments/gate_weights.py --model runtime/models/ugtsr_tiny_x4.pt --data data/photos/val
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from gate_samples import PIPELINES, samples

from ugtsr.metrics import psnr_y_torch


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10(((a.clamp(0, 1) - b) ** 2).mean()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="runtime/models/ugtsr_tiny_x4.pt")
    p.add_argument("--data", default="data/photos/val")
    p.add_argument("--pipelines", nargs="+", default=list(PIPELINES))
    p.add_argument("--crop", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print("| photo | pipeline | w (gate) | w* (optimal) | network PSNR (RGB) | bicubic | gated (shipped output) "
          "| PSNR-Y bicubic | PSNR-Y shipped | PSNR-Y oracle w* |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    means: dict[str, list[tuple[float, ...]]] = {}
    for s in samples(args.model, splits=((args.data, args.data, args.crop),), pipelines=args.pipelines, seed=args.seed):
        scale = s.target.shape[-1] // s.lq.shape[-1]
        oracle = s.sr + s.w_opt * (s.bicubic - s.sr)
        ys = [float(psnr_y_torch(x.clamp(0, 1), s.target, crop_border=scale)) for x in (s.bicubic, s.gated, oracle)]
        means.setdefault(s.pipeline, []).append(tuple(ys))
        print(f"| {s.photo} | {s.pipeline} | {s.w:.3f} | {s.w_opt:.3f} | {_psnr(s.sr, s.target):.2f} | {_psnr(s.bicubic, s.target):.2f} "
              f"| {_psnr(s.gated, s.target):.2f} | {ys[0]:.2f} | {ys[1]:.2f} | {ys[2]:.2f} |")
    print("\n| pipeline | PSNR-Y bicubic | shipped - bicubic | oracle w* - bicubic |\n| --- | ---: | ---: | ---: |")
    for pipe, rows in means.items():
        b, g, o = (float(np.mean(c)) for c in zip(*rows))
        print(f"| {pipe} | {b:.2f} | {g - b:+.2f} | {o - b:+.2f} |")


if __name__ == "__main__":
    main()
