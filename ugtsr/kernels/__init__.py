"""Fused GPU kernels for UGTSR (Triton). Importing this package imports neither triton nor torch.

The public names resolve lazily (PEP 562) from :mod:`ugtsr.kernels.fused_topk`; the function
``fused_topk`` shares its name with that module, so import it from there:
``from ugtsr.kernels.fused_topk import fused_topk``. The Triton code (``_triton_topk``) is imported
only when a kernel is launched or compiled.
"""
from __future__ import annotations

from .._lazy import lazy_attributes

_LAZY = {
    "MAX_K": "ugtsr.kernels.fused_topk",
    "KernelConfig": "ugtsr.kernels.fused_topk",
    "TopKResult": "ugtsr.kernels.fused_topk",
    "fused_topk_reference": "ugtsr.kernels.fused_topk",
    "codebook_topk_int32": "ugtsr.kernels.fused_topk",
    "compile_codebook_topk_ptx": "ugtsr.kernels.fused_topk",
    "CompiledKernel": "ugtsr.kernels.fused_topk",
    "default_config": "ugtsr.kernels.fused_topk",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
