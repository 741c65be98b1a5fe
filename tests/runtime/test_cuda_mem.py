"""runtime.cuda_mem: the cuda-python wrapper against a fake ``cudart`` (host memory via ctypes), the
binding selection, and -- where a CUDA device and cuda-python/pycuda exist -- a real round trip."""
from __future__ import annotations

import ctypes
import enum
import sys
import types

import numpy as np
import pytest

import runtime.cuda_mem as cuda_mem
from ugtsr.errors import MissingDependencyError, UGTSRError


def _fake_cudart(*, devices: int = 1, mem_limit: int = 1 << 24) -> types.ModuleType:
    rt = types.ModuleType("cudart")
    rt.cudaError_t = enum.Enum("cudaError_t", {"cudaSuccess": 0, "cudaErrorMemoryAllocation": 2,
                                                "cudaErrorNoDevice": 100})
    rt.cudaMemcpyKind = enum.Enum("cudaMemcpyKind", {"cudaMemcpyHostToDevice": 1, "cudaMemcpyDeviceToHost": 2})
    rt.cudaStreamNonBlocking = 1
    ok = rt.cudaError_t.cudaSuccess
    rt.allocs = {}
    rt.copies = []

    def get_count():
        return (ok, devices) if devices else (rt.cudaError_t.cudaErrorNoDevice, 0)

    def malloc(n):
        if n > mem_limit:
            return (rt.cudaError_t.cudaErrorMemoryAllocation, 0)
        buf = ctypes.create_string_buffer(n)
        rt.allocs[ctypes.addressof(buf)] = buf
        return (ok, ctypes.addressof(buf))

    def memcpy_async(dst, src, n, kind, stream):
        rt.copies.append((kind.name, n, stream))
        ctypes.memmove(dst, src, n)
        return (ok,)

    rt.cudaGetDeviceCount = get_count
    rt.cudaSetDevice = lambda d: (ok,)
    rt.cudaGetDeviceProperties = lambda d: (ok, types.SimpleNamespace(
        name=b"NVIDIA Fake 80GB\x00\x00garbage", major=9, minor=0, totalGlobalMem=80 << 30))
    rt.cudaMalloc = malloc
    rt.cudaFree = lambda p: (rt.allocs.pop(p), (ok,))[1]
    rt.cudaStreamCreateWithFlags = lambda flags: (ok, 77)
    rt.cudaStreamSynchronize = lambda s: (ok,)
    rt.cudaStreamDestroy = lambda s: (ok,)
    rt.cudaMemcpyAsync = memcpy_async
    rt.cudaGetErrorString = lambda err: (ok, b"out of memory" if err.value == 2 else b"no CUDA-capable device")
    return rt


def test_cuda_python_round_trip_and_properties() -> None:
    rt = _fake_cudart()
    api = cuda_mem._CudaPythonApi(rt)
    props = api.device_properties(0)
    assert props == cuda_mem.DeviceProperties("NVIDIA Fake 80GB", "9.0", 80 << 30)
    api.set_device(0)
    stream = api.stream_create()
    x = np.arange(1000, dtype=np.float32).reshape(10, 100)
    y = np.zeros_like(x)
    buf = api.malloc(x.nbytes)
    api.memcpy_htod_async(buf, x, stream)
    api.memcpy_dtoh_async(y, buf, stream)
    api.stream_synchronize(stream)
    np.testing.assert_array_equal(x, y)
    assert [c[0] for c in rt.copies] == ["cudaMemcpyHostToDevice", "cudaMemcpyDeviceToHost"]
    assert all(c[2] == 77 for c in rt.copies)
    buf.free()
    buf.free()  # second free is a no-op
    assert rt.allocs == {}
    api.stream_destroy(stream)


def test_cuda_python_errors_are_one_line() -> None:
    api = cuda_mem._CudaPythonApi(_fake_cudart(mem_limit=1024))
    with pytest.raises(UGTSRError) as err:
        api.malloc(4096)
    assert "cudaMalloc" in str(err.value) and "out of memory" in str(err.value) and "\n" not in str(err.value)
    buf = api.malloc(64)
    with pytest.raises(UGTSRError, match="larger than the device buffer"):
        api.memcpy_htod_async(buf, np.zeros(100, np.float32), 0)
    with pytest.raises(UGTSRError, match="C-contiguous"):
        api.memcpy_dtoh_async(np.zeros((4, 8), np.float32)[:, ::2], buf, 0)


