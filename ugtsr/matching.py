"""Codebook matchers: FeMaSR's nearest code, UGTSR's Top-k fusion, and a CodeFormer-style baseline.

All three take the pre-quantization feature ``z`` ``(B, d, h, w)`` and the codebook and return a
:class:`MatchResult`. Distances, top-k and lookups come from :mod:`ugtsr.codebook` only.

* ``nearest`` -- eq. 4: ``argmin_j ||z - e_j||``.
* ``topk`` -- eqs. 6-8: the k nearest codes (eq. 6) are fused (eq. 7) by a Restormer block
  (MDTA + GDFN) over the stacked candidates and ``z`` itself, added as a residual to the top-1
  code; the output projection starts at zero, so an untrained fusion returns the top-1 code and
  the re-quantization (eq. 8) then reproduces ``nearest`` exactly. MDTA's channel attention is
  image-global; per-pixel choice among candidates comes from the 1x1/depthwise convolutions,
  which see ``z`` and all k candidates.
* ``codeformer`` -- a pre-norm transformer over the code-map tokens predicting logits over the K
  codes (CodeFormer: Zhou et al., "Towards Robust Blind Face Restoration with Codebook Lookup
  Transformer", NeurIPS 2022, arXiv 2206.11253), trained with cross-entropy. Quadratic in tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import codebook as cb
from .attention import RestormerBlock
from .config import UGTSRConfig
from .ops import softmax_fp32

__all__ = ["Codebook", "MatchResult", "NearestMatcher", "TopKMatcher", "CodeFormerMatcher", "build_matcher"]


class Codebook(nn.Module):
    """The HQ codebook ``Z``: ``embedding`` ``(K, d)``."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(size, dim).uniform_(-1.0 / size, 1.0 / size))

    @property
    def size(self) -> int:
        return self.embedding.shape[0]

    def codes(self, indices: torch.Tensor) -> torch.Tensor:
        """``(B, h, w)`` int64 -> ``(B, d, h, w)``."""
        return cb.codes_from_indices(indices, self.embedding)


@dataclass
class MatchResult:
    """What a matcher returns. Maps are ``(B, ., h, w)``; index maps ``(B, h, w)`` int64."""

    #: feature passed on to the decoder: the matched code, straight-through to ``z``/``fused`` when training
    z_q: torch.Tensor
    #: final code index per position
    indices: torch.Tensor
    #: the matched codes themselves (gradient reaches the codebook; VQ prior loss)
    codes: torch.Tensor
    #: top-k candidate indices ``(B, k, h, w)``, nearest first (``topk`` only)
    candidates: torch.Tensor | None = None
    #: fused continuous feature before re-quantization (``topk`` only, eq. 7)
    fused: torch.Tensor | None = None
    #: code logits ``(B, K, h, w)`` (``codeformer`` only)
    logits: torch.Tensor | None = None


