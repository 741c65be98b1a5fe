"""Codebook math as small pure functions, the only place a code distance is computed.

Every matcher (``nearest``, ``topk``, ``codeformer``), the training losses, the ONNX export and the
benchmarks call these functions; nothing else computes a code distance. Distances use the
matmul expansion ``||z||^2 + ||e||^2 - 2 z.e`` (paper eq. 4, FeMaSR's formula): it maps to one
MatMul plus two broadcast adds in ONNX/TensorRT and keeps FeMaSR's near-tie behaviour. No
``torch.cdist`` (it exports through Sqrt/Clip and changes near-tie decisions).

Shapes: a feature map ``z`` is ``(B, d, h, w)``; "rows" are ``(N, d)`` with ``N = B*h*w`` in
``(b, y, x)`` order; a codebook is ``(K, d)``; index maps are ``(B, h, w)`` int64.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "to_rows",
    "from_rows",
    "codebook_sq_norms",
    "squared_distances",
    "nearest_indices",
    "topk_indices",
    "lookup",
    "codes_from_indices",
    "straight_through",
    "nearest_search",
    "knn_search",
]


def to_rows(z: torch.Tensor) -> torch.Tensor:
    """``(B, d, h, w)`` -> ``(B*h*w, d)`` rows in (b, y, x) order."""
    d = z.shape[1]
    return z.permute(0, 2, 3, 1).reshape(-1, d)


def from_rows(rows: torch.Tensor, batch: int, height: int, width: int) -> torch.Tensor:
    """``(B*h*w, ...)`` rows -> ``(B, ..., h, w)``; inverse of :func:`to_rows` for the channel dim."""
    rest = rows.shape[1:]
    out = rows.reshape(batch, height, width, *rest)
    if len(rest) == 0:
        return out
    return out.permute(0, 3, 1, 2)


def codebook_sq_norms(codebook: torch.Tensor) -> torch.Tensor:
    """``||e_j||^2`` for every code: ``(K, d)`` -> ``(K,)``. Precompute once for export."""
    return torch.sum(codebook**2, dim=1)


def squared_distances(
    rows: torch.Tensor, codebook: torch.Tensor, codebook_sq: torch.Tensor | None = None
) -> torch.Tensor:
    """Squared Euclidean distances ``(N, K)`` between rows ``(N, d)`` and codes ``(K, d)``.

    ``||z||^2 + ||e||^2 - 2 z e^T`` in the input dtype (eq. 4). Callers that need FP32 islands
    (FP16 export) cast before calling.
    """
    if codebook_sq is None:
        codebook_sq = codebook_sq_norms(codebook)
    return torch.sum(rows**2, dim=1, keepdim=True) + codebook_sq - 2.0 * torch.matmul(rows, codebook.t())


def nearest_indices(distances: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code per row: ``(N, K)`` -> ``(N,)`` int64 (ties: lowest index)."""
    return torch.argmin(distances, dim=1)


def topk_indices(distances: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` nearest codes per row, nearest first: ``(N, K)`` -> ``(N, k)`` int64 (eq. 6).

    ``k`` is a Python int so the exported TopK has a static K (TensorRT: K <= 3840, sorted).
    """
    return torch.topk(distances, k, dim=1, largest=False, sorted=True).indices


def lookup(indices: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Codes for any index tensor: ``(...)`` int64 -> ``(..., d)`` (an ONNX Gather, no one-hot)."""
    return F.embedding(indices, codebook)


def codes_from_indices(indices: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index map ``(B, h, w)`` -> quantized features ``(B, d, h, w)`` (inverse of matching)."""
    return lookup(indices, codebook).permute(0, 3, 1, 2)


def straight_through(z: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """Forward value ``z_q``, gradient to ``z`` (VQ-VAE straight-through estimator).

    Written as FeMaSR writes it, ``z + (z_q - z).detach()``; in eval mode the value differs from
    ``z_q`` by float rounding only (a few ulp of the feature's scale).
    """
    return z + (z_q - z).detach()


def nearest_search(rows: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Nearest code per row ``(N, d)`` -> ``(N,)`` int64 (eq. 4 / eq. 8).

    With :func:`knn_search`, the one seam through which every matcher searches the codebook;
    ``export.plugin`` swaps both for a fused ``CodebookTopK`` node while exporting.
    """
    return nearest_indices(squared_distances(rows, codebook))


def knn_search(rows: torch.Tensor, codebook: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` nearest codes per row, nearest first: ``(N, d)`` -> ``(N, k)`` int64 (eq. 6)."""
    return topk_indices(squared_distances(rows, codebook), k)
