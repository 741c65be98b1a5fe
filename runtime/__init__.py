"""UGTSR production inference: images in, super-resolved images out, on ONNX Runtime, TensorRT or torch.

``runtime`` imports neither torch nor onnxruntime nor TensorRT at import time: each backend imports
its library when it is opened, so the ONNX Runtime path works on an install without torch.

    >>> from runtime import Upscaler, read_image, write_image
    >>> with Upscaler("model.onnx") as up:
    ...     write_image("out.png", up.upscale(read_image("in.jpg")))

CLI: ``python -m runtime.infer INPUT... -o OUT_DIR`` (see :mod:`runtime.infer`); many images on a Ray
cluster: ``python -m runtime.batch INPUT... -o OUT`` (:mod:`runtime.batch`, the ``batch`` extra).
"""
from __future__ import annotations

from .backends import Backend, ModelInfo, backend_for_path, load_backend
from .imageio import (
    DEFAULT_MAX_PIXELS,
    ImageLayout,
    decode_image,
    float_to_image,
    image_to_float,
    read_image,
    write_image,
)
from .padding import crop, pad_to_multiple
from .remote import RemoteUpscaler
from .tiling import choose_tile, tile_grid, tile_process
from .upscaler import DEFAULT_MODEL_NAME, Upscaler, default_model_path

__all__ = [
    "Upscaler",
    "RemoteUpscaler",
    "ModelInfo",
    "Backend",
    "load_backend",
    "backend_for_path",
    "read_image",
    "decode_image",
    "write_image",
    "image_to_float",
    "float_to_image",
    "ImageLayout",
    "DEFAULT_MAX_PIXELS",
    "tile_process",
    "tile_grid",
    "choose_tile",
    "pad_to_multiple",
    "crop",
    "default_model_path",
    "DEFAULT_MODEL_NAME",
]
