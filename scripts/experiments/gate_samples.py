"""The images the gate experiments look at (issue 14): each photo of ``data/photos/val`` (512 px centre
crops) and ``data/photos/train`` (384 px) under each pipeline, first draw of seed 0 as
``benchmarks.quality`` draws them, with the shipped x4 model's output before its gate, the gate's
image-level weight, the gated output and the optimal weight. Used by ``gate_weights.py``,
``backprojection.py`` and ``uncertainty_gate.py``.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.quality import degraded_pair
from ugtsr.checkpoint import load_model
from ugtsr.postfilters import bicubic_upsample

PIPELINES = ("bicubic", "bsrgan", "bsrgan_plus", "realesrgan", "classic")
#: (name, folder, centre-crop side)
SPLITS = (("val", "data/photos/val", 512), ("train", "data/photos/train", 384))


@dataclass
class Sample:
    split: str
    photo: str
    pipeline: str
    lq: torch.Tensor  # (1, 3, h, w) RGB in [0, 1]
    target: torch.Tensor  # (1, 3, H, W)
    sr: torch.Tensor  # the network's output before the gate
    uncertainty: torch.Tensor
    bicubic: torch.Tensor
    gated: torch.Tensor  # the shipped output: the gate applied to sr
    w: float  # the gate's image-level weight towards bicubic
    w_opt: float  # the weight that minimises the image's squared error, clamped to [0, 1]


def samples(model: str = "runtime/models/ugtsr_tiny_x4.pt", *, splits=SPLITS, pipelines=PIPELINES,
            seed: int = 0) -> Iterator[Sample]:
    net = load_model(model).eval()
    gate = net.fidelity_gate
    if gate is None or gate.global_head is None:
        raise SystemExit(f"{model}: the model has no fidelity gate with an image-level estimate")
    const = gate.body[-1].bias + (gate.context[-1].bias if gate.context is not None else 0)
    for split, folder, crop in splits:
        for path in sorted(Path(folder).glob("*.png")):
            for pipe in pipelines:
                lr, hr = degraded_pair(path, path.name, scale=net.config.scale, pipeline=pipe, seed=seed, crop=crop)
                lq = torch.from_numpy(np.ascontiguousarray(lr[:, :, ::-1], dtype=np.float32) / 255).permute(2, 0, 1)[None]
                target = torch.from_numpy(np.ascontiguousarray(hr, dtype=np.float32)).permute(2, 0, 1)[None]
                with torch.no_grad():
                    gated = net(lq).sr
                    saved, net.fidelity_gate = net.fidelity_gate, None
                    out = net(lq)
                    net.fidelity_gate = saved
                    bic = bicubic_upsample(lq, gate.bicubic, gate.scale)
                    w = float(torch.sigmoid(gate.global_estimate(lq)[0, 0] + const))
                d = bic - out.sr
                w_opt = float(((d * (target - out.sr)).sum() / (d * d).sum().clamp_min(1e-12)).clamp(0, 1))
                yield Sample(split, path.stem, pipe, lq, target, out.sr, out.uncertainty, bic, gated, w, w_opt)
