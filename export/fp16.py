"""FP16 model preparation for a strongly typed FP16 ONNX (TensorRT 11 has no FP16 builder flag).

The network runs in FP16 with FP32 islands where FP16 breaks UGTSR:

* the LQ encoder and ``quant_in`` (everything that computes the feature ``z`` that is matched):
  FP16 rounding accumulated through the stem, the Swin groups and the up stages moves ``z`` enough
  to flip near-tie codes, and a flipped code changes a whole 8x8 output block. Measured on
  ``ugtsr_x4`` (FeMaSR's synthetic golden weights, 48x80 input): all-FP16 encoder 0.31 % flipped
  codes and 27.8 dB against FP32; FP32 encoder 0 flips and 59.8 dB
  (``scripts/experiments/fp16_islands.py``). The encoder works at the
  input resolution and below, so it is the cheap part; the decoder (x2 to x8) stays FP16;
* the whole matcher -- code distances, TopK, ArgMin and the Top-k fusion, whose output is
  re-quantized (eq. 8) -- with a float32 codebook; it works on the small latent grid;
* softmax and the MDTA L2 norms (``ugtsr.ops.softmax_fp32``, ``ugtsr.attention.MDTA``);
* GroupNorm and LayerNorm (whole-image statistics overflow FP16 on large images) -- swapped here
  for subclasses that compute in float32.

Input and output stay float32; the input is not rounded to FP16 (the encoder takes it as is). The same graph runs in ONNX Runtime (which has FP16 kernels for
these ops on CPU and CUDA) and parses into a strongly typed TensorRT network.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ugtsr.model import UGTSRNet

__all__ = ["to_fp16_with_fp32_islands", "half_with_fp32_norms"]


class _Fp32GroupNorm(nn.GroupNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


class _Fp32Encoder(nn.Module):
    """The LQ encoder in float32 inside a half model: the float32 image in, float32 compute, the
    latent out in float32 (for quant_in) and the skips in half (for the FP16 decoder)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.inner = encoder.float()

    def forward(self, x: torch.Tensor):
        latent, skips = self.inner(x.float())
        # latent stays float32 for quant_in; the skips feed the FP16 decoder
        return latent, [s.half() for s in skips]


class _Fp32Conv(nn.Module):
    """``quant_in`` in float32: ``z`` stays float32 into the (float32) matcher."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.inner = conv.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.float())


class _Fp32Matcher(nn.Module):
    """The matcher (Top-k fusion included) in float32: the fused feature is re-quantized (eq. 8),
    so its rounding decides codes just like ``z``'s does."""

    def __init__(self, matcher: nn.Module) -> None:
        super().__init__()
        self.inner = matcher.float()

    def forward(self, z: torch.Tensor, codebook: torch.Tensor):
        result = self.inner(z.float(), codebook.float())
        result.z_q = result.z_q.half()
        return result


class _Fp32LayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


def half_with_fp32_norms(model: UGTSRNet) -> UGTSRNet:
    """A half-precision copy of ``model`` with float32 GroupNorm / LayerNorm and a float32 codebook,
    but FP16 encoder and matcher (the first step of :func:`to_fp16_with_fp32_islands`; kept separate
    for ``scripts/experiments/fp16_islands.py``, which measures what the other islands buy)."""
    half = copy.deepcopy(model).eval()
    for module in half.modules():
        # Swap the class in place: same parameters and state-dict keys, float32 computation.
        if type(module) is nn.GroupNorm:
            module.__class__ = _Fp32GroupNorm
        elif type(module) is nn.LayerNorm:
            module.__class__ = _Fp32LayerNorm
    half.half()
    half.codebook.embedding.data = model.codebook.embedding.data.detach().float().clone()
    return half


def to_fp16_with_fp32_islands(model: UGTSRNet) -> UGTSRNet:
    """A half-precision copy of ``model`` with the FP32 islands above; ``model`` is untouched."""
    half = half_with_fp32_norms(model)
    half.encoder = _Fp32Encoder(copy.deepcopy(model.encoder).eval())
    half.quant_in = _Fp32Conv(copy.deepcopy(model.quant_in).eval())
    half.matcher = _Fp32Matcher(copy.deepcopy(model.matcher).eval())
    return half
