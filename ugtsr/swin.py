"""Swin Transformer layers at the latent scale of the LQ encoder (SwinIR's RSTB, as FeMaSR uses them).

FeMaSR's ``SwinLayers`` (github.com/chaofengc/FeMaSR @ 1ca4295, ``basicsr/archs/femasr_arch.py``):
4 residual groups (SwinIR's RSTB: Liang et al., "SwinIR: Image Restoration Using Swin Transformer",
ICCVW 2021, arXiv 2108.10257) of 6 blocks, dim 256, 8 heads, window 8, shift 4 on odd blocks, MLP
ratio 4 with exact GELU, LayerNorm eps 1e-5, qkv bias, relative position bias, and a 3x3 conv
closing each group with a residual add.

Unlike SwinIR/FeMaSR, which store a mask for one training size, the shifted-window mask is
always computed from the actual feature size with ``arange`` comparisons. That gives the same
values for every size and exports to ONNX with symbolic H/W (no size from the example input is
baked in). Feature maps must be multiples of the window (the model pads its input for that).
Maps are kept channels-last ``(B, H, W, C)`` inside a group.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ops import softmax_fp32

__all__ = ["WindowAttention", "SwinBlock", "SwinGroup", "SwinStack", "window_partition", "window_merge",
           "relative_position_index", "shifted_window_mask"]

_MASK_VALUE = -100.0  # SwinIR's additive mask value (exp(-100) ~ 4e-44: a negligible weight)


def relative_position_index(window: int) -> torch.Tensor:
    """``(w*w, w*w)`` int64 index into the ``(2w-1)^2`` relative-position bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    flat = coords.flatten(1)  # (2, N)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0)  # (N, N, 2)
    rel = rel + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``(B, H, W, C)`` -> ``(B*nW, window*window, C)``, windows in row-major order.

    Written as ``permute().contiguous().view(explicit sizes)`` rather than ``reshape(-1, ...)`` of a
    permuted tensor: the values are the same, but torch.export's symbolic-shape reasoning over the
    strides of a permuted view costs seconds per call with dynamic H/W (issue 13: this alone was
    most of the export time).
    """
    b, h, w, c = x.shape
    nh, nw = h // window, w // window
    x = x.reshape(b, nh, window, nw, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b * nh * nw, window * window, c)


def window_merge(windows: torch.Tensor, window: int, b: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B*nW, window*window, C)`` -> ``(B, H, W, C)``."""
    c = windows.shape[-1]
    x = windows.reshape(b, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, h, w, c)


def _region_ids(length: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    # After the cyclic shift, positions fall into 3 bands: [0, L-w), [L-w, L-s), [L-s, L).
    r = torch.arange(length, device=device)
    return (r >= length - window).to(torch.int64) + (r >= length - shift).to(torch.int64)


def shifted_window_mask(h: int, w: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """Additive attention mask ``(nW, N, N)`` for shifted windows on an ``h x w`` map.

    Tokens of one window that came from different image regions before the cyclic shift must not
    attend to each other (value -100), as in Swin/SwinIR; computed for the actual size.
    """
    ids = _region_ids(h, window, shift, device)[:, None] * 3 + _region_ids(w, window, shift, device)[None, :]
    ids = window_partition(ids[None, :, :, None].to(torch.float32), window).squeeze(-1)  # (nW, N)
    diff = ids[:, :, None] - ids[:, None, :]
    return torch.where(diff != 0.0, torch.full_like(diff, _MASK_VALUE), torch.zeros_like(diff))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative-position bias."""

    def __init__(self, dim: int, *, heads: int, window: int) -> None:
        super().__init__()
        self.heads = heads
        self.window = window
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(B*nW, N, C)``; ``mask``: ``(nW, N, N)`` additive or None."""
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B*nW, heads, N, hd)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        attn = attn + bias.reshape(n, n, self.heads).permute(2, 0, 1)[None]
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.heads, n, n) + mask[None, :, None]
            attn = attn.view(bw, self.heads, n, n)
        attn = softmax_fp32(attn)
        out = (attn @ v).transpose(1, 2).contiguous().view(bw, n, c)
        return self.proj(out)


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU, as nn.GELU()


class SwinBlock(nn.Module):
    """Pre-norm Swin block: (shifted) window attention then MLP, each with a residual."""

    def __init__(self, dim: int, *, heads: int, window: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = WindowAttention(dim, heads=heads, window=window)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` -> same; H and W multiples of the window."""
        b, h, w, c = x.shape
        y = self.norm1(x)
        mask = None
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
            mask = shifted_window_mask(h, w, self.window, self.shift, x.device).to(x.dtype)
        y = self.attn(window_partition(y, self.window), mask)
        y = window_merge(y, self.window, b, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


class SwinGroup(nn.Module):
    """Residual Swin group (SwinIR's RSTB with '1conv'): blocks, Conv3x3, residual add."""

    def __init__(self, dim: int, *, depth: int, heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, heads=heads, window=window, shift=(window // 2) if i % 2 else 0,
                      mlp_ratio=mlp_ratio)
            for i in range(depth)
        )
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` -> same."""
        y = x
        for blk in self.blocks:
            y = blk(y)
        y = self.conv(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + y


class SwinStack(nn.Module):
    """The Swin layers of the LQ encoder: ``(B, C, H, W)`` -> ``(B, C, H, W)``."""

    def __init__(self, dim: int, *, depths: tuple[int, ...], heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window = window
        self.groups = nn.ModuleList(
            SwinGroup(dim, depth=d, heads=heads, window=window, mlp_ratio=mlp_ratio) for d in depths
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        for group in self.groups:
            x = group(x)
        return x.permute(0, 3, 1, 2)
