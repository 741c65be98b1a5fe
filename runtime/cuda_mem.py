"""Device memory, streams and device queries for the TensorRT backend, without torch.

TensorRT's Python API takes raw device pointers (``int``) and a raw ``cudaStream_t`` handle; it does
not allocate I/O memory itself. This module provides the few CUDA calls the backend needs through
whichever binding is installed:

1. **cuda-python** (``pip install 'ugtsr[gpu]'``): ``from cuda.bindings import runtime`` (cuda-python
   >= 12.6 / 13.x), falling back to the older ``from cuda import cudart`` layout. It uses the CUDA
   runtime API, whose primary context TensorRT shares.
2. **pycuda** (``pip install 'ugtsr[pycuda]'``): the device's *primary* context is retained and made
   current (what ``import pycuda.autoprimaryctx`` does, but for any ``device_id``), so TensorRT, which
   uses the runtime API and therefore the primary context, sees the same memory.

Every function raises :class:`~ugtsr.errors.MissingDependencyError` (naming the ``gpu`` extra) when
neither binding is installed, and :class:`~ugtsr.errors.UGTSRError` with the CUDA error text when a
CUDA call fails (no device, out of memory, ...). Host arrays passed to the copy functions must be
C-contiguous numpy arrays; copies are asynchronous on the given stream, so keep the host array alive
and unmodified until :meth:`CudaApi.stream_synchronize` returns.
"""
from __future__ import annotations

import abc
import importlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ugtsr.errors import MissingDependencyError, UGTSRError

