"""Small numeric helpers shared by the attention modules (Restormer, Swin, matching)."""
from __future__ import annotations

import torch

__all__ = ["softmax_fp32"]


def softmax_fp32(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax computed in float32 and returned in the input dtype (an FP32 island in FP16 models;
    a no-op cast for float32/float64)."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float().softmax(dim=dim).to(x.dtype)
    return x.softmax(dim=dim)
