"""Attention modules of UGTSR: Restormer's MDTA (Top-k fusion, eq. 7) and Align-Attention (eq. 9).

* :class:`MDTA` -- Restormer's multi-Dconv-head transposed attention (Zamir et al., "Restormer:
  Efficient Transformer for High-Resolution Image Restoration", CVPR 2022, arXiv 2111.09881; code
  github.com/swz30/Restormer, ``basicsr/models/archs/restormer_arch.py``):
  1x1 + depthwise 3x3 QKV, L2-normalised Q/K over the pixel axis, softmax over a ``C/h x C/h``
  channel-attention matrix scaled by a learned temperature. Cost is linear in pixels, but the
  attention matrix uses whole-image statistics (one mixing per head per image).
* :class:`AlignAttention` -- eq. 9: the LQ skip feature is the Query, the HQ decoder feature is
  the Key and Value, ``softmax(Q K^T / sqrt(d_k)) V``. Full attention over all pixels is quadratic,
  so it runs inside non-overlapping ``window x window`` windows (linear cost in pixels, local
  statistics only: tiles with window-aligned borders give the same result as the whole image).
  Exports to plain Reshape/Transpose/MatMul/Softmax with symbolic H/W; ``python -m export.onnx``
  wraps the per-window product in one ``ugtsr::WindowAttention`` node whose function body holds
  them (``export.attention``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ops import softmax_fp32

__all__ = ["ChannelLayerNorm", "MDTA", "GDFN", "RestormerBlock", "AlignAttention", "windowed_cross_attention",
           "window_attention"]


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel dim of a ``(B, C, H, W)`` map (Restormer's "WithBias" LN).

    Eager PyTorch uses plain reductions. Inside an ONNX export it is ``LayerNormalization`` over the
    channels-last view (Transpose, LayerNormalization, Transpose): one ONNX Runtime kernel instead of
    two ``ReduceMean`` over the channel axis and five element-wise passes (issue 13).
    """

    def __init__(self, channels: int, *, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
            return y.permute(0, 3, 1, 2)
        mu = x.mean(dim=1, keepdim=True)
        var = (x - mu).pow(2).mean(dim=1, keepdim=True)
        x = (x - mu) / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class MDTA(nn.Module):
    """Multi-Dconv head transposed attention: ``(B, C, H, W)`` -> ``(B, C, H, W)``."""

    def __init__(self, dim: int, *, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=False)
        self.qkv_dw = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=False)
        self.proj = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dw(self.qkv(x)).chunk(3, dim=1)
        q = q.reshape(b, self.heads, c // self.heads, h * w)
        k = k.reshape(b, self.heads, c // self.heads, h * w)
        v = v.reshape(b, self.heads, c // self.heads, h * w)
        # FP32 island: L2 norms over all pixels overflow FP16 on large images
        q = F.normalize(q.float(), dim=-1)
        k = F.normalize(k.float(), dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.temperature.float()
        out = softmax_fp32(attn).to(v.dtype) @ v
        return self.proj(out.reshape(b, c, h, w))


class GDFN(nn.Module):
    """Restormer's gated-Dconv feed-forward network."""

    def __init__(self, dim: int, *, factor: float) -> None:
        super().__init__()
        hidden = int(dim * factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=False)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class RestormerBlock(nn.Module):
    """``x + MDTA(LN(x))`` then ``x + GDFN(LN(x))``."""

    def __init__(self, dim: int, *, heads: int, ffn_factor: float) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim)
        self.attn = MDTA(dim, heads=heads)
        self.norm2 = ChannelLayerNorm(dim)
        self.ffn = GDFN(dim, factor=ffn_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


#: Set by ``export.attention.attention_nodes()`` for the duration of an export: the windowed
#: attention of :func:`windowed_cross_attention` is then traced as one ``ugtsr::WindowAttention``
#: node (its standard-op body is attached as a model-local function; ONNX Runtime's CPU provider
#: runs it as one fused ``com.microsoft.MultiHeadAttention``, see ``runtime.backends.ort_graph``).
EMIT_ATTENTION_NODE = False


def window_attention(qw: torch.Tensor, kw: torch.Tensor, vw: torch.Tensor, *, heads: int) -> torch.Tensor:
    """Multi-head scaled dot-product attention on windows: ``(B', N, C)`` each -> ``(B', N, C)``.

    ``C = heads * head_dim`` with the channels of one head contiguous; the softmax runs in float32.
    This is what one ``ugtsr::WindowAttention`` node computes (and what the fused
    ``com.microsoft.MultiHeadAttention`` of ONNX Runtime computes: the same layout and scale).
    """
    bw, n, c = qw.shape
    hd = c // heads
    if EMIT_ATTENTION_NODE and torch.onnx.is_in_onnx_export():
        return torch.onnx.ops.symbolic(
            "ugtsr::WindowAttention", (qw, kw, vw), attrs={"num_heads": int(heads), "scale": float(hd**-0.5)},
            dtype=qw.dtype, shape=qw.shape, version=1,
        )

    def heads_first(t: torch.Tensor) -> torch.Tensor:  # (B', N, C) -> (B', heads, N, hd)
        return t.view(bw, n, heads, hd).transpose(1, 2)

    attn = (heads_first(qw) * hd**-0.5) @ heads_first(kw).transpose(-2, -1)
    out = softmax_fp32(attn) @ heads_first(vw)  # (B', heads, N, hd)
    return out.transpose(1, 2).contiguous().view(bw, n, c)


def windowed_cross_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, heads: int, window: int
) -> torch.Tensor:
    """Scaled dot-product cross attention inside non-overlapping windows.

    ``q``, ``k``, ``v``: ``(B, C, H, W)`` with H, W multiples of ``window``. Returns ``(B, C, H, W)``:
    each query pixel attends to the keys of its own window. With ``window >= H = W`` this is
    full attention over the map (the naive reference of the tests).
    """
    b, c, h, w = q.shape
    nh, nw, n = h // window, w // window, window * window

    # Explicit sizes and contiguous views (not reshape(-1) of permuted views): the same values, and
    # torch.export's symbolic-shape reasoning stays cheap (issue 13, see swin.window_partition).
    # Channels go last first, so that every later permute moves contiguous runs of window x C
    # values (ONNX Runtime's Transpose is several times slower on 7-D strided permutes).
    def split(t: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B*nW, N, C)
        t = t.permute(0, 2, 3, 1).contiguous().view(b, nh, window, nw, window, c)
        return t.permute(0, 1, 3, 2, 4, 5).contiguous().view(b * nh * nw, n, c)

    out = window_attention(split(q), split(k), split(v), heads=heads)  # (B*nW, N, C)
    out = out.view(b, nh, nw, window, window, c).permute(0, 1, 3, 2, 4, 5).contiguous().view(b, h, w, c)
    return out.permute(0, 3, 1, 2)


class AlignAttention(nn.Module):
    """Skip fusion with Align-Attention (eq. 9), windowed.

    ``forward(hq, lq) = hq + lq + W_o softmax((LN(lq) W_Q)(LN(hq) W_K)^T / sqrt(d_k)) (LN(hq) W_V)``.
    ``W_o`` starts at zero, so an untrained module equals FeMaSR's additive skip (``hq + lq``) and
    a model initialised from FeMaSR starts from FeMaSR's behaviour.
    """

    def __init__(self, dim: int, *, heads: int, window: int) -> None:
        super().__init__()
        self.heads = heads
        self.window = window
        self.norm_lq = ChannelLayerNorm(dim)
        self.norm_hq = ChannelLayerNorm(dim)
        self.to_q = nn.Conv2d(dim, dim, 1)
        self.to_kv = nn.Conv2d(dim, dim * 2, 1)
        self.proj = nn.Conv2d(dim, dim, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def attend(self, hq: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        """``F_align`` of eq. 9 (before the output projection): ``(B, C, H, W)``."""
        q = self.to_q(self.norm_lq(lq))
        k, v = self.to_kv(self.norm_hq(hq)).chunk(2, dim=1)
        return windowed_cross_attention(q, k, v, heads=self.heads, window=self.window)

    def forward(self, hq: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        return hq + lq + self.proj(self.attend(hq, lq))
