"""Inference backends behind one interface (:class:`Backend`); see ``docs/INTERFACES.md``.

No backend module is imported until it is asked for: :func:`load_backend` imports ONNX Runtime,
torch or TensorRT only for the backend it builds, so ``import runtime.backends`` needs none of them.
"""
from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ugtsr.errors import MissingDependencyError, UGTSRError, UnsupportedInputError

from .base import Backend, ModelInfo, check_lq, model_info_from_metadata

__all__ = ["Backend", "ModelInfo", "BACKENDS", "check_lq", "model_info_from_metadata", "backend_for_path",
           "load_backend"]

BACKENDS = ("onnxruntime", "torch", "tensorrt")
logger = logging.getLogger(__name__)

_EXTENSIONS = {".onnx": "onnxruntime", ".pt": "torch", ".pth": "torch", ".plan": "tensorrt", ".engine": "tensorrt"}


def backend_for_path(path: str | os.PathLike, backend: str = "auto") -> str:
    """The backend name for a model file: ``backend`` itself, or by extension when ``"auto"``.

    ``.plan``/``.engine`` -> tensorrt, ``.pt``/``.pth`` -> torch, ``.onnx`` -> onnxruntime.
    """
    if backend != "auto":
        if backend not in BACKENDS:
            raise UnsupportedInputError(f"unknown backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
        return backend
    suffix = Path(path).suffix.lower()
    try:
        return _EXTENSIONS[suffix]
    except KeyError:
        raise UnsupportedInputError(
            f"{path}: cannot tell the backend from the extension '{suffix}'; use .onnx, .pt/.pth or "
            ".plan/.engine, or pass the backend explicitly") from None


def _parse_device(device: str | None) -> tuple[str, int]:
    """``"cuda:1"`` -> ``("cuda", 1)``; ``None`` -> ``("cpu", 0)``."""
    if not device:
        return "cpu", 0
    kind, _, index = str(device).partition(":")
    try:
        return kind.lower(), int(index) if index else 0
    except ValueError:
        raise UnsupportedInputError(f"invalid device {device!r}; use cpu, cuda or cuda:N") from None


def load_backend(
    model: str | os.PathLike,
    *,
    backend: str = "auto",
    device: str | None = None,
    providers: str | Sequence[Any] | None = None,
    fp16: bool = False,
    threads: int | None = None,
    trt_options: Mapping[str, Any] | None = None,
) -> Backend:
    """Open ``model`` with the chosen backend.

    Args:
        model: ``.onnx``, ``.pt``/``.pth`` checkpoint, or ``.plan``/``.engine`` TensorRT engine.
        backend: ``"auto"`` (by extension), ``"onnxruntime"``, ``"torch"`` or ``"tensorrt"``.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. For ONNX Runtime without explicit ``providers``,
            ``cuda`` selects the CUDA provider on GPU ``N``.
        providers: ONNX Runtime providers (see :mod:`runtime.backends.onnxruntime`).
        fp16: torch: run in half precision; ONNX Runtime's TensorRT provider: ``trt_fp16_enable``.
            (An ONNX model's own precision is fixed at export; TensorRT engines at build.)
        threads: ONNX Runtime intra-op threads.
        trt_options: ONNX Runtime TensorRT-provider options.
    """
    name = backend_for_path(model, backend)
    kind, device_id = _parse_device(device)
    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        if providers is None and kind == "cuda":
            providers = ["cuda"]
        options = dict(trt_options or {})
        if fp16:
            options.setdefault("trt_fp16_enable", True)
        opened = OnnxRuntimeBackend(model, providers=providers, device_id=device_id, threads=threads,
                                    trt_options=options)
        if fp16 and "TensorrtExecutionProvider" not in opened.providers:
            logger.warning("%s: fp16 has no effect on ONNX Runtime's %s (only its TensorRT provider builds FP16 "
                           "engines; an ONNX model's precision is fixed at export, python -m export.onnx "
                           "--precision fp16); running the model as exported (%s)", model, opened.providers[0],
                           opened.info.precision)
        return opened
    if name == "torch":
        from .torch import TorchBackend

        if fp16 and kind == "cpu":
            logger.warning("%s: fp16 has no effect on the CPU (the torch backend runs half precision on CUDA "
                           "only); running in float32", model)
            fp16 = False
        return TorchBackend(model, device=device or "cpu", half=fp16)
    if fp16:
        logger.warning("%s: fp16 has no effect on a TensorRT engine (its precision is fixed when it is built)",
                       model)
    # TensorRT: written separately; imported by module path so a CPU install never touches it
    try:
        module = importlib.import_module("runtime.backends.tensorrt")
    except ModuleNotFoundError as exc:
        if exc.name == "runtime.backends.tensorrt":
            raise UGTSRError("the TensorRT backend is not part of this installation") from None
        raise MissingDependencyError(
            f"the TensorRT backend needs '{exc.name}', which is not installed; install it with: "
            "pip install 'ugtsr[gpu]'") from exc
    return module.TensorRTBackend(model, device_id=device_id)
