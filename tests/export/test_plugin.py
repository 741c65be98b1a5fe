"""Plugin export variant: ``CodebookTopK`` nodes, their ONNX Runtime fallback function, verification of a
tiny_x4 export, the TensorRT-side preparation, and the ``runtime.plugins.codebook_topk`` plugin module."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from export.check import check_model
from export.check import main as check_main
from export.onnx import main as export_main
from export.plugin import (
    PLUGIN_DOMAIN,
    PLUGIN_OP,
    attach_plugin_functions,
    plugin_matching,
    plugin_nodes,
    strip_plugin_functions,
)
from ugtsr import codebook as cb
from ugtsr.errors import ExportError, MissingDependencyError

REPO = Path(__file__).resolve().parents[2]


def _attr(node, name):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


def _tiny_plugin_model(d: int = 16, n_codes: int = 64, k: int = 3, *, seed: int = 0, opset: int = 21):
    """``rows (N, d)`` -> ``top (N, k)`` int64 and ``nearest (N,)`` int64 through two CodebookTopK nodes."""
    g = np.random.default_rng(seed)
    code = g.standard_normal((n_codes, d)).astype(np.float32)
    sq = (code.astype(np.float32) ** 2).sum(1).astype(np.float32)
    attrs = {"plugin_namespace": PLUGIN_DOMAIN, "plugin_version": "1"}
    nodes = [
        helper.make_node(PLUGIN_OP, ["rows", "codebook", "codebook_sq"], ["top32"], name="search_k",
                         domain=PLUGIN_DOMAIN, k=k, **attrs),
        helper.make_node("Cast", ["top32"], ["top"], to=TensorProto.INT64),
        helper.make_node(PLUGIN_OP, ["rows", "codebook", "codebook_sq"], ["near32"], name="search_1",
                         domain=PLUGIN_DOMAIN, k=1, **attrs),
        helper.make_node("Cast", ["near32"], ["near64"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["near64", "minus_one"], ["nearest"]),
    ]
    graph = helper.make_graph(
        nodes, "codebook_topk_toy",
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["N", d])],
        [helper.make_tensor_value_info("top", TensorProto.INT64, ["N", k]),
         helper.make_tensor_value_info("nearest", TensorProto.INT64, ["N"])],
        initializer=[numpy_helper.from_array(code, "codebook"), numpy_helper.from_array(sq, "codebook_sq"),
                     numpy_helper.from_array(np.array([-1], np.int64), "minus_one")],
        value_info=[helper.make_tensor_value_info("top32", TensorProto.INT32, ["N", k])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid(PLUGIN_DOMAIN, 1)])
    model.ir_version = 10
    return model, torch.from_numpy(code)


def _ort(proto):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------------------------------------ fallback function
@pytest.mark.parametrize("opset", [17, 21])
def test_fallback_function_runs_in_ort_and_matches_pytorch(opset):
    model, code = _tiny_plugin_model(opset=opset)
    attach_plugin_functions(model, None)
    onnx.checker.check_model(model, full_check=True)
    assert [(f.domain, f.name) for f in model.functions] == [(PLUGIN_DOMAIN, PLUGIN_OP)]
    sess = _ort(model)
    g = torch.Generator().manual_seed(1)
    for n in (1, 7, 300):
        rows = code[torch.randint(0, 64, (n,), generator=g)] + 0.3 * torch.randn(n, 16, generator=g)
        top, near = sess.run(None, {"rows": rows.numpy()})
        assert top.dtype == np.int64 and top.shape == (n, 3) and near.shape == (n,)
        assert np.array_equal(top, cb.knn_search(rows, code, 3).numpy())
        assert np.array_equal(near, cb.nearest_search(rows, code).numpy())


def test_attach_is_idempotent_and_rejects_graphs_without_nodes():
    model, _ = _tiny_plugin_model()
    attach_plugin_functions(model, None)
    attach_plugin_functions(model, None)
    assert len(model.functions) == 1
    empty = helper.make_model(helper.make_graph([], "g", [], []), opset_imports=[helper.make_opsetid("", 21)])
    with pytest.raises(ExportError, match="no ugtsr::CodebookTopK"):
        attach_plugin_functions(empty, None)


def test_strip_for_tensorrt_removes_the_function_and_sets_aot():
    model, _ = _tiny_plugin_model()
    attach_plugin_functions(model, None)
    strip_plugin_functions(model, aot=True)
    assert not model.functions
    assert [_attr(n, "aot") for n in plugin_nodes(model)] == [1, 1]
    strip_plugin_functions(model)
    assert [_attr(n, "aot") for n in plugin_nodes(model)] == [0, 0]  # replaced, not duplicated
    assert all(sum(a.name == "aot" for a in n.attribute) == 1 for n in plugin_nodes(model))
    with pytest.raises(Exception, match="CodebookTopK"):  # ORT has no such op without the function
        _ort(model)


def test_check_reports_the_custom_op_as_a_plugin_warning():
    model, _ = _tiny_plugin_model()
    attach_plugin_functions(model, None)
    report = check_model(model)
    assert report.ok, report.format()
    plugin = [f for f in report.findings if f.op == f"{PLUGIN_DOMAIN}::{PLUGIN_OP}"]
    assert len(plugin) == 2 and all(f.severity == "warning" and "plugin" in f.message for f in plugin)


# ------------------------------------------------------------------------------------------------ plugin_matching
class _Searcher(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.codebook = torch.nn.Parameter(torch.randn(64, 16))

    def forward(self, rows):
        return cb.knn_search(rows, self.codebook, 3), cb.nearest_search(rows + 0.1, self.codebook)


def test_plugin_matching_is_transparent_outside_export_and_restores():
    orig = (cb.knn_search, cb.nearest_search)
    net = _Searcher()
    rows = torch.randn(20, 16)
    want = net(rows)
    with plugin_matching(net):
        assert cb.knn_search is not orig[0]
        got = net(rows)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert (cb.knn_search, cb.nearest_search) == orig
    with pytest.raises(RuntimeError, match="boom"), plugin_matching(net):
        raise RuntimeError("boom")
    assert (cb.knn_search, cb.nearest_search) == orig


def test_plugin_matching_refuses_codeformer():
    net = types.SimpleNamespace(config=types.SimpleNamespace(matching="codeformer", name="cf"))
    with pytest.raises(ExportError, match="codeformer"), plugin_matching(net):
        pass


def test_torch_export_emits_one_node_per_search_with_dynamic_rows():
    from torch.export import Dim

    net = _Searcher().eval()
    with plugin_matching(net), torch.no_grad():
        prog = torch.onnx.export(net, (torch.randn(10, 16),), dynamo=True, dynamic_shapes=({0: Dim("n", min=2, max=4096)},),
                                 opset_version=21, external_data=False, optimize=True, verbose=False)
    proto = prog.model_proto
    nodes = plugin_nodes(proto)
    assert sorted(_attr(n, "k") for n in nodes) == [1, 3]
    assert all(_attr(n, "plugin_namespace") == b"ugtsr" and _attr(n, "plugin_version") == b"1" for n in nodes)
    assert (PLUGIN_DOMAIN, 1) in [(o.domain, o.version) for o in proto.opset_import]
    consumers = {i: n.op_type for n in proto.graph.node for i in n.input}
    assert all(consumers[n.output[0]] == "Cast" for n in nodes)  # int32 -> int64 right after the plugin
    assert not [n for n in proto.graph.node if n.op_type in ("TopK", "ArgMin")]
    attach_plugin_functions(proto, None)
    sess = _ort(proto)
    x = torch.randn(123, 16)
    top, near = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    ref_top, ref_near = net(x)
    assert np.array_equal(top, ref_top.numpy()) and np.array_equal(near, ref_near.numpy())


# ------------------------------------------------------------------------------------------------ tiny_x4 export
@pytest.fixture(scope="module")
def plugin_export(tiny_ckpt, tmp_path_factory):
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("plugin") / "tiny_plugin.onnx"
    report = out.with_suffix(".json")
    rc = export_main([str(tiny_ckpt), "-o", str(out), "--matching", "plugin", "--outputs", "sr,indices",
                      "--json", str(report), "-q"])
    assert rc == 0
    return out, report


@pytest.mark.slow
def test_tiny_x4_plugin_export_verifies_and_checks(plugin_export, tiny_ckpt, capsys):
    import json

    path, report_path = plugin_export
    report = json.loads(report_path.read_text())
    assert report["passed"], report["failure"]
    assert all(c["index_agreement"] == 1.0 and c["max_abs"] <= 1e-4 for c in report["cases"])
    # verified at odd sizes (the graph pads itself) and at batch 2
    assert all(c["shape"][2] % 16 and c["shape"][3] % 16 for c in report["cases"])
    assert any(c["shape"][0] == 2 for c in report["cases"])
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["variant"] == "plugin" and meta["pads_input"] == "1"
    ks = sorted(_attr(n, "k") for n in plugin_nodes(proto))
    assert ks == [1, 3]  # Top-3 candidates (eq. 6) and the re-quantization (eq. 8)
    assert not [n for n in proto.graph.node if n.op_type in ("TopK", "ArgMin")]
    # the plugin's fallback body and Align-Attention's WindowAttention body (export.attention)
    assert sorted((f.domain, f.name) for f in proto.functions) == [(PLUGIN_DOMAIN, PLUGIN_OP),
                                                                    (PLUGIN_DOMAIN, "WindowAttention")]
    # the file runs in ONNX Runtime as written, at a size other than the example
    sess = _ort(proto)
    x = np.random.default_rng(3).random((1, 3, 16, 48), dtype=np.float32)
    sr, idx = sess.run(None, {"lq": x})
    assert sr.shape == (1, 3, 64, 192) and idx.dtype == np.int64
    # and at an odd size at batch 2 against PyTorch (the standard-op matcher: the same codes)
    import ugtsr
    x = np.random.default_rng(4).random((2, 3, 21, 35), dtype=np.float32)
    sr, idx = sess.run(None, {"lq": x})
    with torch.no_grad():
        ref = ugtsr.load_model(tiny_ckpt)(torch.from_numpy(x))
    assert sr.shape == (2, 3, 84, 140) and np.array_equal(idx, ref.indices.numpy())
    assert np.abs(np.clip(sr, 0, 1) - np.clip(ref.sr.numpy(), 0, 1)).max() <= 1e-4
    assert check_main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "ugtsr::CodebookTopK" in out and "WARNING" in out and "plugin" in out
    # TensorRT copy: no plugin function (WindowAttention's stays: the parser inlines it), explicit
    # implementation choice
    trt_copy = strip_plugin_functions(onnx.load(str(path)), aot=False)
    assert [f.name for f in trt_copy.functions] == ["WindowAttention"] and all(_attr(n, "aot") == 0 for n in plugin_nodes(trt_copy))


# ------------------------------------------------------------------------------------------------ TensorRT plugin module
def test_plugin_module_imports_without_tensorrt():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = textwrap.dedent("""
        import sys
        sys.modules["tensorrt"] = None
        import runtime.plugins.codebook_topk as m
        assert not m.is_registered() and m.PLUGIN_ID == "ugtsr::CodebookTopK"
        assert "torch" not in sys.modules and "triton" not in sys.modules
        from ugtsr.errors import MissingDependencyError
        try:
            m.register()
        except MissingDependencyError as exc:
            print("ok", exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("ok") and "tensorrt" in out.stdout, out.stderr[-2000:]


class _FakeTrtp(types.ModuleType):
    """Just enough of ``tensorrt.plugin`` to record what :func:`register` defines."""

    class TensorDesc:
        def __init__(self, shape, dtype="f32"):
            self.shape_expr, self.ndim, self.dtype = list(shape), len(shape), dtype

    class Tensor:
        pass

    class KernelLaunchParams:
        pass

    class SymIntExprs(list):
        @classmethod
        def from_tuple(cls, items):
            return cls(items)

    def __init__(self):
        super().__init__("tensorrt.plugin")
        self.defined = {}

    def _deco(self, kind, plugin_id):
        def wrap(fn):
            self.defined[kind] = (plugin_id, fn)
            return fn
        return wrap

    def register(self, plugin_id):
        return self._deco("register", plugin_id)

    def impl(self, plugin_id):
        return self._deco("impl", plugin_id)

    def aot_impl(self, plugin_id):
        return self._deco("aot_impl", plugin_id)

    @staticmethod
    def from_shape_expr(shape, dtype):
        return ("desc", tuple(shape), dtype)

    @staticmethod
    def cdiv(a, b):
        return -(-a // b)

    @staticmethod
    def SymInt32(e):  # noqa: N802 - TensorRT's name
        return ("i32", e)


def test_register_defines_descriptor_jit_and_aot(monkeypatch):
    import runtime.plugins.codebook_topk as plug

    trtp = _FakeTrtp()
    trt = types.ModuleType("tensorrt")
    trt.float32, trt.int32, trt.__version__, trt.plugin = "f32", "i32", "10.13-fake", trtp
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trtp)
    monkeypatch.setattr(plug, "_state", {"registered": False, "aot": False})
    assert plug.register() is True and plug.is_registered()
    assert plug.register() is True  # idempotent: decorators ran once
    assert {k: v[0] for k, v in trtp.defined.items()} == dict.fromkeys(("register", "impl", "aot_impl"),
                                                                        "ugtsr::CodebookTopK")
    # the call schemas tensorrt.plugin validates (plugin/_validate.py): names in this order, and the
    # AOT function needs `tactic` and a return annotation
    import inspect

    sigs = {kind: inspect.signature(fn) for kind, (_, fn) in trtp.defined.items()}
    assert list(sigs["register"].parameters) == ["rows", "codebook", "codebook_sq", "k"]
    assert list(sigs["impl"].parameters) == ["rows", "codebook", "codebook_sq", "k", "outputs", "stream"]
    assert list(sigs["aot_impl"].parameters) == ["rows", "codebook", "codebook_sq", "k", "outputs", "tactic"]
    assert sigs["aot_impl"].return_annotation is not inspect.Signature.empty
    assert sigs["register"].parameters["k"].annotation == sigs["impl"].parameters["k"].annotation
    desc = trtp.defined["register"][1]
    k = np.array([3], np.int32)
    rows, code, sq = trtp.TensorDesc([100, 16]), trtp.TensorDesc([64, 16]), trtp.TensorDesc([64])
    assert desc(rows, code, sq, k) == ("desc", (100, 3), "i32")
    with pytest.raises(ValueError, match="rank"):
        desc(trtp.TensorDesc([2, 100, 16]), code, sq, k)
    pytest.importorskip("triton", reason="compiling the AOT kernel needs triton")
    from ugtsr.kernels import fused_topk as ft

    real = ft.compile_codebook_topk_ptx
    monkeypatch.setattr(ft, "compile_codebook_topk_ptx", lambda kk, **kw: real(kk, target=(90, 32), **kw))
    name, ptx, launch, extra = trtp.defined["aot_impl"][1](rows, code, sq, k, (None,), 0)
    assert name == b"codebook_topk_kernel" and b".entry codebook_topk_kernel" in ptx
    assert launch.grid_x == 4 and launch.block_x == 128 and 0 < launch.shared_mem <= 48 * 1024
    assert list(extra) == [("i32", 100), ("i32", 64), ("i32", 16)]


@pytest.mark.trt
@pytest.mark.gpu
@pytest.mark.parametrize("aot", [False, True])
def test_tensorrt_builds_and_runs_the_plugin_graph(tmp_path, aot):
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install tensorrt; needs a GPU)")
    pytest.importorskip("triton", reason="the plugin kernel needs triton")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT plugin test needs a CUDA GPU")
    import runtime.plugins.codebook_topk as plug

    has_aot = plug.register()
    if aot and not has_aot:
        pytest.skip(f"TensorRT {trt.__version__} has no AOT Python plugins (10.9+)")
    model, code = _tiny_plugin_model()
    attach_plugin_functions(model, None)
    strip_plugin_functions(model, aot=aot)
    path = tmp_path / "plugin.onnx"
    onnx.save(model, str(path))
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(path)), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    prof = builder.create_optimization_profile()
    prof.set_shape("rows", (1, 16), (256, 16), (1024, 16))
    config.add_optimization_profile(prof)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    ctx = engine.create_execution_context()
    rows = (code[torch.randint(0, 64, (300,))] + 0.3 * torch.randn(300, 16)).cuda()
    ctx.set_input_shape("rows", tuple(rows.shape))
    top = torch.empty(300, 3, dtype=torch.int64, device="cuda")
    near = torch.empty(300, dtype=torch.int64, device="cuda")
    for name, t in (("rows", rows), ("top", top), ("nearest", near)):
        ctx.set_tensor_address(name, t.data_ptr())
    stream = torch.cuda.current_stream()
    assert ctx.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    assert torch.equal(top.cpu(), cb.knn_search(rows.cpu(), code, 3))
    assert torch.equal(near.cpu(), cb.nearest_search(rows.cpu(), code))


def test_missing_tensorrt_error_names_the_extra(monkeypatch):
    import runtime.plugins.codebook_topk as plug

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setattr(plug, "_state", {"registered": False, "aot": False})
    with pytest.raises(MissingDependencyError, match=r"ugtsr\[gpu\]"):
        plug.register()
