"""runtime.build / runtime.engine_meta / runtime.engine_spec / TensorRTBackend without TensorRT.

Nothing here needs TensorRT or a GPU: pure logic is tested directly, and the TensorRT and CUDA
calls are exercised against small fakes that follow the documented Python API (name-based tensor
API, IBuilderConfig, timing cache, OnnxParser errors). The real thing is tests/runtime/test_tensorrt.py.
"""
from __future__ import annotations

import enum
import json
import logging
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

import runtime.cuda_mem as cuda_mem
import runtime.engine_meta as engine_meta
from runtime.build import BuildOptions, build_engine, main
from runtime.cuda_mem import CudaApi, DeviceBuffer, DeviceProperties
from runtime.engine_meta import (
    EngineMeta,
    ShapeProfile,
    check_engine_fresh,
    onnx_fingerprint,
    read_onnx_metadata,
    read_sidecar,
    sha256_file,
    sidecar_path,
    write_sidecar,
)
from runtime.engine_spec import default_profile, parse_shape, resolve_profile, trtexec_command
from ugtsr.errors import ConfigError, EngineBuildError, UnsupportedInputError

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------------------
# fixtures: a tiny UGTSR-like ONNX file, a fake CUDA binding, a fake tensorrt module
# --------------------------------------------------------------------------------------------------
def _write_onnx(path: Path, *, multiple_of: int = 8, scale: int = 2, precision: str = "fp32",
                outputs: str = "sr,uncertainty", weight: float = 1.0, pads_input: bool = False) -> Path:
    onnx = pytest.importorskip("onnx", reason="the onnx package writes the test model")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((1,), weight, np.float32), "w")
    nodes = [helper.make_node("Mul", ["lq", "w"], ["sr"]), helper.make_node("Neg", ["lq"], ["uncertainty"])]
    graph = helper.make_graph(
        nodes, "toy", [helper.make_tensor_value_info("lq", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("sr", "uncertainty")], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {
        "ugtsr_format": "1", "scale": str(scale), "multiple_of": str(multiple_of), "min_size": str(multiple_of),
        "outputs": outputs, "precision": precision, "config": json.dumps({"preset": "toy"}),
        "ugtsr_version": "0.1.0", **({"pads_input": "1"} if pads_input else {}),
    })
    onnx.save(model, str(path))
    return path


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    return _write_onnx(tmp_path / "toy.onnx")


class FakeCuda(CudaApi):
    """Host bytearrays standing in for device memory."""

    name = "fake"

    def __init__(self) -> None:
        self.mem: dict[int, bytearray] = {}
        self.next_ptr = 0x10000
        self.mallocs = self.frees = 0
        self.streams: set[int] = set()
        self.gpu = DeviceProperties("Fake GPU", "9.0")

    def device_count(self) -> int:
        return 1

    def set_device(self, device_id: int) -> None:
        self.check_device(device_id)

    def device_properties(self, device_id: int) -> DeviceProperties:
        self.check_device(device_id)
        return self.gpu

    def malloc(self, nbytes: int) -> DeviceBuffer:
        ptr = self.next_ptr
        self.next_ptr += nbytes + 4096
        self.mem[ptr] = bytearray(max(nbytes, 1))
        self.mallocs += 1
        return DeviceBuffer(self, ptr, nbytes)

    def _free(self, buf: DeviceBuffer) -> None:
        del self.mem[buf.ptr]
        self.frees += 1

    def stream_create(self) -> int:
        handle = 100 + len(self.streams)
        self.streams.add(handle)
        return handle

    def stream_synchronize(self, stream: int) -> None:
        assert stream in self.streams

    def stream_destroy(self, stream: int) -> None:
        self.streams.discard(stream)

    def memcpy_htod_async(self, dst: DeviceBuffer, src: np.ndarray, stream: int) -> None:
        self.mem[dst.ptr][: src.nbytes] = src.tobytes()

    def memcpy_dtoh_async(self, dst: np.ndarray, src: DeviceBuffer, stream: int) -> None:
        dst.reshape(-1).view(np.uint8)[:] = np.frombuffer(bytes(self.mem[src.ptr][: dst.nbytes]), np.uint8)


class _Sev(enum.Enum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


def make_fake_trt(cuda: FakeCuda, version: str = "10.13.3.9", *, parse_errors: tuple[str, ...] = (),
                  build_fails: bool = False) -> types.ModuleType:
    """A ``tensorrt`` stand-in: the builder "compiles" x -> nearest-upsampled x (scale from metadata)."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    major = int(version.split(".")[0])
    state = types.SimpleNamespace(networks=[], configs=[], loaded_libs=[], parsed=[], plugin_flag_at_parse=[])
    trt.state = state

    class ILogger:
        Severity = _Sev

        def __init__(self) -> None:
            pass

    trt.ILogger = ILogger
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 5})
    flags = {"TF32": 1, "REFIT": 2, **({"FP16": 0} if major < 11 else {})}
    trt.BuilderFlag = enum.Enum("BuilderFlag", flags)
    trt.MemoryPoolType = enum.Enum("MemoryPoolType", {"WORKSPACE": 0})
    trt.TensorIOMode = enum.Enum("TensorIOMode", {"INPUT": 1, "OUTPUT": 2})
    trt.DataType = enum.Enum("DataType", {"FLOAT": 0, "HALF": 1, "INT64": 2})
    trt.nptype = lambda dt: {"FLOAT": np.float32, "HALF": np.float16, "INT64": np.int64}[dt.name]

    class Registry:
        def load_library(self, path: str):
            state.loaded_libs.append(path)
            return object()

    trt.get_plugin_registry = lambda: Registry()

    class Input:
        def __init__(self, name: str) -> None:
            self.name = name

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.inputs: list[Input] = []
            self.onnx: str | None = None
            state.networks.append(self)

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, i: int) -> Input:
            return self.inputs[i]

    class Parser:
        def __init__(self, network: Network, logger) -> None:
            self.network, self.errors = network, []

        def parse_from_file(self, path: str) -> bool:
            state.parsed.append(path)
            state.plugin_flag_at_parse.append(getattr(sys.modules.get("ugtsr_trt_plugin_myplugin"), "REGISTERED", False))
            if parse_errors:
                self.errors = list(parse_errors)
                return False
            self.network.inputs = [Input("lq")]
            self.network.onnx = path
            return True

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> str:
            return self.errors[i]

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = bytes(data)

        def serialize(self) -> bytes:
            return b"CACHE" + self.data[:16]

    class Profile:
        def set_shape(self, name, mn, opt, mx) -> None:
            self.shape = (name, tuple(mn), tuple(opt), tuple(mx))

    class Config:
        def __init__(self) -> None:
            self.flags = {"TF32"}  # TensorRT enables TF32 by default
            self.pool = {}
            self.builder_optimization_level = 3
            self.profiles: list[Profile] = []
            self.cache = None
            self.cache_loaded_from = None
            state.configs.append(self)

        def set_memory_pool_limit(self, pool, size: int) -> None:
            self.pool[pool.name] = size

        def clear_flag(self, flag) -> None:
            self.flags.discard(flag.name)

        def set_flag(self, flag) -> None:
            self.flags.add(flag.name)

        def create_timing_cache(self, data: bytes) -> TimingCache:
            self.cache_loaded_from = bytes(data)
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

        def add_optimization_profile(self, profile: Profile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

    class Builder:
        def __init__(self, logger) -> None:
            self.logger = logger

        def create_network(self, flags: int = 0) -> Network:
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config):
            if build_fails:
                self.logger.log(_Sev.ERROR, "out of memory\nwhile building")
                return None
            meta = read_onnx_metadata(network.onnx)
            _, mn, opt, mx = config.profiles[0].shape
            spec = {"version": version, "scale": int(meta["scale"]), "min": mn, "opt": opt, "max": mx,
                    "outputs": meta["outputs"].split(",")}
            return b"FAKEPLAN" + json.dumps(spec).encode()

    class Context:
        def __init__(self, engine) -> None:
            self.engine, self.shape, self.addr = engine, None, {}

        def set_input_shape(self, name: str, shape) -> bool:
            s = self.engine.spec
            if name != "lq" or not all(a <= b <= c for a, b, c in zip(s["min"], shape, s["max"])):
                return False
            self.shape = tuple(shape)
            return True

        def get_tensor_shape(self, name: str):
            if name == "lq":
                return self.shape
            n, c, h, w = self.shape
            k = self.engine.spec["scale"]
            return (n, c, h * k, w * k)

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addr[name] = ptr
            return True

        def execute_async_v3(self, stream: int) -> bool:
            n, c, h, w = self.shape
            x = np.frombuffer(bytes(cuda.mem[self.addr["lq"]][: n * c * h * w * 4]), np.float32).reshape(self.shape)
            k = self.engine.spec["scale"]
            sr = np.ascontiguousarray(x.repeat(k, axis=2).repeat(k, axis=3))
            for name, arr in (("sr", sr), ("uncertainty", -sr)):
                if name in self.engine.outputs:
                    cuda.mem[self.addr[name]][: arr.nbytes] = arr.tobytes()
            return True

    class Engine:
        def __init__(self, spec: dict) -> None:
            self.spec = spec
            self.outputs = list(spec["outputs"])
            self.names = ["lq", *self.outputs]

        @property
        def num_io_tensors(self) -> int:
            return len(self.names)

        def get_tensor_name(self, i: int) -> str:
            return self.names[i]

        def get_tensor_mode(self, name: str):
            return trt.TensorIOMode.INPUT if name == "lq" else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str):
            return trt.DataType.FLOAT

        def get_tensor_profile_shape(self, name: str, index: int):
            return [self.spec["min"], self.spec["opt"], self.spec["max"]]

        def create_execution_context(self) -> Context:
            return Context(self)

    class Runtime:
        def __init__(self, logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes):
            if not data.startswith(b"FAKEPLAN"):
                self.logger.log(_Sev.ERROR, "not an engine")
                return None
            spec = json.loads(data[len(b"FAKEPLAN"):])
            if spec["version"] != version:
                self.logger.log(_Sev.ERROR, "engine built with another TensorRT version")
                return None
            return Engine(spec)

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, Parser, Runtime
    return trt


@pytest.fixture
def fake_cuda(monkeypatch) -> FakeCuda:
    cuda = FakeCuda()
    monkeypatch.setattr(cuda_mem, "_API", cuda)
    return cuda


@pytest.fixture
def fake_trt(monkeypatch, fake_cuda):
    """Install a fake ``tensorrt``; returns a function that swaps in another version/behaviour."""

    def install(version: str = "10.13.3.9", **kw) -> types.ModuleType:
        mod = make_fake_trt(fake_cuda, version, **kw)
        monkeypatch.setitem(sys.modules, "tensorrt", mod)
        return mod

    install()
    return install


def _no_trt(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError


# --------------------------------------------------------------------------------------------------
# imports and shapes
# --------------------------------------------------------------------------------------------------
def test_modules_import_without_tensorrt_or_torch() -> None:
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('tensorrt', 'torch', 'pycuda') or name.startswith('cuda'):
                    raise ImportError('blocked ' + name)
        sys.meta_path.insert(0, Block())
        import runtime.build, runtime.backends.tensorrt, runtime.engine_meta, runtime.engine_spec, runtime.cuda_mem
        bad = [m for m in ('tensorrt', 'torch', 'pycuda') if m in sys.modules]
        assert not bad, bad
        print('ok')
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("text, expected", [
    ("64x64", (1, 3, 64, 64)),
    ("32X48", (1, 3, 32, 48)),
    ("2x3x64x128", (2, 3, 64, 128)),
])
def test_parse_shape_accepts(text: str, expected: tuple) -> None:
    assert parse_shape(text, multiple_of=16, min_size=16) == expected


@pytest.mark.parametrize("text, needle", [
    ("65x64", "multiples of 16"),
    ("1x3x64x72", "multiples of 16"),
    ("1x4x64x64", "3 channels"),
    ("64", "HxW or NxCxHxW"),
    ("axb", "HxW or NxCxHxW"),
    ("0x64", "HxW or NxCxHxW"),
    ("1x3x64", "HxW or NxCxHxW"),
])
def test_parse_shape_rejects_with_one_line(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_shape(text, multiple_of=16, min_size=16, flag="--max-shape")
    msg = str(err.value)
    assert needle in msg and "\n" not in msg and "--max-shape" in msg


def test_parse_shape_below_min_size() -> None:
    with pytest.raises(ConfigError, match="at least 32"):
        parse_shape("16x16", multiple_of=16, min_size=32)


@pytest.mark.parametrize("multiple_of, min_size", [(16, 16), (8, 20), (48, 16), (1, 1)])
def test_default_profile_is_ordered_and_aligned(multiple_of: int, min_size: int) -> None:
    p = default_profile(multiple_of, min_size)
    for shape in (p.min, p.opt, p.max):
        assert shape[1] == 3 and shape[2] % multiple_of == 0 and shape[3] % multiple_of == 0
    assert all(a <= b <= c for a, b, c in zip(p.min, p.opt, p.max))
    assert p.min[2] >= min_size and p.min[2] - multiple_of < max(min_size, multiple_of)
    assert p.opt[2] >= 256 and p.max[2] >= 1024 and p.max[0] == 4


def test_resolve_profile_fills_and_clamps() -> None:
    small_max = resolve_profile(BuildOptions(max_shape=(1, 3, 128, 128)), multiple_of=16, min_size=16)
    assert small_max.opt == (1, 3, 128, 128) and small_max.min == (1, 3, 16, 16)
    big_opt = resolve_profile(BuildOptions(opt_shape=(2, 3, 2048, 512)), multiple_of=16, min_size=16)
    assert big_opt.max == (4, 3, 2048, 1024)
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        resolve_profile(BuildOptions(min_shape=(1, 3, 512, 512), max_shape=(1, 3, 256, 256)),
                        multiple_of=16, min_size=16)
    with pytest.raises(ConfigError, match="multiples of 16"):  # shapes given in code are validated too
        resolve_profile(BuildOptions(max_shape=(1, 3, 100, 100)), multiple_of=16, min_size=16)


@pytest.mark.parametrize("kwargs, needle", [
    ({"workspace_gib": 0}, "--workspace"), ({"opt_level": 6}, "--opt-level"), ({"device_id": -1}, "--device"),
])
def test_build_options_validate(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        BuildOptions(**kwargs)


# --------------------------------------------------------------------------------------------------
# trtexec rendering
# --------------------------------------------------------------------------------------------------
def _profile() -> ShapeProfile:
    return ShapeProfile(min=(1, 3, 64, 64), opt=(1, 3, 256, 256), max=(4, 3, 1024, 1024))


def test_trtexec_command_trt10_vs_trt11() -> None:
    opts = BuildOptions(workspace_gib=1.5, opt_level=4, timing_cache="tc.bin", device_id=1)
    cmd10, notes = trtexec_command("m.onnx", "m.plan", _profile(), opts, trt_major=10)
    cmd11, _ = trtexec_command("m.onnx", "m.plan", _profile(), opts, trt_major=11)
    for cmd in (cmd10, cmd11):
        assert cmd[0] == "trtexec" and "--onnx=m.onnx" in cmd and "--saveEngine=m.plan" in cmd
        assert "--minShapes=lq:1x3x64x64" in cmd and "--optShapes=lq:1x3x256x256" in cmd
        assert "--maxShapes=lq:4x3x1024x1024" in cmd
        assert "--memPoolSize=workspace:1536M" in cmd and "--builderOptimizationLevel=4" in cmd
        assert "--timingCacheFile=tc.bin" in cmd and "--device=1" in cmd and "--noTF32" in cmd
        assert "--fp16" not in cmd
    assert "--stronglyTyped" in cmd10 and "--stronglyTyped" not in cmd11
    assert notes == []


def test_trtexec_command_weak_fp16_tf32_and_plugins() -> None:
    opts = BuildOptions(weak_fp16=True, tf32=True, plugins=("libugtsr.so", "my_plugins.py", "pkg.plugins"))
    cmd, notes = trtexec_command("m.onnx", "m.plan", _profile(), opts, trt_major=10)
    assert "--fp16" in cmd and "--stronglyTyped" not in cmd and "--noTF32" not in cmd
    assert "--dynamicPlugins=libugtsr.so" in cmd and not any("my_plugins" in c for c in cmd)
    assert len(notes) == 2 and all("trtexec" in n for n in notes)
    assert "--device=0" not in cmd and not any(c.startswith("--timingCacheFile") for c in cmd)


# --------------------------------------------------------------------------------------------------
# sidecar and staleness
# --------------------------------------------------------------------------------------------------
def _meta(engine: Path, onnx: Path, **overrides) -> EngineMeta:
    fields = dict(
        scale=2, multiple_of=8, min_size=8, outputs=("sr", "uncertainty"), precision="fp16",
        config={"preset": "toy"}, source=str(onnx), onnx_path=str(onnx), onnx_sha256=onnx_fingerprint(onnx),
        engine_sha256=sha256_file(engine), profiles=(_profile(),), build={"workspace_gib": 4.0},
        built_at="2026-11-26T00:00:00+00:00", ugtsr_version="0.1.0", tensorrt_version="10.13.3.9",
        gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0",
    )
    fields.update(overrides)
    return EngineMeta(**fields)


@pytest.fixture
def engine_pair(tmp_path: Path, onnx_file: Path, monkeypatch) -> tuple[Path, Path]:
    engine = tmp_path / "toy.plan"
    engine.write_bytes(b"engine bytes")
    write_sidecar(engine, _meta(engine, onnx_file))
    monkeypatch.setattr(engine_meta, "current_tensorrt_version", lambda: "10.13.3.9")
    monkeypatch.setattr(engine_meta, "current_gpu", lambda device_id=0: ("NVIDIA H100 80GB HBM3", "9.0"))
    return engine, onnx_file


def test_sidecar_round_trip(tmp_path: Path, onnx_file: Path) -> None:
    engine = tmp_path / "e.plan"
    engine.write_bytes(b"x")
    meta = _meta(engine, onnx_file)
    path = write_sidecar(engine, meta)
    assert path == sidecar_path(engine) and path.name == "e.plan.json"
    assert read_sidecar(engine) == meta
    on_disk = json.loads(path.read_text())
    for key in ("tensorrt_version", "gpu_name", "compute_capability", "onnx_sha256", "profiles", "precision",
                "built_at", "ugtsr_version", "scale", "multiple_of", "min_size", "outputs", "config", "source"):
        assert key in on_disk
    assert on_disk["profiles"][0] == {"input": "lq", "min": [1, 3, 64, 64], "opt": [1, 3, 256, 256],
                                      "max": [4, 3, 1024, 1024]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.plan", "e.plan.json", "toy.onnx"]  # no temp files


def test_read_sidecar_missing_and_corrupt(tmp_path: Path) -> None:
    engine = tmp_path / "e.plan"
    assert read_sidecar(engine) is None
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(EngineBuildError) as err:
        read_sidecar(engine)
    assert "\n" not in str(err.value) and "--force" in str(err.value)
    sidecar_path(engine).write_text(json.dumps({"scale": 2}))
    with pytest.raises(EngineBuildError, match="unreadable engine sidecar"):
        read_sidecar(engine)


def test_fresh_engine_has_no_reasons(engine_pair) -> None:
    engine, onnx = engine_pair
    assert check_engine_fresh(engine, onnx) == []
    assert check_engine_fresh(engine) == []


def test_stale_tensorrt_version(engine_pair, monkeypatch) -> None:
    engine, onnx = engine_pair
    monkeypatch.setattr(engine_meta, "current_tensorrt_version", lambda: "11.4.0.106")
    (reason,) = check_engine_fresh(engine, onnx)
    assert "10.13.3.9" in reason and "11.4.0.106" in reason


def test_stale_gpu(engine_pair, monkeypatch) -> None:
    engine, onnx = engine_pair
    monkeypatch.setattr(engine_meta, "current_gpu", lambda device_id=0: ("NVIDIA A100-SXM4-80GB", "8.0"))
    (reason,) = check_engine_fresh(engine, onnx)
    assert "compute capability 9.0" in reason and "8.0" in reason
    monkeypatch.setattr(engine_meta, "current_gpu", lambda device_id=0: ("NVIDIA H100 PCIe", "9.0"))
    (reason,) = check_engine_fresh(engine, onnx)
    assert "NVIDIA H100 PCIe" in reason


def test_unknown_environment_is_not_a_reason(engine_pair, monkeypatch) -> None:
    engine, onnx = engine_pair
    monkeypatch.setattr(engine_meta, "current_tensorrt_version", lambda: None)
    monkeypatch.setattr(engine_meta, "current_gpu", lambda device_id=0: None)
    assert check_engine_fresh(engine, onnx) == []


def test_stale_onnx_and_replaced_engine(engine_pair) -> None:
    engine, onnx = engine_pair
    _write_onnx(onnx, weight=2.0)  # same graph, other weights
    (reason,) = check_engine_fresh(engine, onnx)
    assert "toy.onnx changed" in reason
    assert check_engine_fresh(engine) == []  # without the ONNX the hash is not compared
    engine.write_bytes(b"another engine")
    assert any("does not match its sidecar" in r for r in check_engine_fresh(engine))


def test_missing_engine_or_sidecar_are_reasons(engine_pair) -> None:
    engine, onnx = engine_pair
    sidecar_path(engine).unlink()
    (reason,) = check_engine_fresh(engine, onnx)
    assert "no sidecar" in reason
    engine.unlink()
    (reason,) = check_engine_fresh(engine, onnx)
    assert "does not exist" in reason


# --------------------------------------------------------------------------------------------------
# ONNX metadata
# --------------------------------------------------------------------------------------------------
def test_read_onnx_metadata_matches_onnx(onnx_file: Path) -> None:
    import onnx

    expected = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    assert read_onnx_metadata(onnx_file) == expected
    assert expected["multiple_of"] == "8"


@pytest.mark.parametrize("content", [b"", b"\xff\xff\xff\xff", b"hello world, not protobuf"])
def test_read_onnx_metadata_rejects_garbage(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    with pytest.raises(EngineBuildError) as err:
        read_onnx_metadata(bad)
    assert "bad.onnx" in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------------------------------
# CLI error paths (no TensorRT)
# --------------------------------------------------------------------------------------------------
def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(lines) == 1, captured.err
    return lines[0]


def test_cli_without_tensorrt_prints_one_line(onnx_file: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    _no_trt(monkeypatch)
    assert main([str(onnx_file), "-o", str(tmp_path / "e.plan")]) != 0
    line = _one_error_line(capsys)
    assert "tensorrt" in line and "ugtsr[gpu]" in line
    assert not (tmp_path / "e.plan").exists()


def test_cli_missing_onnx_prints_one_line(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "e.plan")]) != 0
    assert "nope.onnx" in _one_error_line(capsys)


def test_cli_rejects_non_multiple_shape(onnx_file: Path, tmp_path: Path, capsys) -> None:
    assert main([str(onnx_file), "-o", str(tmp_path / "e.plan"), "--max-shape", "100x100"]) != 0
    line = _one_error_line(capsys)
    assert "--max-shape" in line and "multiples of 8" in line


def test_cli_print_trtexec_without_tensorrt(onnx_file: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    _no_trt(monkeypatch)
    assert main([str(onnx_file), "-o", "e.plan", "--max-shape", "2x3x512x512", "--print-trtexec",
                 "--trt-major", "11"]) == 0
    out = capsys.readouterr().out
    assert "--maxShapes=lq:2x3x512x512" in out and "--minShapes=lq:1x3x8x8" in out
    assert "--stronglyTyped" not in out and "--fp16" not in out


def test_cli_self_padding_model_takes_a_1080p_shape(tmp_path: Path, capsys, monkeypatch) -> None:
    """issue 10: a graph that pads itself (metadata pads_input=1) builds for any H, W >= min_size."""
    _no_trt(monkeypatch)
    padded = _write_onnx(tmp_path / "pads.onnx", multiple_of=16, pads_input=True)
    assert main([str(padded), "-o", "e.plan", "--opt-shape", "1x3x1080x1920", "--max-shape", "2x3x1080x1920",
                 "--print-trtexec", "--trt-major", "10"]) == 0
    out = capsys.readouterr().out
    assert "--optShapes=lq:1x3x1080x1920" in out and "--maxShapes=lq:2x3x1080x1920" in out
    assert "--minShapes=lq:1x3x16x16" in out
    # an older export (no pads_input) still demands multiples, and min_size still holds for both
    legacy = _write_onnx(tmp_path / "legacy.onnx", multiple_of=16)
    assert main([str(legacy), "-o", "e.plan", "--opt-shape", "1x3x1080x1920", "--print-trtexec"]) != 0
    assert "multiples of 16" in _one_error_line(capsys)
    assert main([str(padded), "-o", "e.plan", "--min-shape", "1x3x8x1920", "--print-trtexec"]) != 0
    assert "at least 16" in _one_error_line(capsys)


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "runtime.build", str(tmp_path / "missing.onnx"), "-o",
                          str(tmp_path / "e.plan")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert out.stderr.strip().count("\n") == 0 and "missing.onnx" in out.stderr


# --------------------------------------------------------------------------------------------------
# build_engine against the fake TensorRT
# --------------------------------------------------------------------------------------------------
def test_build_writes_engine_and_sidecar(fake_trt, onnx_file: Path, tmp_path: Path) -> None:
    trt = sys.modules["tensorrt"]
    engine = tmp_path / "out" / "toy.plan"
    res = build_engine(onnx_file, engine, BuildOptions(workspace_gib=2, opt_level=2,
                                                       max_shape=(2, 3, 256, 256)))
    assert res.built and engine.read_bytes().startswith(b"FAKEPLAN")
    meta = read_sidecar(engine)
    assert meta == res.meta
    assert meta.tensorrt_version == "10.13.3.9" and meta.gpu_name == "Fake GPU" and meta.compute_capability == "9.0"
    assert meta.onnx_sha256 == onnx_fingerprint(onnx_file) and meta.engine_sha256 == sha256_file(engine)
    assert meta.profiles[0].max == (2, 3, 256, 256) and meta.profiles[0].min == (1, 3, 8, 8)
    assert meta.scale == 2 and meta.outputs == ("sr", "uncertainty") and meta.config == {"preset": "toy"}
    assert meta.build["strongly_typed"] is True
    (net,), (cfg,) = trt.state.networks, trt.state.configs
    assert net.flags == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert "TF32" not in cfg.flags and "FP16" not in cfg.flags
    assert cfg.pool == {"WORKSPACE": 2 << 30} and cfg.builder_optimization_level == 2
    assert cfg.profiles[0].shape == ("lq", (1, 3, 8, 8), (1, 3, 256, 256), (2, 3, 256, 256))
    assert "--stronglyTyped" in res.trtexec
    assert check_engine_fresh(engine, onnx_file) == []


def test_build_on_trt11_uses_flags_zero_and_refuses_weak_fp16(fake_trt, onnx_file: Path, tmp_path: Path) -> None:
    trt = fake_trt("11.4.0.106")
    res = build_engine(onnx_file, tmp_path / "a.plan", BuildOptions(tf32=True))
    assert trt.state.networks[0].flags == 0 and "TF32" in trt.state.configs[0].flags
    assert "--stronglyTyped" not in res.trtexec
    with pytest.raises(EngineBuildError) as err:
        build_engine(onnx_file, tmp_path / "b.plan", BuildOptions(weak_fp16=True))
    assert "FP16" in str(err.value) and "export.onnx" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "b.plan").exists()


def test_weak_fp16_on_trt10_sets_the_flag(fake_trt, onnx_file: Path, tmp_path: Path) -> None:
    trt = sys.modules["tensorrt"]
    res = build_engine(onnx_file, tmp_path / "a.plan", BuildOptions(weak_fp16=True))
    assert trt.state.networks[0].flags == 0 and "FP16" in trt.state.configs[0].flags
    assert res.meta.build["strongly_typed"] is False and "--fp16" in res.trtexec


def test_parse_errors_are_all_reported_and_nothing_written(fake_trt, onnx_file: Path, tmp_path: Path) -> None:
    fake_trt(parse_errors=("node Conv_3: unsupported\nattribute", "node TopK_7: K must be constant"))
    with pytest.raises(EngineBuildError) as err:
        build_engine(onnx_file, tmp_path / "e.plan")
    msg = str(err.value)
    assert "2 error(s)" in msg and "Conv_3" in msg and "TopK_7" in msg and "\n" not in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.onnx"]


def test_failed_build_leaves_no_file_and_keeps_old_engine(fake_trt, onnx_file: Path, tmp_path: Path) -> None:
    engine = tmp_path / "e.plan"
    build_engine(onnx_file, engine)
    old = engine.read_bytes()
    fake_trt(build_fails=True)
    with pytest.raises(EngineBuildError) as err:
        build_engine(onnx_file, engine, force=True)
    assert "out of memory while building" in str(err.value) and "--workspace" in str(err.value)
    assert engine.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.plan", "e.plan.json", "toy.onnx"]


def test_up_to_date_engine_is_kept_unless_forced_or_changed(fake_trt, onnx_file: Path, tmp_path: Path) -> None:
    engine = tmp_path / "e.plan"
    assert build_engine(onnx_file, engine).built
    assert not build_engine(onnx_file, engine).built
    assert build_engine(onnx_file, engine, force=True).built
    assert build_engine(onnx_file, engine, BuildOptions(opt_level=1)).built       # other options
    _write_onnx(onnx_file, weight=3.0)
    assert build_engine(onnx_file, engine, BuildOptions(opt_level=1)).built       # changed ONNX
    fake_trt("10.14.1.0")
    assert build_engine(onnx_file, engine, BuildOptions(opt_level=1)).built       # other TensorRT


def test_timing_cache_is_loaded_and_saved(fake_trt, onnx_file: Path, tmp_path: Path) -> None:
    trt = sys.modules["tensorrt"]
    cache = tmp_path / "timing.cache"
    build_engine(onnx_file, tmp_path / "a.plan", BuildOptions(timing_cache=str(cache)))
    assert trt.state.configs[0].cache_loaded_from == b"" and cache.read_bytes() == b"CACHE"
    build_engine(onnx_file, tmp_path / "b.plan", BuildOptions(timing_cache=str(cache)))
    assert trt.state.configs[1].cache_loaded_from == b"CACHE"


def test_plugins_are_loaded_before_parsing(fake_trt, onnx_file: Path, tmp_path: Path) -> None:
    trt = sys.modules["tensorrt"]
    plugin_py = tmp_path / "myplugin.py"
    plugin_py.write_text("REGISTERED = True\n")
    lib = tmp_path / "libfake_plugin.so"
    lib.write_bytes(b"\x7fELF")
    res = build_engine(onnx_file, tmp_path / "e.plan", BuildOptions(plugins=(str(lib), str(plugin_py))))
    assert trt.state.loaded_libs == [str(lib)] and trt.state.plugin_flag_at_parse == [True]
    assert f"--dynamicPlugins={lib}" in res.trtexec and res.notes
    sys.modules.pop("ugtsr_trt_plugin_myplugin", None)
    with pytest.raises(EngineBuildError, match="no such file"):
        build_engine(onnx_file, tmp_path / "f.plan", BuildOptions(plugins=(str(tmp_path / "missing.so"),)))
    with pytest.raises(EngineBuildError, match="cannot be imported"):
        build_engine(onnx_file, tmp_path / "g.plan", BuildOptions(plugins=("no_such_module_xyz",)))


def test_cli_build_with_fake_tensorrt(fake_trt, onnx_file: Path, tmp_path: Path, capsys) -> None:
    engine = tmp_path / "e.plan"
    assert main([str(onnx_file), "-o", str(engine), "--max-shape", "64x64", "--opt-shape", "32x32"]) == 0
    out = capsys.readouterr().out
    assert "trtexec --onnx=" in out and "--maxShapes=lq:1x3x64x64" in out and "wrote" in out
    assert read_sidecar(engine).profiles[0].opt == (1, 3, 32, 32)
    assert main([str(onnx_file), "-o", str(engine), "--max-shape", "64x64", "--opt-shape", "32x32"]) == 0
    assert "up to date" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# TensorRTBackend against the fakes
# --------------------------------------------------------------------------------------------------
def _built(onnx_file: Path, tmp_path: Path, **opts) -> Path:
    engine = tmp_path / "e.plan"
    build_engine(onnx_file, engine, BuildOptions(**opts))
    return engine


def _expected_sr(x: np.ndarray, k: int = 2) -> np.ndarray:
    return x.repeat(k, axis=2).repeat(k, axis=3)


def test_backend_runs_and_reuses_buffers(fake_trt, fake_cuda, onnx_file: Path, tmp_path: Path) -> None:
    from runtime.backends.tensorrt import TensorRTBackend

    engine = _built(onnx_file, tmp_path, max_shape=(2, 3, 64, 64))
    rng = np.random.default_rng(0)
    with TensorRTBackend(engine) as be:
        assert be.name == "tensorrt" and be.max_hw == (64, 64) and be.max_shape == (2, 3, 64, 64)
        assert be.info.scale == 2 and be.info.multiple_of == 8 and be.info.outputs == ("sr", "uncertainty")
        assert be.info.source == str(engine)
        x = rng.random((1, 3, 32, 48), dtype=np.float32)
        out = be.run(x)
        assert set(out) == {"sr", "uncertainty"} and out["sr"].dtype == np.float32
        np.testing.assert_array_equal(out["sr"], _expected_sr(x))
        np.testing.assert_array_equal(out["uncertainty"], -_expected_sr(x))
        allocs = fake_cuda.mallocs
        be.run(rng.random((1, 3, 32, 48), dtype=np.float32))
        be.run(rng.random((1, 3, 16, 16), dtype=np.float32))           # smaller: buffers reused
        assert fake_cuda.mallocs == allocs
        y = rng.random((2, 3, 64, 64), dtype=np.float32)               # larger: buffers grow
        np.testing.assert_array_equal(be.run(y)["sr"], _expected_sr(y))
        assert fake_cuda.mallocs == allocs + 3 and fake_cuda.frees == 3
        z = rng.random((5, 3, 16, 24), dtype=np.float32)               # batch above max N: chunked
        np.testing.assert_array_equal(be.run(z)["sr"], _expected_sr(z))
    assert fake_cuda.mem == {} and not fake_cuda.streams             # close() freed everything
    be.close()                                                         # idempotent
    with pytest.raises(Exception, match="closed"):
        be.run(x)


@pytest.mark.parametrize("shape, needle", [
    ((1, 3, 128, 64), "--max-shape 1x3x128x64"),
    ((1, 3, 16, 16), "float32"),
    ((1, 3, 20, 24), "multiples of 8"),
    ((1, 4, 32, 32), "(N, 3, H, W)"),
    ((3, 32, 32), "(N, 3, H, W)"),
])
def test_backend_rejects_inputs_clearly(fake_trt, onnx_file: Path, tmp_path: Path, shape, needle) -> None:
    from runtime.backends.tensorrt import TensorRTBackend

    with TensorRTBackend(_built(onnx_file, tmp_path, max_shape=(1, 3, 64, 64))) as be:
        with pytest.raises(UnsupportedInputError) as err:
            be.run(np.zeros(shape, np.float64 if needle == "float32" else np.float32))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_backend_stale_engine_never_rebuild_refuses(fake_trt, onnx_file: Path, tmp_path: Path) -> None:
    from runtime.backends.tensorrt import TensorRTBackend

    engine = _built(onnx_file, tmp_path)
    fake_trt("10.16.1.11")
    with pytest.raises(EngineBuildError) as err:
        TensorRTBackend(engine, rebuild="never")
    msg = str(err.value)
    assert "stale" in msg and "10.13.3.9" in msg and "10.16.1.11" in msg
    assert "python -m runtime.build" in msg and "--force" in msg and "\n" not in msg


def test_backend_stale_engine_auto_rebuilds(fake_trt, onnx_file: Path, tmp_path: Path, caplog) -> None:
    from runtime.backends.tensorrt import TensorRTBackend

    engine = _built(onnx_file, tmp_path, max_shape=(1, 3, 64, 64))
    fake_trt("11.4.0.106")
    with caplog.at_level(logging.WARNING, logger="runtime.backends.tensorrt"):
        with TensorRTBackend(engine) as be:
            x = np.ones((1, 3, 16, 16), np.float32)
            np.testing.assert_array_equal(be.run(x)["sr"], _expected_sr(x))
            assert be.max_hw == (64, 64)                                # the recorded profile is kept
    assert "rebuilding" in caplog.text
    assert read_sidecar(engine).tensorrt_version == "11.4.0.106"


def test_backend_changed_onnx_auto_rebuilds_or_refuses(fake_trt, onnx_file: Path, tmp_path: Path) -> None:
    from runtime.backends.tensorrt import TensorRTBackend

    engine = _built(onnx_file, tmp_path)
    _write_onnx(onnx_file, weight=5.0)
    with pytest.raises(EngineBuildError, match="changed since the engine was built"):
        TensorRTBackend(engine, onnx=onnx_file, rebuild="never")
    with TensorRTBackend(engine, onnx=onnx_file):
        pass
    assert check_engine_fresh(engine, onnx_file) == []


def test_backend_stale_without_onnx_refuses(fake_trt, onnx_file: Path, tmp_path: Path) -> None:
    from runtime.backends.tensorrt import TensorRTBackend

    engine = _built(onnx_file, tmp_path)
    onnx_file.unlink()
    fake_trt("10.16.1.11")
    with pytest.raises(EngineBuildError, match="stale engine"):
        TensorRTBackend(engine)


def test_backend_builds_missing_engine_and_runs_without_sidecar(fake_trt, onnx_file: Path, tmp_path: Path,
                                                                 caplog) -> None:
    from runtime.backends.tensorrt import TensorRTBackend

    engine = tmp_path / "new.plan"
    with pytest.raises(EngineBuildError, match="no such engine file"):
        TensorRTBackend(engine)
    with TensorRTBackend(engine, onnx=onnx_file) as be:
        assert be.info.scale == 2
    sidecar_path(engine).unlink()
    with caplog.at_level(logging.WARNING, logger="runtime.backends.tensorrt"):
        with TensorRTBackend(engine) as be:
            assert be.info.scale == 2 and be.info.multiple_of == 8    # inferred from the engine
            assert be.run(np.zeros((1, 3, 8, 8), np.float32))["sr"].shape == (1, 3, 16, 16)
    assert "no sidecar" in caplog.text and "executable artifacts" in caplog.text


def test_backend_rejects_bad_rebuild_mode(fake_trt, tmp_path: Path) -> None:
    from runtime.backends.tensorrt import TensorRTBackend

    with pytest.raises(ConfigError, match="rebuild"):
        TensorRTBackend(tmp_path / "e.plan", rebuild="sometimes")


def test_backend_without_tensorrt_names_the_extra(monkeypatch, tmp_path: Path) -> None:
    from runtime.backends.tensorrt import TensorRTBackend
    from ugtsr.errors import MissingDependencyError

    _no_trt(monkeypatch)
    with pytest.raises(MissingDependencyError, match=r"ugtsr\[gpu\]"):
        TensorRTBackend(tmp_path / "e.plan")
