"""ONNX Runtime backend: CPU by default, CUDA or TensorRT execution providers on request. No torch.

Providers are given as ONNX Runtime names (``"CUDAExecutionProvider"``), ``(name, options)`` pairs or
the shortcuts ``"cpu"``, ``"cuda"``, ``"tensorrt"`` (alias ``"trt"``), as a list or a comma-separated
string. A shortcut gets sensible options: CUDA and TensorRT use ``device_id``; TensorRT also enables
its engine and timing caches in ``<model stem>.ort_trt_cache/`` next to the model (building an
engine takes minutes; the cache makes it once per GPU and shape profile) and takes ``trt_options``
(``trt_fp16_enable``, ``trt_profile_min_shapes`` / ``_opt_`` / ``_max_`` as ``"lq:1x3x64x64"`` or
an ``(N, C, H, W)`` tuple, ...; the option names of ONNX Runtime's TensorRT execution provider).
"tensorrt" is followed by CUDA so nodes TensorRT rejects run on the GPU. A provider missing from
this onnxruntime build is dropped with a logged warning, and CPU is always the last fallback.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ugtsr.errors import UGTSRError, UnsupportedInputError, require

from .base import Backend, check_lq, model_info_from_metadata

__all__ = ["OnnxRuntimeBackend", "resolve_providers", "format_shape", "session_options"]

logger = logging.getLogger(__name__)

_SHORTCUTS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
_PROFILE_KEYS = ("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes")
ProviderSpec = str | tuple[str, Mapping[str, Any]]


def format_shape(shape: Sequence[int] | str, name: str = "lq") -> str:
    """``(1, 3, 64, 64)`` -> ``"lq:1x3x64x64"`` (the TensorRT EP's profile syntax); strings pass through."""
    if isinstance(shape, str):
        return shape
    return f"{name}:" + "x".join(str(int(d)) for d in shape)


def _provider_name(name: str) -> str:
    full = _SHORTCUTS.get(name.strip().lower())
    if full:
        return full
    if name.strip().endswith("ExecutionProvider"):
        return name.strip()
    raise UnsupportedInputError(
        f"unknown execution provider {name!r}; use {', '.join(sorted(_SHORTCUTS))} or a full ONNX Runtime "
        f"provider name such as 'CUDAExecutionProvider'")


def _default_options(full: str, *, device_id: int, model_path: Path | None,
                     trt_options: Mapping[str, Any] | None) -> dict[str, Any]:
    if full == "CUDAExecutionProvider":
        return {"device_id": device_id}
    if full == "TensorrtExecutionProvider":
        opts: dict[str, Any] = {"device_id": device_id, "trt_fp16_enable": False}
        if model_path is not None:
            cache = str(model_path.parent / f"{model_path.stem}.ort_trt_cache")
            opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=cache,
                        trt_timing_cache_enable=True, trt_timing_cache_path=cache)
        opts.update(trt_options or {})
        for key in _PROFILE_KEYS:
            if key in opts:
                opts[key] = format_shape(opts[key])
        given = [k for k in _PROFILE_KEYS if k in opts]
        if given and len(given) != 3:
            raise UnsupportedInputError(f"TensorRT profile shapes need all of {', '.join(_PROFILE_KEYS)}")
        return opts
    return {}


