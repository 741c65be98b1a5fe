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
from pathlib import Path

import numpy as np
import torch

from benchmarks.quality import degraded_pair
from ugtsr.checkpoint import load_model
from ugtsr.metrics import psnr_y_torch
from ugtsr.postfilters import bicubic_upsample


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10(((a.clamp(0, 1) - b) ** 2).mean()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="runtime/models/ugtsr_tiny_x4.pt")
    p.add_argument("--data", default="data/photos/val")
    p.add_argument("--pipelines", nargs="+", default=["bicubic", "bsrgan", "bsrgan_plus", "realesrgan", "classic"])
    p.add_argument("--crop", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    net = load_model(args.model).eval()
    gate = net.fidelity_gate
    if gate is None or gate.global_head is None:
        raise SystemExit(f"{args.model}: the model has no fidelity gate with an image-level estimate")
    const = gate.body[-1].bias + (gate.context[-1].bias if gate.context is not None else 0)
    print("| photo | pipeline | w (gate) | w* (optimal) | network PSNR (RGB) | bicubic | gated (shipped output) "
          "| PSNR-Y bicubic | PSNR-Y shipped | PSNR-Y oracle w* |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    means: dict[str, list[tuple[float, ...]]] = {}
    for path in sorted(Path(args.data).glob("*.png")):
        for pipe in args.pipelines:
            lr, hr = degraded_pair(path, path.name, scale=net.config.scale, pipeline=pipe, seed=args.seed, crop=args.crop)
            lq = torch.from_numpy(np.ascontiguousarray(lr[:, :, ::-1], dtype=np.float32) / 255).permute(2, 0, 1)[None]
            target = torch.from_numpy(np.ascontiguousarray(hr, dtype=np.float32)).permute(2, 0, 1)[None]
            with torch.no_grad():
                gated = net(lq).sr
                saved, net.fidelity_gate = net.fidelity_gate, None
                sr = net(lq).sr
                net.fidelity_gate = saved
                bic = bicubic_upsample(lq, gate.bicubic, gate.scale)
                w = float(torch.sigmoid(gate.global_estimate(lq)[0, 0] + const))
            d = bic - sr
            w_opt = float(((d * (target - sr)).sum() / (d * d).sum().clamp_min(1e-12)).clamp(0, 1))
            oracle = sr + w_opt * d
            ys = [float(psnr_y_torch(x.clamp(0, 1), target, crop_border=net.config.scale)) for x in (bic, gated, oracle)]
            means.setdefault(pipe, []).append(tuple(ys))
            print(f"| {path.stem} | {pipe} | {w:.3f} | {w_opt:.3f} | {_psnr(sr, target):.2f} | {_psnr(bic, target):.2f} "
                  f"| {_psnr(gated, target):.2f} | {ys[0]:.2f} | {ys[1]:.2f} | {ys[2]:.2f} |")
    print("\n| pipeline | PSNR-Y bicubic | shipped - bicubic | oracle w* - bicubic |\n| --- | ---: | ---: | ---: |")
    for pipe, rows in means.items():
        b, g, o = (float(np.mean(c)) for c in zip(*rows))
        print(f"| {pipe} | {b:.2f} | {g - b:+.2f} | {o - b:+.2f} |")


if __name__ == "__main__":
    main()
