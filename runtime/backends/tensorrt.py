"""TensorRT backend: runs a serialized engine with the name-based tensor API (TensorRT 10.x / 11.x).

.. warning::
   A TensorRT engine is an **executable artifact** (it contains compiled CUDA kernels and, with
   plugins, references to code). TensorRT's documentation says never to deserialize an engine from
   an untrusted source. Load only engines you built yourself (``python -m runtime.build``) or got
   over a trusted channel; when in doubt, rebuild from the ONNX model.

On load the engine's sidecar ``ENGINE.plan.json`` (:mod:`runtime.engine_meta`) is compared with the
running TensorRT version and GPU and, when ``onnx=`` is given, with the ONNX file's sha256. A stale
engine is rebuilt from the ONNX (``onnx=`` or the path recorded in the sidecar) when ``rebuild="auto"``
and that file exists, with a log message; otherwise :class:`~ugtsr.errors.EngineBuildError` says what
changed and how to rebuild. ``rebuild="always"`` rebuilds unconditionally, ``"never"`` never does.
An engine without a sidecar is run with a warning (nothing can be checked).

Execution: ``set_input_shape("lq", shape)``, one device buffer per I/O tensor (grown only when a
shape needs more memory, so repeated tiles of one size allocate once), ``set_tensor_address``,
host-to-device copy, ``execute_async_v3`` and device-to-host copies on one stream, then a stream
sync. Device memory and the stream come from :mod:`runtime.cuda_mem` (cuda-python or pycuda; no
torch). A backend object is not thread-safe: use one per thread.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends.base import Backend, ModelInfo, check_lq, model_info_from_metadata
from runtime.build import build_engine, load_plugins, make_trt_logger
from runtime.engine_meta import EngineMeta, ShapeProfile, check_engine_fresh, read_onnx_metadata, read_sidecar
from runtime.engine_spec import INPUT_NAME, BuildOptions
from ugtsr.errors import ConfigError, EngineBuildError, UGTSRError, UnsupportedInputError, require

__all__ = ["TensorRTBackend"]

_log = logging.getLogger(__name__)

_REBUILD_MODES = ("auto", "never", "always")


class TensorRTBackend(Backend):
    """Run a TensorRT engine built by :mod:`runtime.build`.

    Args:
        path: the engine file (``.plan``); its sidecar is ``path + ".json"``.
        device_id: CUDA device to run on.
        onnx: the ONNX model the engine should correspond to; enables the sha256 staleness check
            and is used to (re)build the engine. Defaults to the path recorded in the sidecar.
        rebuild: ``"auto"`` (rebuild a stale or missing engine when the ONNX is available),
            ``"never"`` (refuse a stale engine), ``"always"`` (rebuild now).

    Attributes:
        info: :class:`ModelInfo` (``source`` is the engine path).
        profile: the engine's :class:`ShapeProfile` for ``lq`` (what inputs it accepts).
        max_hw: ``(H, W)`` of the largest input the engine accepts; tiling keeps tiles within it.
    """

    name = "tensorrt"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device_id: int = 0,
        onnx: str | os.PathLike | None = None,
        rebuild: str = "auto",
    ) -> None:
        self._closed = True  # close() is safe even if __init__ fails half-way
        if rebuild not in _REBUILD_MODES:
            raise ConfigError(f"rebuild must be one of {_REBUILD_MODES}, got {rebuild!r}")
        self.path = Path(path)
        self.device_id = int(device_id)
        self._onnx = Path(onnx) if onnx is not None else None
        self._rebuild_mode = rebuild
        self._trt = require("tensorrt", extra="gpu", purpose="the TensorRT backend")
        from runtime.cuda_mem import get_cuda_api  # noqa: PLC0415 - needs the gpu extra

        self._cuda = get_cuda_api()
        try:
            self._cuda.set_device(self.device_id)
        except UGTSRError as exc:
            raise EngineBuildError(f"{self.path}: cannot use GPU {self.device_id}: {exc}") from exc

        self._runtime = self._engine = self._context = None
        self._stream: int | None = None
        self._buffers: dict[str, Any] = {}
        self._input_shape: tuple[int, ...] | None = None
        self._rebuilt = False

        meta = self._prepare(rebuild)
        self._closed = False
        try:
            self._load(meta)
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------------------------------------
    # loading
    # ---------------------------------------------------------------------------------------------
    def _source_onnx(self, meta: EngineMeta | None) -> Path | None:
        if self._onnx is not None:
            return self._onnx
        if meta is not None and meta.onnx_path:
            return Path(meta.onnx_path)
        return None

    def _can_rebuild(self, meta: EngineMeta | None) -> bool:
        src = self._source_onnx(meta)
        return self._rebuild_mode != "never" and src is not None and src.is_file()

    def _rebuild_hint(self, meta: EngineMeta | None) -> str:
        src = self._source_onnx(meta)
        return f"python -m runtime.build {src or 'MODEL.onnx'} -o {self.path} --force"

    def _prepare(self, rebuild: str) -> EngineMeta | None:
        """Check (and if needed rebuild) the engine; returns its sidecar or ``None`` if it has none."""
        try:
            meta = read_sidecar(self.path) if self.path.is_file() else None
        except EngineBuildError as exc:  # an unreadable sidecar: rebuild if we can, else report it
            if self._can_rebuild(None):
                _log.warning("%s; rebuilding from %s", exc, self._onnx)
                return self._do_rebuild(None)
            raise
        if not self.path.is_file():
            if self._can_rebuild(meta):
                _log.warning("engine %s does not exist; building it from %s", self.path, self._source_onnx(meta))
                return self._do_rebuild(meta)
            raise EngineBuildError(
                f"{self.path}: no such engine file; build it with: python -m runtime.build MODEL.onnx -o {self.path}"
            )
        if rebuild == "always":
            if not self._can_rebuild(meta):
                raise EngineBuildError(
                    f"{self.path}: rebuild='always' needs the ONNX model (pass onnx=...); "
                    f"{self._source_onnx(meta) or 'none is recorded'} is not available"
                )
            _log.warning("rebuilding %s from %s (rebuild='always')", self.path, self._source_onnx(meta))
            return self._do_rebuild(meta)
        if meta is None:
            _log.warning(
                "%s has no sidecar %s.json: cannot check that it matches this TensorRT/GPU; trying to run it "
                "(engines are executable artifacts: load only engines you built or trust)",
                self.path, self.path.name,
            )
            return None
        reasons = check_engine_fresh(self.path, self._onnx, device_id=self.device_id)
        if reasons:
            if self._can_rebuild(meta):
                _log.warning("engine %s is stale (%s); rebuilding from %s",
                             self.path, "; ".join(reasons), self._source_onnx(meta))
                return self._do_rebuild(meta)
            raise EngineBuildError(
                f"{self.path}: stale engine ({'; '.join(reasons)}); rebuild it with: {self._rebuild_hint(meta)}"
            )
        return meta

    def _do_rebuild(self, meta: EngineMeta | None) -> EngineMeta:
        src = self._source_onnx(meta)
        if src is None:  # callers check _can_rebuild first; kept as a clear error all the same
            raise EngineBuildError(f"{self.path}: no ONNX model to rebuild the engine from")
        options = (BuildOptions.from_meta(meta, device_id=self.device_id) if meta is not None
                   else BuildOptions(device_id=self.device_id))
        try:
            result = build_engine(src, self.path, options, force=True)
        except ConfigError:
            # the recorded shapes no longer fit the (changed) model: fall back to default shapes
            _log.warning("recorded shape profile does not fit %s; rebuilding with default shapes", src)
            opts = BuildOptions(workspace_gib=options.workspace_gib, opt_level=options.opt_level,
                                timing_cache=options.timing_cache, device_id=self.device_id,
                                plugins=options.plugins, tf32=options.tf32)
            result = build_engine(src, self.path, opts, force=True)
        self._rebuilt = True
        return result.meta

    def _load(self, meta: EngineMeta | None) -> None:
        trt = self._trt
        self._logger = make_trt_logger(trt)
        load_plugins(tuple(meta.build.get("plugins", ())) if meta else (), trt, self._logger)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None and not self._rebuilt and self._can_rebuild(meta):
            _log.warning("TensorRT could not deserialize %s (%s); rebuilding it",
                         self.path, self._logger.last_error())
            meta = self._do_rebuild(meta)
            engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise EngineBuildError(
                f"{self.path}: TensorRT could not load the engine ({self._logger.last_error()}); "
                f"it was probably built with another TensorRT version or GPU: {self._rebuild_hint(meta)}"
            )
        self._engine = engine
        self._context = engine.create_execution_context()
        if self._context is None:
            raise EngineBuildError(
                f"{self.path}: could not create an execution context ({self._logger.last_error()}; out of GPU memory?)"
            )

        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self._dtypes: dict[str, np.dtype] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self._inputs if is_input else self._outputs).append(name)
            self._dtypes[name] = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
        if self._inputs != [INPUT_NAME]:
            raise EngineBuildError(f"{self.path}: expected one input '{INPUT_NAME}', the engine has {self._inputs}")
        lo, opt, hi = (tuple(int(d) for d in dims) for dims in engine.get_tensor_profile_shape(INPUT_NAME, 0))
        self.profile = ShapeProfile(min=lo, opt=opt, max=hi, input=INPUT_NAME)
        self.max_shape = self.profile.max  # Backend contract: the largest (N, 3, H, W) accepted
        self.info = self._model_info(meta)
        self._stream = self._cuda.stream_create()
        _log.info("loaded TensorRT engine %s (%s, lq %s..%s, outputs %s)", self.path, self.info.precision,
                  lo, hi, self._outputs)

    def _model_info(self, meta: EngineMeta | None) -> ModelInfo:
        src = str(self.path)
        outputs = tuple(self._outputs)
        if meta is not None:
            return model_info_from_metadata(meta.to_dict(), source=src, available_outputs=outputs)
        if self._onnx is not None and self._onnx.is_file():
            return model_info_from_metadata(read_onnx_metadata(self._onnx), source=src, available_outputs=outputs)
        # No sidecar and no ONNX: infer what the engine itself can tell.
        p = self.profile
        if not self._context.set_input_shape(INPUT_NAME, p.min):
            raise EngineBuildError(f"{self.path}: cannot set the input shape {p.min}")
        self._input_shape = p.min
        out = "sr" if "sr" in self._outputs else self._outputs[0]
        scale = int(self._context.get_tensor_shape(out)[2]) // p.min[2]
        multiple = math.gcd(*p.min[2:], *p.opt[2:], *p.max[2:])
        _log.warning("%s: no sidecar or ONNX; assuming scale %d, multiple_of %d from the engine's shapes",
                     self.path, scale, multiple)
        return ModelInfo(scale=scale, multiple_of=multiple, min_size=min(p.min[2:]),
                         outputs=outputs, precision="fp32", config=None, source=src)

    # ---------------------------------------------------------------------------------------------
    # running
    # ---------------------------------------------------------------------------------------------
    @property
    def max_hw(self) -> tuple[int, int]:
        """``(H, W)`` of the largest ``lq`` the engine accepts (the profile's max)."""
        return self.profile.max_hw

    @property
    def min_hw(self) -> tuple[int, int]:
        return self.profile.min_hw

    @property
    def max_batch(self) -> int:
        return self.profile.max[0]

    def run(self, lq: np.ndarray) -> dict[str, np.ndarray]:
        """Run the engine on ``lq`` ``(N, 3, H, W)`` float32 in [0, 1] (H, W multiples of
        ``info.multiple_of`` and within :attr:`profile`).

        Returns every engine output by name: ``"sr"`` ``(N, 3, H*s, W*s)`` float32 (not clamped),
        and ``"uncertainty"`` / ``"indices"`` when the model has them. A batch larger than the
        profile's max N is run in chunks. Raises :class:`UnsupportedInputError` for inputs the
        engine cannot take (saying which ``--max-shape`` to rebuild with).
        """
        self._check_open()
        check_lq(lq, self.info)  # rank, channels, float32, multiples of multiple_of, min_size
        lq = np.ascontiguousarray(lq)
        n, _, h, w = lq.shape
        (min_h, min_w), (max_h, max_w) = self.profile.min_hw, self.profile.max_hw
        if not (min_h <= h <= max_h and min_w <= w <= max_w):
            want = f"{min(n, self.max_batch)}x3x{max(h, max_h)}x{max(w, max_w)}"
            raise UnsupportedInputError(
                f"input {h}x{w} is outside the engine's profile {min_h}x{min_w} .. {max_h}x{max_w}; "
                f"use tiles of at most {max_h}x{max_w}, or rebuild with: python -m runtime.build MODEL.onnx "
                f"-o {self.path} --max-shape {want} --force"
            )
        if n < self.profile.min[0]:
            raise UnsupportedInputError(f"batch {n} is below the engine's minimum batch {self.profile.min[0]}")
        step = self.max_batch
        if n <= step:
            return self._run_batch(lq)
        parts = [self._run_batch(lq[i:i + step]) for i in range(0, n, step)]
        return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}

    def _ensure_buffer(self, name: str, nbytes: int) -> Any:
        buf = self._buffers.get(name)
        if buf is not None and buf.nbytes >= nbytes:
            return buf
        if buf is not None:
            self._cuda.stream_synchronize(self._stream)  # never free memory a queued copy still uses
            buf.free()
        buf = self._cuda.malloc(nbytes)
        self._buffers[name] = buf
        if not self._context.set_tensor_address(name, buf.ptr):
            raise UGTSRError(f"TensorRT refused the device address for '{name}' ({self._logger.last_error()})")
        return buf

    def _run_batch(self, lq: np.ndarray) -> dict[str, np.ndarray]:
        ctx = self._context
        shape = tuple(int(d) for d in lq.shape)
        if shape != self._input_shape:
            if not ctx.set_input_shape(INPUT_NAME, shape):
                self._input_shape = None
                raise UnsupportedInputError(
                    f"TensorRT rejected input shape {shape} (profile {self.profile.min}..{self.profile.max}): "
                    f"{self._logger.last_error()}"
                )
            self._input_shape = shape
        in_dtype = self._dtypes[INPUT_NAME]
        host_in = lq if lq.dtype == in_dtype else np.ascontiguousarray(lq.astype(in_dtype))
        in_buf = self._ensure_buffer(INPUT_NAME, host_in.nbytes)

        hosts: dict[str, np.ndarray] = {}
        devs: dict[str, Any] = {}
        for name in self._outputs:
            oshape = tuple(int(d) for d in ctx.get_tensor_shape(name))
            if any(d < 0 for d in oshape):
                raise UGTSRError(f"output '{name}' has a data-dependent shape {oshape}, which this backend does not support")
            hosts[name] = np.empty(oshape, dtype=self._dtypes[name])
            devs[name] = self._ensure_buffer(name, hosts[name].nbytes)

        self._cuda.memcpy_htod_async(in_buf, host_in, self._stream)
        if not ctx.execute_async_v3(self._stream):
            raise UGTSRError(f"TensorRT execution failed: {self._logger.last_error()}")
        for name, host in hosts.items():
            self._cuda.memcpy_dtoh_async(host, devs[name], self._stream)
        self._cuda.stream_synchronize(self._stream)

        out: dict[str, np.ndarray] = {}
        for name, arr in hosts.items():
            if arr.dtype.kind == "f" and arr.dtype != np.float32:
                arr = arr.astype(np.float32)       # engines with FP16 outputs still return float32
            elif arr.dtype.kind in "iu" and name == "indices":
                arr = arr.astype(np.int64, copy=False)
            out[name] = arr
        return out

    # ---------------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise UGTSRError(f"TensorRT backend for {self.path} is closed")

    def close(self) -> None:
        """Free device buffers, the stream, the context and the engine (idempotent)."""
        self._closed = True
        cuda = getattr(self, "_cuda", None)
        stream = getattr(self, "_stream", None)
        try:
            if cuda is not None and stream is not None:
                cuda.stream_synchronize(stream)
        except UGTSRError as exc:
            _log.warning("stream synchronize failed while closing: %s", exc)
        for buf in getattr(self, "_buffers", {}).values():
            try:
                buf.free()
            except UGTSRError as exc:
                _log.warning("freeing a device buffer failed while closing: %s", exc)
        self._buffers = {}
        if cuda is not None and stream is not None:
            try:
                cuda.stream_destroy(stream)
            except UGTSRError as exc:
                _log.warning("destroying the stream failed while closing: %s", exc)
        self._stream = None
        # Release in dependency order: context before engine before runtime.
        self._context = None
        self._engine = None
        self._runtime = None
        self._input_shape = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"TensorRTBackend({str(self.path)!r}, device_id={self.device_id}, {state})"
