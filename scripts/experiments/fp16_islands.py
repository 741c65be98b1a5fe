"""FP16 islands: flipped codes and PSNR against FP32 with the encoder in FP16 or FP32.

    python scripts/experiments/fp16_islands.py x4      # ugtsr_x4 with FeMaSR's synthetic golden weights
    python scripts/experiments/fp16_islands.py tiny

Variants (input 1x3x48x80, uniform noise, seed 0; PyTorch on CPU):
  A    -- all FP16 except distances/TopK/ArgMin, softmax and norms (the first ``export.fp16`` policy;
          input rounded to FP16);
  swin -- A with the Swin stack and quant_in in FP32;
  enc  -- A with the whole encoder and quant_in in FP32;
  now  -- ``export.fp16.to_fp16_with_fp32_islands`` as shipped (encoder, quant_in and the whole
          matcher in FP32, float32 input).
Source of the README's "0.31 % flipped codes, 27.7 dB" (A) and "no flips" figures.
"""
from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from export.fp16 import half_with_fp32_norms, to_fp16_with_fp32_islands  # noqa: E402
from tests.export.conftest import tiny_model, ugtsr_x4_model  # noqa: E402


class _F32(nn.Module):
    def __init__(self, mod: nn.Module, *, pair: bool = False) -> None:
        super().__init__()
        self.mod, self.pair = mod.float(), pair

    def forward(self, x):
        if self.pair:  # the encoder returns (latent, skips)
            lat, skips = self.mod(x.float())
            return lat.half(), [k.half() for k in skips]
        return self.mod(x.float()).half()


def main() -> None:
    torch.set_num_threads(1)
    model = ugtsr_x4_model() if sys.argv[1:] == ["x4"] else tiny_model()
    x = torch.rand(1, 3, 48, 80, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model.forward_unpadded(x)
    for name in ("A", "swin", "enc", "now"):
        if name == "now":
            net, inp = to_fp16_with_fp32_islands(model), x
        else:
            net, inp = half_with_fp32_norms(model), x.half()
            if name == "swin":
                net.encoder.swin = _F32(copy.deepcopy(model.encoder.swin))
                net.quant_in = _F32(copy.deepcopy(model.quant_in))
            if name == "enc":
                net.encoder = _F32(copy.deepcopy(model.encoder), pair=True)
                net.quant_in = _F32(copy.deepcopy(model.quant_in))
        with torch.no_grad():
            out = net.forward_unpadded(inp)
        mse = ((out.sr.float().clamp(0, 1) - ref.sr.clamp(0, 1)) ** 2).mean().item()
        flips = (out.indices != ref.indices).float().mean().item()
        print(f"{name:5} PSNR vs FP32 {10 * math.log10(1 / mse):6.1f} dB   flipped codes {flips:.2%}")


if __name__ == "__main__":
    main()
