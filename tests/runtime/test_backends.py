"""Backends: ONNX Runtime on synthetic contract models, provider resolution, torch wrapper, no-torch import."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from runtime.backends import Backend, ModelInfo, backend_for_path, load_backend, model_info_from_metadata
from runtime.backends.onnxruntime import OnnxRuntimeBackend, format_shape, resolve_providers
from ugtsr.errors import UGTSRError, UnsupportedInputError

from .conftest import build_synthetic_onnx

REPO = Path(__file__).resolve().parents[2]


# ---- ONNX Runtime --------------------------------------------------------------------------------------
def test_onnxruntime_reads_model_info(make_model):
    path = make_model(uncertainty=True, indices=True, multiple_of=8, min_size=24)
    with OnnxRuntimeBackend(path) as backend:
        info = backend.info
        assert isinstance(backend, Backend) and backend.name == "onnxruntime"
        assert (info.scale, info.multiple_of, info.min_size) == (4, 8, 24)
        assert set(info.outputs) == {"sr", "uncertainty", "indices"} and info.has_uncertainty
        assert info.config["name"] == "synthetic" and info.source == str(path)
        assert backend.providers == ["CPUExecutionProvider"]


def test_onnxruntime_run_matches_contract(make_model):
    with OnnxRuntimeBackend(make_model(uncertainty=True, indices=True)) as backend:
        lq = np.random.default_rng(0).random((2, 3, 16, 32)).astype(np.float32)
        out = backend.run(lq)
    assert out["sr"].shape == (2, 3, 64, 128) and out["sr"].dtype == np.float32
    np.testing.assert_array_equal(out["sr"], np.repeat(np.repeat(lq, 4, 2), 4, 3))
    np.testing.assert_array_equal(out["uncertainty"], -out["sr"])
    assert out["indices"].shape == (2, 8, 16)


def test_onnxruntime_fetches_only_the_outputs_asked_for(make_model):
    """issue 13: outputs nobody asked for are not copied out of the session; 'sr' always comes back,
    and the Upscaler asks for what it needs."""
    with OnnxRuntimeBackend(make_model(uncertainty=True, indices=True)) as backend:
        assert backend.selects_outputs
        lq = np.random.default_rng(0).random((1, 3, 16, 16)).astype(np.float32)
        assert set(backend.run(lq, outputs=())) == {"sr"}
        assert set(backend.run(lq, outputs=("uncertainty",))) == {"sr", "uncertainty"}
        assert set(backend.run(lq)) == {"sr", "uncertainty", "indices"}
        seen = []
        real = backend.run
        backend.run = lambda x, outputs=None: seen.append(outputs) or real(x, outputs=outputs)
        from runtime import Upscaler
        with Upscaler(backend, tile=0) as up:
            up.upscale(np.zeros((16, 16, 3), np.uint8))
            up.upscale_with_uncertainty(np.zeros((16, 16, 3), np.uint8))
        assert seen == [("sr",), ("sr", "uncertainty")]


def test_onnxruntime_rejects_inputs_outside_the_contract(nearest_model):
    with OnnxRuntimeBackend(nearest_model) as backend:
        for bad in (np.zeros((1, 3, 20, 16), np.float32), np.zeros((1, 1, 16, 16), np.float32),
                    np.zeros((1, 3, 16, 16), np.float64)):
            with pytest.raises(UnsupportedInputError):
                backend.run(bad)
        backend.close()
        with pytest.raises(UGTSRError, match="closed"):
            backend.run(np.zeros((1, 3, 16, 16), np.float32))


def test_onnx_without_metadata_is_a_one_line_error(make_model):
    path = make_model(metadata=False)
    with pytest.raises(UnsupportedInputError) as info:
        OnnxRuntimeBackend(path)
    msg = str(info.value)
    assert msg == (f"{path} is not a UGTSR model (no 'scale' metadata); export it with python -m export.onnx")


def test_corrupt_and_missing_onnx(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(os.urandom(256))
    with pytest.raises(UnsupportedInputError) as info:
        OnnxRuntimeBackend(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UnsupportedInputError, match="not found"):
        OnnxRuntimeBackend(tmp_path / "missing.onnx")


def test_wrong_input_name_and_bad_metadata(tmp_path):
    path = build_synthetic_onnx(tmp_path / "x.onnx", input_name="image")
    with pytest.raises(UnsupportedInputError, match="one input named 'lq'"):
        OnnxRuntimeBackend(path)
    path = build_synthetic_onnx(tmp_path / "y.onnx", extra_metadata={"multiple_of": "sixteen"})
    with pytest.raises(UnsupportedInputError, match="multiple_of"):
        OnnxRuntimeBackend(path)


def test_unavailable_provider_falls_back_to_cpu_with_warning(nearest_model, caplog):
    with OnnxRuntimeBackend(nearest_model, providers="cuda") as backend:
        assert backend.providers == ["CPUExecutionProvider"]
        assert backend.run(np.zeros((1, 3, 16, 16), np.float32))["sr"].shape == (1, 3, 64, 64)
    assert any("CUDAExecutionProvider" in r.getMessage() for r in caplog.records)


def test_resolve_providers_builds_options():
    available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    chosen = resolve_providers("tensorrt", available=available, device_id=1, model_path=Path("/m/model.onnx"),
                               trt_options={"trt_fp16_enable": True,
                                            "trt_profile_min_shapes": (1, 3, 64, 64),
                                            "trt_profile_opt_shapes": "lq:1x3x256x256",
                                            "trt_profile_max_shapes": [1, 3, 512, 512]})
    names = [n for n, _ in chosen]
    assert names == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt = chosen[0][1]
    assert trt["device_id"] == "1" and trt["trt_fp16_enable"] == "True"
    assert trt["trt_engine_cache_enable"] == "True" and trt["trt_engine_cache_path"] == "/m/model.ort_trt_cache"
    assert trt["trt_profile_min_shapes"] == "lq:1x3x64x64"
    assert trt["trt_profile_max_shapes"] == "lq:1x3x512x512"
    assert chosen[1][1] == {"device_id": "1"}
    assert format_shape((2, 3, 8, 8), "lq") == "lq:2x3x8x8"
    # unavailable ones are dropped; CPU is always last
    assert resolve_providers(["cuda", "cpu"], available=["CPUExecutionProvider"]) == [("CPUExecutionProvider", {})]
    with pytest.raises(UnsupportedInputError, match="unknown execution provider"):
        resolve_providers("tpu", available=available)
    with pytest.raises(UnsupportedInputError, match="profile shapes"):
        resolve_providers("tensorrt", available=available, trt_options={"trt_profile_max_shapes": "lq:1x3x8x8"})


def test_model_info_from_metadata_parses_and_validates():
    info = model_info_from_metadata({"scale": "2", "multiple_of": "32", "outputs": "sr,uncertainty",
                                     "config": json.dumps({"a": 1}), "precision": "fp16"}, source="m")
    assert info == ModelInfo(scale=2, multiple_of=32, min_size=32, outputs=("sr", "uncertainty"),
                             precision="fp16", config={"a": 1}, source="m")
    parsed = model_info_from_metadata({"scale": 4, "multiple_of": 16, "min_size": 16,
                                       "outputs": ["sr", "uncertainty"], "config": {"a": 1}}, source="e.plan")
    assert parsed.outputs == ("sr", "uncertainty") and parsed.config == {"a": 1} and parsed.min_size == 16
    with pytest.raises(UnsupportedInputError, match="no 'sr' output"):
        model_info_from_metadata({"scale": "4", "outputs": "x"}, source="m")
    with pytest.raises(UnsupportedInputError, match="config"):
        model_info_from_metadata({"scale": "4", "config": "{"}, source="m")


# ---- choosing backends -----------------------------------------------------------------------------------
def test_backend_for_path():
    assert backend_for_path("a.onnx") == "onnxruntime"
    assert backend_for_path("a.PT") == "torch" and backend_for_path("a.pth") == "torch"
    assert backend_for_path("a.plan") == "tensorrt" and backend_for_path("a.engine") == "tensorrt"
    assert backend_for_path("a.bin", "onnxruntime") == "onnxruntime"
    with pytest.raises(UnsupportedInputError):
        backend_for_path("a.bin")
    with pytest.raises(UnsupportedInputError):
        backend_for_path("a.onnx", "openvino")


def test_tensorrt_backend_is_imported_lazily_and_fails_cleanly_without_tensorrt(tmp_path):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here")
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"\x00" * 16)
    with pytest.raises(UGTSRError):  # module absent, TensorRT missing, or engine invalid: one clean error
        load_backend(engine)


def test_load_backend_passes_device_to_onnxruntime(nearest_model, caplog):
    with load_backend(nearest_model, device="cuda:0") as backend:  # no CUDA here: falls back with a warning
        assert backend.providers[-1] == "CPUExecutionProvider"


# ---- torch backend -------------------------------------------------------------------------------------------
class _FakeConfig:
    scale = 4
    multiple_of = 16
    uncertainty_head = True

    def to_dict(self):
        return {"name": "fake", "scale": 4}


def test_torch_backend_wraps_load_model(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    import ugtsr

    class Out:
        def __init__(self, sr):
            self.sr, self.uncertainty, self.indices = sr, -sr, None

    class Fake(torch.nn.Module):
        config = _FakeConfig()

        def forward(self, x):
            return Out(torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest"))

    calls = []
    monkeypatch.setattr(ugtsr, "load_model", lambda p: calls.append(p) or Fake(), raising=False)
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    from runtime.backends.torch import TorchBackend

    with load_backend(ckpt) as backend:
        assert isinstance(backend, TorchBackend) and calls == [ckpt]
        assert backend.info.outputs == ("sr", "uncertainty") and backend.info.multiple_of == 16
        lq = np.random.default_rng(0).random((1, 3, 16, 32)).astype(np.float32)
        out = backend.run(lq)
        np.testing.assert_array_equal(out["sr"], np.repeat(np.repeat(lq, 4, 2), 4, 3))
        np.testing.assert_array_equal(out["uncertainty"], -out["sr"])
        with pytest.raises(UnsupportedInputError):
            backend.run(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(UnsupportedInputError, match="not found"):
        TorchBackend(tmp_path / "none.pt")
    with pytest.raises(UnsupportedInputError, match="half precision"):
        TorchBackend(ckpt, half=True)


def test_torch_backend_on_a_real_tiny_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    try:
        import ugtsr.checkpoint  # noqa: F401
        from ugtsr import build_model, save_checkpoint
    except (ImportError, AttributeError):
        pytest.skip("ugtsr.save_checkpoint / load_model are not available yet")
    torch.set_num_threads(2)
    model = build_model("tiny_x4").eval()
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, model)
    lq = np.random.default_rng(0).random((1, 3, 32, 32)).astype(np.float32)
    with load_backend(ckpt) as backend:
        assert backend.info.scale == 4 and backend.info.multiple_of == model.config.multiple_of
        out = backend.run(lq)
    with torch.inference_mode():
        ref = model(torch.from_numpy(lq))
    np.testing.assert_allclose(out["sr"], ref.sr.numpy(), atol=1e-5)
    assert out["sr"].shape == (1, 3, 128, 128)


# ---- no torch -------------------------------------------------------------------------------------------------
def test_runtime_imports_and_runs_onnxruntime_without_torch(make_model, tmp_path):
    """With torch unimportable, runtime, runtime.infer and the ORT path (Upscaler and CLI) still work."""
    model = make_model(uncertainty=True)
    image = tmp_path / "in.png"
    import cv2

    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        import numpy as np
        import runtime, runtime.infer, runtime.upscaler, runtime.imageio, runtime.tiling
        from runtime import Upscaler, read_image
        from runtime.backends.onnxruntime import OnnxRuntimeBackend
        with OnnxRuntimeBackend({str(model)!r}) as b:
            out = b.run(np.zeros((1, 3, 16, 16), np.float32))
            assert out["sr"].shape == (1, 3, 64, 64)
        img = read_image({str(image)!r})
        with Upscaler({str(model)!r}) as up:
            assert up.upscale(img).shape == (80, 120, 3)
        rc = runtime.infer.main([{str(image)!r}, "-o", {str(tmp_path / "out")!r}, "--model", {str(model)!r},
                                 "--quiet", "--save-uncertainty"])
        assert rc == 0, rc
        assert sys.modules.get("torch") is None
        print("OK")
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"
    assert (tmp_path / "out" / "in.png").is_file() and (tmp_path / "out" / "in_uncertainty.png").is_file()


# ---- model metadata and outputs are validated when the model is opened (issue 11 item 4) ----------------
@pytest.mark.parametrize("key, value", [("multiple_of", "1000000"), ("scale", "1000"), ("min_size", "100000"),
                                        ("scale", "0"), ("multiple_of", "-16")])
def test_forged_metadata_says_what_is_wrong(make_model, key, value):
    path = make_model(extra_metadata={key: value})
    with pytest.raises(UnsupportedInputError) as info:
        OnnxRuntimeBackend(path)
    msg = str(info.value)
    assert str(path) in msg and f"metadata '{key}' is {int(value)}" in msg and "valid range" in msg


def test_a_one_channel_output_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReduceMean", ["lq", "axes"], ["gray"], keepdims=1),
             helper.make_node("Resize", ["gray", "", "scales"], ["sr"], mode="nearest")]
    inits = [helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
             helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, 4.0, 4.0])]
    graph = helper.make_graph(nodes, "gray", [helper.make_tensor_value_info("lq", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["N", 1, "Hs", "Ws"])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    helper.set_model_props(model, {"scale": "4", "multiple_of": "16", "min_size": "16", "outputs": "sr"})
    onnx.save(model, str(tmp_path / "gray.onnx"))
    with pytest.raises(UnsupportedInputError, match="output 'sr' has 1 channels; UGTSR models take and give 3"):
        OnnxRuntimeBackend(tmp_path / "gray.onnx")
    # a backend that declares nothing (e.g. a remote one) and returns 1 channel is caught by the Upscaler
    from runtime import Upscaler

    class GrayBackend(Backend):
        name = "gray"
        info = ModelInfo(scale=4, multiple_of=16, min_size=16, outputs=("sr",), source="gray-backend")

        def run(self, lq):
            return {"sr": np.repeat(np.repeat(lq[:, :1], 4, 2), 4, 3)}

        def close(self):
            pass

    with Upscaler(GrayBackend()) as up, pytest.raises(UGTSRError, match=r"\(1, 1, 64, 64\).*3 channels"):
        up.upscale(np.zeros((16, 16, 3), np.uint8))


def test_torch_user_warnings_do_not_reach_stderr(capfd, caplog):
    """A read-only input makes torch.from_numpy warn ("The given NumPy array is not writable"); the backend
    logs torch's warnings at debug level instead of letting them through to stderr (issue 11 item 8)."""
    pytest.importorskip("torch")
    import logging
    import warnings

    from runtime.backends.torch import TorchBackend

    lq = np.random.default_rng(0).random((1, 3, 16, 16)).astype(np.float32)
    lq.setflags(write=False)
    caplog.set_level(logging.DEBUG, logger="runtime.backends.torch")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning escaping the backend fails the test
        with TorchBackend(REPO / "runtime" / "models" / "ugtsr_tiny_x4.pt") as backend:
            out = backend.run(lq)
    assert out["sr"].shape == (1, 3, 64, 64) and np.isfinite(out["sr"]).all()
    assert capfd.readouterr().err == ""
    assert any("not writable" in r.getMessage() for r in caplog.records)