__all__ = [
    "CudaApi",
    "DeviceBuffer",
    "DeviceProperties",
    "get_cuda_api",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceProperties:
    """What the engine sidecar records about a GPU."""

    name: str                 # e.g. "NVIDIA H100 80GB HBM3"
    compute_capability: str   # "major.minor", e.g. "9.0"
    total_memory: int = 0     # bytes


class DeviceBuffer:
    """A device allocation of ``nbytes`` bytes at address ``ptr``; :meth:`free` releases it once."""

    def __init__(self, api: CudaApi, ptr: int, nbytes: int, handle: Any = None) -> None:
        self._api = api
        self.ptr = int(ptr)
        self.nbytes = int(nbytes)
        self._handle = handle  # binding-specific object keeping the allocation alive (pycuda)

    def free(self) -> None:
        if self.ptr:
            self._api._free(self)
            self.ptr = 0
            self.nbytes = 0
            self._handle = None

    def __repr__(self) -> str:
        return f"DeviceBuffer(ptr=0x{self.ptr:x}, nbytes={self.nbytes})"


class CudaApi(abc.ABC):
    """The CUDA operations the TensorRT backend uses; one implementation per Python binding."""

    name: str

    @abc.abstractmethod
    def device_count(self) -> int: ...

    @abc.abstractmethod
    def set_device(self, device_id: int) -> None:
        """Make ``device_id`` current for this thread (its primary context)."""

    @abc.abstractmethod
    def device_properties(self, device_id: int) -> DeviceProperties: ...

    @abc.abstractmethod
    def malloc(self, nbytes: int) -> DeviceBuffer: ...

    @abc.abstractmethod
    def _free(self, buf: DeviceBuffer) -> None: ...

    @abc.abstractmethod
    def stream_create(self) -> int:
        """A new non-default stream; returns its raw ``cudaStream_t`` as an int (what TensorRT takes)."""

    @abc.abstractmethod
    def stream_synchronize(self, stream: int) -> None: ...

    @abc.abstractmethod
    def stream_destroy(self, stream: int) -> None: ...

    @abc.abstractmethod
    def memcpy_htod_async(self, dst: DeviceBuffer, src: np.ndarray, stream: int) -> None: ...

    @abc.abstractmethod
    def memcpy_dtoh_async(self, dst: np.ndarray, src: DeviceBuffer, stream: int) -> None: ...

    def check_device(self, device_id: int) -> None:
        """Raise a one-line :class:`UGTSRError` unless ``device_id`` names an existing CUDA device."""
        count = self.device_count()
        if count == 0:
            raise UGTSRError("no CUDA device is visible (TensorRT needs an NVIDIA GPU and driver)")
        if not 0 <= device_id < count:
            raise UGTSRError(f"CUDA device {device_id} does not exist ({count} device(s) visible)")


def _checked_host(arr: np.ndarray, nbytes: int, what: str) -> int:
    if not arr.flags.c_contiguous:
        raise UGTSRError(f"{what}: host array must be C-contiguous")
    if arr.nbytes > nbytes:
        raise UGTSRError(f"{what}: host array ({arr.nbytes} B) is larger than the device buffer ({nbytes} B)")
    return int(arr.ctypes.data)


# --------------------------------------------------------------------------------------------------
# cuda-python
# --------------------------------------------------------------------------------------------------
class _CudaPythonApi(CudaApi):
    """cuda-python's runtime bindings. Every call returns ``(err, *results)``."""

    name = "cuda-python"

    def __init__(self, cudart: Any) -> None:
        self._rt = cudart

    def _call(self, fname: str, *args: Any) -> Any:
        result = getattr(self._rt, fname)(*args)
        err, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if err != self._rt.cudaError_t.cudaSuccess:
            raise UGTSRError(f"CUDA error in {fname}: {self._error_text(err)}")
        if not rest:
            return None
        return rest[0] if len(rest) == 1 else rest

    def _error_text(self, err: Any) -> str:
        try:
            text = self._rt.cudaGetErrorString(err)
            text = text[1] if isinstance(text, tuple) else text
            text = text.decode() if isinstance(text, bytes) else str(text)
        except Exception:  # the error text is best effort; the enum name is still informative
            text = ""
        name = getattr(err, "name", str(err))
        return f"{name} ({text})" if text else str(name)

    def device_count(self) -> int:
        result = self._rt.cudaGetDeviceCount()
        err, count = result
        if err != self._rt.cudaError_t.cudaSuccess:  # no driver / no device reads as zero devices
            _log.debug("cudaGetDeviceCount failed: %s", self._error_text(err))
            return 0
        return int(count)

    def set_device(self, device_id: int) -> None:
        self.check_device(device_id)
        self._call("cudaSetDevice", int(device_id))

    def device_properties(self, device_id: int) -> DeviceProperties:
        self.check_device(device_id)
        prop = self._call("cudaGetDeviceProperties", int(device_id))
        name = prop.name
        if isinstance(name, bytes):
            name = name.split(b"\x00", 1)[0].decode(errors="replace")
        return DeviceProperties(
            name=str(name).strip(),
            compute_capability=f"{int(prop.major)}.{int(prop.minor)}",
            total_memory=int(getattr(prop, "totalGlobalMem", 0)),
        )

    def malloc(self, nbytes: int) -> DeviceBuffer:
        ptr = self._call("cudaMalloc", max(int(nbytes), 1))
        return DeviceBuffer(self, int(ptr), nbytes)

    def _free(self, buf: DeviceBuffer) -> None:
        self._call("cudaFree", buf.ptr)

    def stream_create(self) -> int:
        stream = self._call("cudaStreamCreateWithFlags", self._rt.cudaStreamNonBlocking)
        return int(stream)

    def stream_synchronize(self, stream: int) -> None:
        self._call("cudaStreamSynchronize", stream)

    def stream_destroy(self, stream: int) -> None:
        self._call("cudaStreamDestroy", stream)

    def memcpy_htod_async(self, dst: DeviceBuffer, src: np.ndarray, stream: int) -> None:
        host = _checked_host(src, dst.nbytes, "host-to-device copy")
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync", dst.ptr, host, src.nbytes, kind, stream)

    def memcpy_dtoh_async(self, dst: np.ndarray, src: DeviceBuffer, stream: int) -> None:
        host = _checked_host(dst, src.nbytes, "device-to-host copy")
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync", host, src.ptr, dst.nbytes, kind, stream)


# --------------------------------------------------------------------------------------------------
# pycuda
# --------------------------------------------------------------------------------------------------
class _PyCudaApi(CudaApi):
    """pycuda's driver API on the device's primary context (shared with TensorRT's runtime API)."""

    name = "pycuda"

    def __init__(self, driver: Any) -> None:
        self._drv = driver
        self._drv.init()
        self._contexts: dict[int, Any] = {}
        self._current: int | None = None
        self._streams: dict[int, Any] = {}  # handle -> pycuda Stream (pycuda destroys it on GC)

    def _wrap(self, fname: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._drv.Error as exc:
            raise UGTSRError(f"CUDA error in {fname}: {exc}") from exc

    def device_count(self) -> int:
        try:
            return int(self._drv.Device.count())
        except self._drv.Error:
            return 0

    def set_device(self, device_id: int) -> None:
        self.check_device(device_id)
        if self._current == device_id:
            return
        ctx = self._contexts.get(device_id)
        if ctx is None:
            ctx = self._wrap("retain_primary_context", self._drv.Device(device_id).retain_primary_context)
            self._contexts[device_id] = ctx
        if self._current is not None:
            self._drv.Context.pop()
        ctx.push()
        self._current = device_id

    def device_properties(self, device_id: int) -> DeviceProperties:
        self.check_device(device_id)
        dev = self._drv.Device(device_id)
        major, minor = dev.compute_capability()
        return DeviceProperties(name=dev.name(), compute_capability=f"{major}.{minor}",
                                total_memory=int(dev.total_memory()))

    def _ensure_context(self) -> None:
        if self._current is None:
            self.set_device(0)

    def malloc(self, nbytes: int) -> DeviceBuffer:
        self._ensure_context()
        alloc = self._wrap("mem_alloc", self._drv.mem_alloc, max(int(nbytes), 1))
        return DeviceBuffer(self, int(alloc), nbytes, handle=alloc)

    def _free(self, buf: DeviceBuffer) -> None:
        if buf._handle is not None:
            self._wrap("free", buf._handle.free)

    def stream_create(self) -> int:
        self._ensure_context()
        stream = self._wrap("Stream", self._drv.Stream)
        handle = int(stream.handle)
        self._streams[handle] = stream
        return handle

    def _stream(self, handle: int) -> Any:
        return self._streams[handle]

    def stream_synchronize(self, stream: int) -> None:
        self._wrap("Stream.synchronize", self._stream(stream).synchronize)

    def stream_destroy(self, stream: int) -> None:
        self._streams.pop(stream, None)

    def memcpy_htod_async(self, dst: DeviceBuffer, src: np.ndarray, stream: int) -> None:
        _checked_host(src, dst.nbytes, "host-to-device copy")
        self._wrap("memcpy_htod_async", self._drv.memcpy_htod_async, dst.ptr, src, self._stream(stream))

    def memcpy_dtoh_async(self, dst: np.ndarray, src: DeviceBuffer, stream: int) -> None:
        _checked_host(dst, src.nbytes, "device-to-host copy")
        self._wrap("memcpy_dtoh_async", self._drv.memcpy_dtoh_async, dst, src.ptr, self._stream(stream))


# --------------------------------------------------------------------------------------------------
_API: CudaApi | None = None


def _import_cudart() -> Any:
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        pass
    module = importlib.import_module("cuda")  # cuda-python 12.x before the cuda.bindings layout
    return importlib.import_module("cuda.cudart") if not hasattr(module, "cudart") else module.cudart


def get_cuda_api() -> CudaApi:
    """The process-wide :class:`CudaApi`: cuda-python if installed, else pycuda.

    Raises :class:`MissingDependencyError` naming the ``gpu`` extra when neither is installed.
    """
    global _API
    if _API is not None:
        return _API
    try:
        _API = _CudaPythonApi(_import_cudart())
    except ImportError as exc:
        try:
            driver = importlib.import_module("pycuda.driver")
        except ImportError:
            raise MissingDependencyError(
                "neither cuda-python nor pycuda is installed (needed for TensorRT device memory); "
                "install one with: pip install 'ugtsr[gpu]'  (or 'ugtsr[pycuda]')"
            ) from exc
        _API = _PyCudaApi(driver)
    _log.debug("CUDA binding: %s", _API.name)
    return _API
