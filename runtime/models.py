"""The models shipped inside the ``runtime`` package (``runtime/models/``), by name.

A plain dict, not a registry: ``python -m runtime.infer -n NAME`` (Real-ESRGAN's ``--model_name``
habit) and ``--list-models`` read it; :func:`shipped_model_path` turns a name into a file. A shipped
model has an ONNX file (ONNX Runtime, the default) and may have the checkpoint it was exported from
(``--backend torch``).
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ugtsr.errors import UnsupportedInputError

__all__ = ["ShippedModel", "SHIPPED_MODELS", "DEFAULT_MODEL", "shipped_model_path", "models_folder"]


@dataclass(frozen=True)
class ShippedModel:
    """One shipped model: its files in ``runtime/models/`` and a one-line description."""

    onnx: str
    checkpoint: str | None
    scale: int
    description: str


#: name -> files; the first entry is the default model
SHIPPED_MODELS: dict[str, ShippedModel] = {
    "ugtsr_tiny_x4": ShippedModel(
        onnx="ugtsr_tiny_x4.onnx", checkpoint="ugtsr_tiny_x4.pt", scale=4,
        description="UGTSR tiny, x4, real-world degradations (the default; model card in docs/MODEL_CARD.md)"),
    "ugtsr_tiny_x2": ShippedModel(
        onnx="ugtsr_tiny_x2.onnx", checkpoint="ugtsr_tiny_x2.pt", scale=2,
        description="UGTSR tiny, x2, real-world degradations (model card in docs/MODEL_CARD.md)"),
}
DEFAULT_MODEL = "ugtsr_tiny_x4"


def models_folder() -> Path:
    """``runtime/models/`` of the installed package."""
    return Path(str(resources.files("runtime").joinpath("models")))


def shipped_model_path(name: str, *, backend: str = "auto") -> Path:
    """The file of shipped model ``name``: the ONNX file, or the checkpoint for ``backend="torch"``.

    Raises:
        UnsupportedInputError: an unknown name (the message lists the known ones), or a model without
            a checkpoint asked for on the torch backend. The file itself may be missing (not checked).
    """
    key = name[:-5] if name.endswith(".onnx") else name
    model = SHIPPED_MODELS.get(key)
    if model is None:
        raise UnsupportedInputError(
            f"unknown model name {name!r}; shipped models: {', '.join(SHIPPED_MODELS)} (see --list-models)")
    if backend == "torch":
        if model.checkpoint is None:
            raise UnsupportedInputError(f"shipped model {key!r} has no checkpoint for the torch backend")
        return models_folder() / model.checkpoint
    return models_folder() / model.onnx
