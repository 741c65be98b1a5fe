"""Convolutional building blocks of the FeMaSR backbone: residual blocks, down and up stages.

FeMaSR (Chen et al., "Real-World Blind Super-Resolution via Feature Matching with Implicit
High-Resolution Priors", ACM MM 2022, arXiv 2202.13142; code: github.com/chaofengc/FeMaSR,
``basicsr/archs/femasr_arch.py``): GroupNorm(groups, eps 1e-6) + SiLU pre-activation residual
blocks, stride-2 down stages and nearest-upsampling up stages. Module names are this package's
own; ``ugtsr.femasr`` maps FeMaSR's state-dict keys onto them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ResBlock", "PlainResBlock", "DownStage", "SubpixelConv", "UpStage", "upsample2x"]


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2 upsampling (FeMaSR uses ``nn.Upsample(scale_factor=2)``)."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def _group_norm(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)`` for ``(B, C, H, W)``; inside an ONNX export, the same function as Reshape +
    ``InstanceNormalization`` + per-channel affine.

    ONNX Runtime's CPU provider has no kernel for ``GroupNormalization`` (opset 21, what the exporter
    emits for ``F.group_norm``) and runs its ONNX function body: a float32 cast, two ``ReduceMean``
    and ``Sub``/``Mul``/``Div`` passes over the whole tensor. Instance normalisation over the
    ``(B, groups, C/groups * H * W)`` view computes the same statistics in one kernel, in about half
    the time (issue 13, ``docs/EFFICIENCY.md``). Eager PyTorch keeps ``norm(x)`` (FeMaSR parity).
    Half inputs are computed in float32 like the FP16 export's float32 GroupNorm islands; the result
    has the input dtype (no casts for float32).
    """
    if not torch.onnx.is_in_onnx_export():
        return norm(x)
    dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    # explicit sizes, not reshape(-1)/reshape(x.shape): the same values, far cheaper for torch.export's
    # symbolic shapes (issue 13: 0.2 s per call otherwise)
    b, c, h, w = x.shape
    g = norm.num_groups
    y = F.instance_norm(x.to(dtype).reshape(b, g, (c // g) * h * w), eps=norm.eps).view(b, c, h, w)
    if norm.affine:
        y = y * norm.weight.to(dtype)[:, None, None] + norm.bias.to(dtype)[:, None, None]
    return y.to(x.dtype)


class ResBlock(nn.Module):
    """Pre-activation residual block: ``x + conv2(act(norm2(conv1(act(norm1(x))))))``."""

    def __init__(self, channels: int, *, groups: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels, eps=eps)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, channels, eps=eps)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(_group_norm(self.norm1, x)))
        h = self.conv2(F.silu(_group_norm(self.norm2, h)))
        return x + h


class PlainResBlock(nn.Module):
    """Norm-free post-activation residual block (EDSR-style): ``x + conv2(lrelu(conv1(x)))``.

    Not FeMaSR's: an option for the output-resolution decoder stages (``UGTSRConfig.plain_stages``).
    Without a GroupNorm between the convolutions, ONNX Runtime fuses the LeakyReLU into the first
    convolution and the residual add into the second, keeps the blocked (NCHWc) layout throughout,
    and needs fewer full-resolution tensors alive at once (issue 13).
    """

    slope = 0.2

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), self.slope))


class DownStage(nn.Module):
    """Conv3x3 stride 2 (``c_in -> c_out``), then ``blocks`` residual blocks."""

    def __init__(self, c_in: int, c_out: int, *, blocks: int = 2, groups: int, eps: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
        self.res = nn.Sequential(*[ResBlock(c_out, groups=groups, eps=eps) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(self.conv(x))


class SubpixelConv(nn.Module):
    """Conv3x3 (``c_in -> factor**2 c_out``) then DepthToSpace ``factor``: a learned upsampling
    computed at the input resolution (Shi et al., CVPR 2016, arXiv 1609.05158);
    ``UGTSRConfig.subpixel_skips`` (x2) and ``bicubic_residual``'s LR input (x2, or x1: a plain conv)."""

    def __init__(self, c_in: int, c_out: int, factor: int = 2) -> None:
        super().__init__()
        self.factor = int(factor)
        self.conv = nn.Conv2d(c_in, self.factor ** 2 * c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return F.pixel_shuffle(y, self.factor) if self.factor > 1 else y


class UpStage(nn.Module):
    """Nearest x2 upsampling, Conv3x3 (``c_in -> c_out``), then residual blocks.

    Used for the LQ encoder's up stages and for the decoder (FeMaSR's ``DecoderBlock``). With
    ``upsample=False`` (``UGTSRConfig.subpixel_stages``) the stage keeps its input resolution and
    the x2 happens in the sub-pixel convolution that follows it.
    """

    def __init__(self, c_in: int, c_out: int, *, blocks: int = 2, groups: int, eps: float, plain: bool = False,
                 upsample: bool = True) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.res = nn.Sequential(*[PlainResBlock(c_out) if plain else ResBlock(c_out, groups=groups, eps=eps)
                                   for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(self.conv(upsample2x(x) if self.upsample else x))