def test_no_device_and_bad_device_index() -> None:
    with pytest.raises(UGTSRError, match="no CUDA device"):
        cuda_mem._CudaPythonApi(_fake_cudart(devices=0)).set_device(0)
    with pytest.raises(UGTSRError, match="device 3 does not exist"):
        cuda_mem._CudaPythonApi(_fake_cudart(devices=1)).device_properties(3)


def test_missing_bindings_name_the_gpu_extra(monkeypatch) -> None:
    monkeypatch.setattr(cuda_mem, "_API", None)

    def no_cudart():
        raise ImportError("no cuda-python")

    monkeypatch.setattr(cuda_mem, "_import_cudart", no_cudart)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    with pytest.raises(MissingDependencyError, match=r"ugtsr\[gpu\]"):
        cuda_mem.get_cuda_api()


def test_cuda_python_is_preferred(monkeypatch) -> None:
    monkeypatch.setattr(cuda_mem, "_API", None)
    monkeypatch.setattr(cuda_mem, "_import_cudart", lambda: _fake_cudart())
    api = cuda_mem.get_cuda_api()
    assert api.name == "cuda-python" and cuda_mem.get_cuda_api() is api


@pytest.mark.gpu
def test_real_device_round_trip(monkeypatch) -> None:
    monkeypatch.setattr(cuda_mem, "_API", None)
    try:
        api = cuda_mem.get_cuda_api()
    except MissingDependencyError as exc:
        pytest.skip(f"no CUDA Python binding: {exc}")
    if api.device_count() == 0:
        pytest.skip("no CUDA device visible")
    api.set_device(0)
    props = api.device_properties(0)
    assert props.name and props.compute_capability.count(".") == 1
    stream = api.stream_create()
    x = np.random.default_rng(0).random((3, 257, 129), dtype=np.float32)
    y = np.empty_like(x)
    buf = api.malloc(x.nbytes)
    try:
        api.memcpy_htod_async(buf, x, stream)
        api.memcpy_dtoh_async(y, buf, stream)
        api.stream_synchronize(stream)
    finally:
        buf.free()
        api.stream_destroy(stream)
    np.testing.assert_array_equal(x, y)


def _fake_pycuda_driver() -> types.ModuleType:
    drv = types.ModuleType("pycuda.driver")
    drv.pushed = []

    class Error(Exception):
        pass

    class Alloc:
        def __init__(self, n):
            if n > 1 << 20:
                raise Error("cuMemAlloc failed: out of memory")
            self.buf = ctypes.create_string_buffer(n)

        def __int__(self):
            return ctypes.addressof(self.buf)

        def free(self):
            self.buf = None

    class Ctx:
        def __init__(self, dev):
            self.dev = dev

        def push(self):
            drv.pushed.append(self.dev)

    class Device:
        def __init__(self, i):
            self.i = i

        @staticmethod
        def count():
            return 2

        def name(self):
            return f"Fake GPU {self.i}"

        def compute_capability(self):
            return (8, 6)

        def total_memory(self):
            return 24 << 30

        def retain_primary_context(self):
            return Ctx(self.i)

    class Context:
        @staticmethod
        def pop():
            drv.pushed.pop()

    class Stream:
        handle = 4242

        def synchronize(self):
            pass

    def htod(dst, src, stream):
        ctypes.memmove(dst, src.ctypes.data, src.nbytes)

    def dtoh(dst, src, stream):
        ctypes.memmove(dst.ctypes.data, src, dst.nbytes)

    drv.Error, drv.Device, drv.Context, drv.Stream = Error, Device, Context, Stream
    drv.init = lambda: None
    drv.mem_alloc = Alloc
    drv.memcpy_htod_async, drv.memcpy_dtoh_async = htod, dtoh
    return drv


def test_pycuda_fallback_round_trip() -> None:
    drv = _fake_pycuda_driver()
    api = cuda_mem._PyCudaApi(drv)
    assert api.device_properties(1) == cuda_mem.DeviceProperties("Fake GPU 1", "8.6", 24 << 30)
    api.set_device(1)
    api.set_device(1)
    assert drv.pushed == [1]                       # primary context of device 1, pushed once
    stream = api.stream_create()
    x = np.linspace(0, 1, 4096, dtype=np.float32)
    y = np.empty_like(x)
    buf = api.malloc(x.nbytes)
    api.memcpy_htod_async(buf, x, stream)
    api.memcpy_dtoh_async(y, buf, stream)
    api.stream_synchronize(stream)
    np.testing.assert_array_equal(x, y)
    buf.free()
    api.stream_destroy(stream)
    with pytest.raises(UGTSRError, match="out of memory"):
        api.malloc(1 << 21)
