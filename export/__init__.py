"""ONNX export of UGTSR checkpoints (``python -m export.onnx``) and TensorRT compatibility checks
(``python -m export.check``). Names resolve lazily so ``python -m export.onnx`` runs cleanly and
torch/onnx are imported only when used."""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ExportOptions": "export.onnx",
    "ExportResult": "export.onnx",
    "export_model": "export.onnx",
    "onnx_from_checkpoint": "export.onnx",
    "add_input_padding": "export.padding",
    "check_model": "export.check",
    "CheckReport": "export.check",
}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'export' has no attribute '{name}'")
    return getattr(importlib.import_module(_LAZY[name]), name)
