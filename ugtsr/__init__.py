"""UGTSR: uncertainty-guided, Top-k codebook matching for real-world blind image super-resolution.

Paper: Wen et al., "Incorporating Uncertainty-Guided and Top-k Codebook Matching for Real-World Blind
Image Super-Resolution" (arXiv 2506.07809), built on FeMaSR (Chen et al., ACM MM 2022).

The public names are resolved lazily (PEP 562) so that ``import ugtsr.errors`` -- which the
torch-free ``runtime`` package relies on -- does not import torch.
"""
from __future__ import annotations

from ._lazy import lazy_attributes

__version__ = "0.1.0"

_LAZY = {
    # errors (no torch)
    "UGTSRError": "ugtsr.errors",
    "ConfigError": "ugtsr.errors",
    "CheckpointError": "ugtsr.errors",
    "ExportError": "ugtsr.errors",
    "EngineBuildError": "ugtsr.errors",
    "UnsupportedInputError": "ugtsr.errors",
    "MissingDependencyError": "ugtsr.errors",
    # config (no torch)
    "UGTSRConfig": "ugtsr.config",
    "PRESETS": "ugtsr.config",
    "get_config": "ugtsr.config",
    # model (torch)
    "UGTSRNet": "ugtsr.model",
    "UGTSROutput": "ugtsr.model",
    "build_model": "ugtsr.model",
    "count_parameters": "ugtsr.model",
    # checkpoints (torch)
    "save_checkpoint": "ugtsr.checkpoint",
    "load_checkpoint": "ugtsr.checkpoint",
    "load_model": "ugtsr.checkpoint",
    "Checkpoint": "ugtsr.checkpoint",
}

__all__ = ["__version__", *_LAZY]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
