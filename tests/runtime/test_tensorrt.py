"""Real TensorRT tests: build toy FP32/FP16 engines with runtime.build and run them with
TensorRTBackend against ONNX Runtime (CPU). Skipped, with the reason, without TensorRT, a CUDA
Python binding (cuda-python or pycuda) or a CUDA device. The logic around TensorRT is covered
without it in test_build_cli.py."""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'ugtsr[gpu]')")
pytest.importorskip("onnx", reason="the onnx package writes the toy models")
ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime is the reference")

from runtime.build import BuildOptions, build_engine  # noqa: E402
from runtime.cuda_mem import get_cuda_api  # noqa: E402
from runtime.engine_meta import check_engine_fresh, read_sidecar, sidecar_path  # noqa: E402
from ugtsr.errors import MissingDependencyError, UnsupportedInputError  # noqa: E402

from .conftest import load_script  # noqa: E402

pytestmark = [pytest.mark.trt, pytest.mark.gpu]



def _require_device() -> None:
    try:
        count = get_cuda_api().device_count()
    except MissingDependencyError as exc:
        pytest.skip(f"no CUDA Python binding: {exc}")
    if count == 0:
        pytest.skip("no CUDA device visible")


@pytest.fixture(scope="module")
def toys(tmp_path_factory) -> dict[str, str]:
    _require_device()
    return load_script("gpu_check").make_toy_models(tmp_path_factory.mktemp("toys"))


def _ort(onnx_path: str, x: np.ndarray) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"lq": x})))


_OPTS = dict(min_shape=(1, 3, 16, 16), opt_shape=(1, 3, 64, 64), max_shape=(2, 3, 128, 128), opt_level=1,
             workspace_gib=1.0)


@pytest.mark.parametrize("precision, atol", [("fp32", 1e-4), ("fp16", 2e-2)])
def test_engine_matches_onnxruntime(toys, tmp_path: Path, precision: str, atol: float) -> None:
    from runtime.backends.tensorrt import TensorRTBackend

    engine = tmp_path / f"toy_{precision}.plan"
    res = build_engine(toys[precision], engine, BuildOptions(**_OPTS, timing_cache=str(tmp_path / "tc")))
    assert res.built and engine.is_file() and (tmp_path / "tc").is_file()
    meta = read_sidecar(engine)
    assert meta.precision == precision and meta.tensorrt_version == trt.__version__ and meta.gpu_name
    assert check_engine_fresh(engine, toys[precision]) == []
    rng = np.random.default_rng(0)
    with TensorRTBackend(engine, onnx=toys[precision], rebuild="never") as be:
        assert be.max_hw == (128, 128)
        for shape in [(1, 3, 16, 16), (2, 3, 64, 96), (1, 3, 128, 128), (1, 3, 24, 40)]:
            x = rng.random(shape, dtype=np.float32)
            ref = _ort(toys["fp32"], x)
            out = be.run(x)
            assert out["sr"].shape == (shape[0], 3, shape[2] * 2, shape[3] * 2)
            for name in ("sr", "uncertainty"):
                assert out[name].dtype == np.float32
                np.testing.assert_allclose(out[name], ref[name], atol=atol, rtol=0)
        with pytest.raises(UnsupportedInputError, match="--max-shape"):
            be.run(np.zeros((1, 3, 256, 128), np.float32))


def test_stale_sidecar_triggers_rebuild(toys, tmp_path: Path) -> None:
    from runtime.backends.tensorrt import TensorRTBackend

    engine = tmp_path / "toy.plan"
    build_engine(toys["fp32"], engine, BuildOptions(**_OPTS))
    meta = json.loads(sidecar_path(engine).read_text())
    meta["tensorrt_version"] = "9.0.0"
    sidecar_path(engine).write_text(json.dumps(meta))
    with TensorRTBackend(engine) as be:  # rebuild="auto" from the recorded ONNX
        assert be.run(np.zeros((1, 3, 16, 16), np.float32))["sr"].shape == (1, 3, 32, 32)
    assert read_sidecar(engine).tensorrt_version == trt.__version__
    assert not build_engine(toys["fp32"], engine, BuildOptions(**_OPTS)).built


@pytest.mark.slow
def test_printed_trtexec_command_builds_a_loadable_engine(toys, tmp_path: Path) -> None:
    if shutil.which("trtexec") is None:
        pytest.skip("trtexec is not on PATH (pip wheels do not ship it)")
    from runtime.backends.tensorrt import TensorRTBackend
    from runtime.engine_spec import resolve_profile, trtexec_command

    engine = tmp_path / "trtexec.plan"
    opts = BuildOptions(**_OPTS)
    profile = resolve_profile(opts, multiple_of=8, min_size=8)
    cmd, _ = trtexec_command(toys["fp16"], engine, profile, opts, trt_major=int(trt.__version__.split(".")[0]))
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, shlex.join(cmd) + "\n" + out.stdout[-2000:] + out.stderr[-2000:]
    with TensorRTBackend(engine, onnx=toys["fp16"]) as be:  # no sidecar: warns, info from the ONNX
        x = np.random.default_rng(1).random((1, 3, 32, 32), dtype=np.float32)
        np.testing.assert_allclose(be.run(x)["sr"], _ort(toys["fp32"], x)["sr"], atol=2e-2, rtol=0)
