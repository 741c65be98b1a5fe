"""FP16 model preparation for a strongly typed FP16 ONNX (TensorRT 11 has no FP16 builder flag).

The network runs in FP16 with FP32 islands where FP16 breaks UGTSR:

* code distances, TopK and ArgMin (a hard argmin: FP16 rounding flips near-tie codes) -- the
  matchers cast to float32 themselves and the codebook stays float32;
* softmax and the MDTA L2 norms (``ugtsr.blocks.softmax_fp32``, ``ugtsr.attention.MDTA``);
* GroupNorm and LayerNorm (whole-image statistics overflow FP16 on large images) -- swapped here
  for subclasses that compute in float32.

Input and output stay float32. The same graph runs in ONNX Runtime (which has FP16 kernels for
these ops on CPU and CUDA) and parses into a strongly typed TensorRT network.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ugtsr.model import UGTSRNet

__all__ = ["to_fp16_with_fp32_islands"]


class _Fp32GroupNorm(nn.GroupNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


class _Fp32LayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


def to_fp16_with_fp32_islands(model: UGTSRNet) -> UGTSRNet:
    """A half-precision copy of ``model`` with the FP32 islands above; ``model`` is untouched."""
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