def resolve_providers(
    providers: str | Sequence[ProviderSpec] | None,
    *,
    available: Sequence[str],
    device_id: int = 0,
    model_path: Path | None = None,
    trt_options: Mapping[str, Any] | None = None,
) -> list[tuple[str, dict[str, str]]]:
    """The ``(name, options)`` list to give ``onnxruntime.InferenceSession``, CPU last.

    Unavailable providers are dropped with a warning; option values become strings.
    """
    if providers is None:
        providers = ["cpu"]
    if isinstance(providers, str):
        providers = [p for p in providers.split(",") if p.strip()]
    wanted: list[tuple[str, dict[str, Any]]] = []
    for spec in providers:
        if isinstance(spec, tuple):
            name, given = spec[0], dict(spec[1])
        else:
            name, given = spec, {}
        full = _provider_name(name)
        opts = {**_default_options(full, device_id=device_id, model_path=model_path, trt_options=trt_options),
                **given}
        wanted.append((full, opts))
    names = [w[0] for w in wanted]
    if "TensorrtExecutionProvider" in names and "CUDAExecutionProvider" not in names:
        # nodes TensorRT rejects should run on the GPU, not fall through to the CPU
        wanted.insert(names.index("TensorrtExecutionProvider") + 1,
                      ("CUDAExecutionProvider", {"device_id": device_id}))
    result: list[tuple[str, dict[str, str]]] = []
    missing: list[str] = []
    for full, opts in wanted:
        if full not in available:
            missing.append(full)
            continue
        if full not in [r[0] for r in result]:
            result.append((full, {k: str(v) for k, v in opts.items()}))
    if "CPUExecutionProvider" not in [r[0] for r in result]:
        result.append(("CPUExecutionProvider", {}))
    if missing:
        logger.warning("ONNX Runtime provider %s %s not available in this onnxruntime build (available: %s); "
                       "using %s instead", ", ".join(missing), "is" if len(missing) == 1 else "are",
                       ", ".join(available), ", ".join(r[0] for r in result))
    return result


def _max_shape(options: Mapping[str, str]) -> tuple[int, int, int, int] | None:
    text = options.get("trt_profile_max_shapes")
    if not text:
        return None
    for item in text.split(","):
        name, _, dims = item.partition(":")
        if name.strip() == "lq":
            try:
                n, c, h, w = (int(d) for d in dims.split("x"))
                return n, c, h, w
            except ValueError:
                return None
    return None


def session_options(ort: Any, *, threads: int | None = None) -> Any:
    """The ``onnxruntime.SessionOptions`` of every session this backend opens (benchmarks use it too).

    ``threads``: intra-op threads (``None`` = ONNX Runtime's default, all cores). The memory pattern
    is off: with it, ONNX Runtime plans one block per input shape after the first run and allocates
    it beside the arena the first run filled, so the second call at a size peaks at twice the first
    (tiny_x4, 256x256 LR: 24 instead of 12.5 KiB per input pixel above the model; latency within the
    noise of a shared machine; issue 13, ``docs/EFFICIENCY.md``). Graph optimisation stays at
    ONNX Runtime's default ``ORT_ENABLE_ALL`` (its NCHWc convolutions; ``ENABLE_EXTENDED`` is ~1.4x slower).
    """
    options = ort.SessionOptions()
    options.enable_mem_pattern = False
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    return options