def _quantize(feature: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest codes of a ``(B, d, h, w)`` map -> ``(indices (B,h,w), codes (B,d,h,w))``."""
    b, _, h, w = feature.shape
    # FP32 island: distances and argmin stay in float32 even in an FP16 model (near-tie codes).
    idx = cb.nearest_search(cb.to_rows(feature).float(), codebook.float())
    idx = idx.reshape(b, h, w)
    return idx, cb.codes_from_indices(idx, codebook).to(feature.dtype)


def _st(z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    # Straight-through only matters when a gradient is wanted; in inference the exact code is used.
    return cb.straight_through(z, codes) if z.requires_grad else codes


class NearestMatcher(nn.Module):
    """FeMaSR: the nearest code (eq. 4)."""

    def forward(self, z: torch.Tensor, codebook: torch.Tensor) -> MatchResult:
        idx, codes = _quantize(z, codebook)
        return MatchResult(z_q=_st(z, codes), indices=idx, codes=codes)


class TopKFusion(nn.Module):
    """Fusion(Z_k1..Z_kk | z) of eq. 7: ``(B, k, d, h, w)`` candidates + ``z`` -> ``(B, d, h, w)``."""

    def __init__(self, dim: int, *, k: int, heads: int, ffn_factor: float) -> None:
        super().__init__()
        self.mix = nn.Conv2d(dim * (k + 1), dim, 1)
        self.block = RestormerBlock(dim, heads=heads, ffn_factor=ffn_factor)
        self.out = nn.Conv2d(dim, dim, 1)
        nn.init.zeros_(self.out.weight)  # identity of the top-1 path at init
        nn.init.zeros_(self.out.bias)

    def forward(self, candidates: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        b, k, d, h, w = candidates.shape
        x = self.mix(torch.cat([candidates.reshape(b, k * d, h, w), z], dim=1))
        return candidates[:, 0] + self.out(self.block(x))


class TopKMatcher(nn.Module):
    """UGTSR Top-k matching (eqs. 6-8)."""

    def __init__(self, dim: int, *, k: int, heads: int, ffn_factor: float) -> None:
        super().__init__()
        self.k = k
        self.fusion = TopKFusion(dim, k=k, heads=heads, ffn_factor=ffn_factor)

    def forward(self, z: torch.Tensor, codebook: torch.Tensor) -> MatchResult:
        b, d, h, w = z.shape
        rows = cb.to_rows(z)
        top = cb.knn_search(rows.float(), codebook.float(), self.k)  # (N, k)  eq. 6
        cand = cb.lookup(top, codebook).to(z.dtype)  # (N, k, d)
        cand = cand.reshape(b, h, w, self.k, d).permute(0, 3, 4, 1, 2)  # (B, k, d, h, w)
        # The candidates are constants w.r.t. the codebook (frozen in stage II); gradients reach
        # the fusion through the straight-through estimator of the re-quantization.
        fused = self.fusion(cand.detach(), z)  # eq. 7
        idx, codes = _quantize(fused, codebook)  # eq. 8
        candidates = top.reshape(b, h, w, self.k).permute(0, 3, 1, 2)
        return MatchResult(z_q=_st(fused, codes), indices=idx, codes=codes, candidates=candidates, fused=fused)


class _TransformerLayer(nn.Module):
    """CodeFormer's pre-norm self-attention layer; position added to queries and keys only."""

    def __init__(self, dim: int, *, heads: int, ffn: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qk = nn.Linear(dim, 2 * dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn)
        self.fc2 = nn.Linear(ffn, dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        hd = c // self.heads
        y = self.norm1(x)
        q, k = self.qk(y + pos).chunk(2, dim=-1)
        v = self.v(y)
        q, k, v = (t.reshape(b, n, self.heads, hd).transpose(1, 2) for t in (q, k, v))
        attn = softmax_fp32((q * hd**-0.5) @ k.transpose(-2, -1))  # (B, heads, N, N): quadratic
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class CodeFormerMatcher(nn.Module):
    """CodeFormer-style code prediction (Fig. 8 baseline): 9 layers, dim 512, 8 heads, FFN 1024.

    The learned position embedding is sized to ``grid`` (the training token grid); other code-map
    sizes get it bilinearly resized (TensorRT has no cubic Resize).
    """

    def __init__(self, dim: int, *, model_dim: int, layers: int, heads: int, ffn: int, codebook_size: int,
                 grid: tuple[int, int]) -> None:
        super().__init__()
        self.grid = tuple(grid)
        self.embed = nn.Linear(dim, model_dim)
        self.pos = nn.Parameter(torch.zeros(1, model_dim, *self.grid))
        self.layers = nn.ModuleList(_TransformerLayer(model_dim, heads=heads, ffn=ffn) for _ in range(layers))
        self.head_norm = nn.LayerNorm(model_dim)
        self.head = nn.Linear(model_dim, codebook_size, bias=False)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Code logits ``(B, K, h, w)``."""
        b, _, h, w = z.shape
        pos = self.pos
        if (h, w) != self.grid:
            pos = F.interpolate(pos, size=(h, w), mode="bilinear", align_corners=False)
        pos = pos.flatten(2).transpose(1, 2)  # (1, N, D)
        x = self.embed(z.flatten(2).transpose(1, 2))
        for layer in self.layers:
            x = layer(x, pos)
        logits = self.head(self.head_norm(x))  # (B, N, K)
        return logits.transpose(1, 2).reshape(b, -1, h, w)

    def forward(self, z: torch.Tensor, codebook: torch.Tensor) -> MatchResult:
        logits = self.logits(z)
        idx = logits.argmax(dim=1)
        codes = cb.codes_from_indices(idx, codebook)
        # CodeFormer detaches the predicted codes; the transformer learns from cross-entropy.
        return MatchResult(z_q=codes.detach(), indices=idx, codes=codes, logits=logits)


def build_matcher(config: UGTSRConfig) -> nn.Module:
    if config.matching == "nearest":
        return NearestMatcher()
    if config.matching == "topk":
        return TopKMatcher(config.codebook_dim, k=config.top_k, heads=config.fusion_heads,
                           ffn_factor=config.fusion_ffn_factor)
    return CodeFormerMatcher(
        config.codebook_dim, model_dim=config.codeformer_dim, layers=config.codeformer_layers,
        heads=config.codeformer_heads, ffn=config.codeformer_ffn, codebook_size=config.codebook_size,
        grid=config.codeformer_grid,
    )