def _ort_errors(ort: Any) -> tuple[type[BaseException], ...]:
    state = ort.capi.onnxruntime_pybind11_state
    names = ("Fail", "InvalidArgument", "RuntimeException", "InvalidProtobuf", "NoSuchFile", "InvalidGraph",
             "NotImplemented", "EPFail", "NoModel", "ModelLoaded", "EngineError")
    return (RuntimeError, *(getattr(state, n) for n in names if hasattr(state, n)))


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class OnnxRuntimeBackend(Backend):
    """A UGTSR ``.onnx`` model in an ``onnxruntime.InferenceSession``.

    Args:
        path: the ``.onnx`` file written by ``python -m export.onnx``.
        providers: see the module docstring; ``None`` = CPU.
        device_id: GPU for the CUDA / TensorRT providers.
        threads: intra-op threads (``None`` = ONNX Runtime's default, all cores).
        trt_options: TensorRT execution-provider options merged over the defaults.
    """

    name = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        providers: str | Sequence[ProviderSpec] | None = None,
        device_id: int = 0,
        threads: int | None = None,
        trt_options: Mapping[str, Any] | None = None,
    ) -> None:
        ort = require("onnxruntime", extra="runtime", purpose="ONNX Runtime inference")
        self._errors = _ort_errors(ort)
        path = Path(path)
        if not path.is_file():
            raise UnsupportedInputError(f"{path}: model file not found")
        chosen = resolve_providers(providers, available=ort.get_available_providers(), device_id=device_id,
                                   model_path=path, trt_options=trt_options)
        options = session_options(ort, threads=threads)
        model: str | bytes = str(path)
        if all(full == "CPUExecutionProvider" for full, _opts in chosen):
            from .ort_graph import cpu_model
            model = cpu_model(path)  # WindowAttention nodes as ONNX Runtime's fused attention kernel
        try:
            try:
                session = ort.InferenceSession(model, sess_options=options, providers=chosen)
            except self._errors as exc:
                if isinstance(model, str):
                    raise
                # an ONNX Runtime without the fused kernel for this graph: the file as written
                logger.warning("%s: ONNX Runtime rejected the fused attention (%s); running the graph as written",
                               path, _first_line(exc, 160))
                model = str(path)
                session = ort.InferenceSession(model, sess_options=options, providers=chosen)
        except self._errors as exc:
            raise UnsupportedInputError(f"{path}: cannot load the ONNX model ({_first_line(exc)})") from None
        self._session = session
        #: Align-Attention runs on ONNX Runtime's fused kernel (runtime.backends.ort_graph): the
        #: session was built from the rewritten graph, not from the file
        self.fused_attention = isinstance(model, bytes)
        self.providers: list[str] = list(session.get_providers())
        for full, _opts in chosen:
            if full not in self.providers:
                logger.warning("%s: ONNX Runtime could not use %s; running on %s", path, full,
                               ", ".join(self.providers))
        meta = dict(session.get_modelmeta().custom_metadata_map)
        outputs = tuple(o.name for o in session.get_outputs())
        self.info = model_info_from_metadata(meta, source=str(path), available_outputs=outputs)
        for port, kind in ((session.get_inputs()[0], "input"), *((o, "output") for o in session.get_outputs()
                                                                   if o.name in ("sr", "uncertainty"))):
            dims = list(port.shape or [])
            if len(dims) == 4 and isinstance(dims[1], int) and dims[1] != 3:
                raise UnsupportedInputError(
                    f"{path}: the model's {kind} '{port.name}' has {dims[1]} channels; UGTSR models take and "
                    "give 3 (RGB)")
        inputs = session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != "lq":
            names = ", ".join(i.name for i in inputs)
            raise UnsupportedInputError(f"{path}: expected one input named 'lq', found: {names}")
        self._input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        trt = dict(chosen).get("TensorrtExecutionProvider") if "TensorrtExecutionProvider" in self.providers else None
        self.max_shape = _max_shape(trt) if trt else None

    selects_outputs = True

    def run(self, lq: np.ndarray, outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """See :meth:`Backend.run`. ``outputs``: only these (and ``sr``) are fetched; ``None`` = all. An
        output nobody asked for is then never copied out of ONNX Runtime (x4, 256x256 LR: the third
        call's peak 6.3 -> 5.8 KiB per input pixel)."""
        if self._session is None:
            raise UGTSRError(f"{self.info.source}: the backend is closed")
        check_lq(lq, self.info)
        feed = np.ascontiguousarray(lq, dtype=self._input_dtype)
        names = [o.name for o in self._session.get_outputs()]
        if outputs is not None:
            wanted = {"sr", *outputs}
            names = [n for n in names if n in wanted] or names  # no 'sr' at all: check_outputs says so
        try:
            values = self._session.run(names, {"lq": feed})
        except self._errors as exc:
            raise UGTSRError(f"{self.info.source}: inference failed for input {tuple(lq.shape)} "
                             f"({_first_line(exc)})") from None
        return {n: (v.astype(np.float32, copy=False) if v.dtype == np.float16 else v) for n, v in zip(names, values)}

    def close(self) -> None:
        self._session = None

