"""Align-Attention's windowed attention as one ``ugtsr::WindowAttention`` node (export.attention) and
its fusion into ONNX Runtime's ``com.microsoft.MultiHeadAttention`` on the CPU
(runtime.backends.ort_graph; issue 13: the fused kernel never holds the window scores)."""
from __future__ import annotations

import numpy as np
import pytest

from export.attention import ATTENTION_DOMAIN, ATTENTION_OP, make_attention_function, window_attention_nodes
from runtime.backends.ort_graph import cpu_model, fuse_window_attention

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402


def _reference(q, k, v, heads, scale):
    b, n, c = q.shape
    hd = c // heads
    split = lambda t: t.reshape(b, n, heads, hd).transpose(0, 2, 1, 3).astype(np.float64)  # noqa: E731
    s = (split(q) * scale) @ split(k).transpose(0, 1, 3, 2)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return (p @ split(v)).transpose(0, 2, 1, 3).reshape(b, n, c)


def _graph(heads: int, scale: float, *, precision: str = "fp32"):
    node = helper.make_node(ATTENTION_OP, ["q", "k", "v"], ["out"], domain=ATTENTION_DOMAIN, name="wa",
                            num_heads=heads, scale=scale)
    io = [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["B", "N", "C"]) for x in ("q", "k", "v", "out")]
    graph = helper.make_graph([node], "g", io[:3], io[3:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(ATTENTION_DOMAIN, 1)],
                              functions=[make_attention_function(21)])
    model.ir_version = 10
    entry = model.metadata_props.add()
    entry.key, entry.value = "precision", precision
    return model


@pytest.mark.parametrize("heads, n, c", [(2, 64, 32), (4, 16, 64), (1, 9, 8)])
def test_function_body_and_fused_kernel_compute_the_attention(heads, n, c):
    rng = np.random.default_rng(heads)
    q, k, v = (rng.standard_normal((5, n, c), dtype=np.float32) for _ in range(3))
    scale = float((c // heads) ** -0.5)
    model = _graph(heads, scale)
    onnx.checker.check_model(model)
    want = _reference(q, k, v, heads, scale)
    body = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got_body = body.run(None, {"q": q, "k": k, "v": v})[0]
    fused_bytes = cpu_model(model.SerializeToString())
    fused_proto = onnx.load_from_string(fused_bytes)
    assert [(n.domain, n.op_type) for n in fused_proto.graph.node] == [("com.microsoft", "MultiHeadAttention")]
    assert not fused_proto.functions
    assert ATTENTION_DOMAIN not in {imp.domain for imp in fused_proto.opset_import}
    fused = ort.InferenceSession(fused_bytes, providers=["CPUExecutionProvider"])
    got_fused = fused.run(None, {"q": q, "k": k, "v": v})[0]
    assert np.abs(got_body - want).max() < 1e-5
    assert np.abs(got_fused - want).max() < 1e-5


def test_only_float32_graphs_with_the_node_are_rewritten(tmp_path):
    half = _graph(2, 0.25, precision="fp16").SerializeToString()
    assert cpu_model(half) is half
    plain = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]))
    path = tmp_path / "plain.onnx"
    path.write_bytes(plain.SerializeToString())
    assert cpu_model(path) == str(path)  # no node: the path itself, no parse
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model " + ATTENTION_OP.encode())
    assert cpu_model(junk) == str(junk)  # unreadable: ONNX Runtime reports it
    assert cpu_model(tmp_path / "missing.onnx") == str(tmp_path / "missing.onnx")


def test_other_ugtsr_nodes_keep_their_opset():
    model = _graph(2, 0.25)
    model.graph.node.append(helper.make_node("CodebookTopK", ["q", "k", "v"], ["idx"], domain=ATTENTION_DOMAIN, k=1))
    assert fuse_window_attention(model) == 1
    assert ATTENTION_DOMAIN in {imp.domain for imp in model.opset_import}
    assert fuse_window_attention(model) == 0  # nothing left to fuse


def test_export_writes_the_node_verifies_both_forms_and_plain_attention_opts_out(tmp_path, tiny_ckpt):
    from export.onnx import onnx_from_checkpoint

    res = onnx_from_checkpoint(tiny_ckpt, tmp_path / "node.onnx")
    proto = onnx.load(str(tmp_path / "node.onnx"))
    nodes = window_attention_nodes(proto.graph)
    assert len(nodes) == res.report["trace"]["attention_nodes"] >= 1
    assert any(f.domain == ATTENTION_DOMAIN and f.name == ATTENTION_OP for f in proto.functions)
    assert res.report["passed"]
    for case in res.report["cases"]:
        assert case["fused_attention"]["max_abs"] < 1e-4
        assert case["fused_attention"]["index_agreement"] == 1.0

    plain = onnx_from_checkpoint(tiny_ckpt, tmp_path / "plain.onnx", options=_options(attention_node=False))
    assert not window_attention_nodes(onnx.load(str(tmp_path / "plain.onnx")).graph)
    assert "attention_nodes" not in plain.report["trace"]

    x = np.random.default_rng(0).random((1, 3, 48, 40), dtype=np.float32)
    outs = []
    for model in (cpu_model(tmp_path / "node.onnx"), str(tmp_path / "node.onnx"), str(tmp_path / "plain.onnx")):
        sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        outs.append(sess.run(["sr"], {"lq": x})[0])
    assert isinstance(cpu_model(tmp_path / "node.onnx"), bytes)
    assert np.abs(outs[0] - outs[2]).max() < 1e-5 and np.abs(outs[1] - outs[2]).max() < 1e-5


def _options(**kw):
    from export.onnx import ExportOptions

    return ExportOptions(**kw)


def test_the_cpu_backend_runs_the_shipped_model_fused(monkeypatch):
    import runtime.backends.ort_graph as graph
    from runtime.backends.onnxruntime import OnnxRuntimeBackend
    from runtime.upscaler import default_model_path

    path = default_model_path()
    if not path.is_file():
        pytest.skip(f"the shipped model {path} is missing")
    given = []
    real = graph.cpu_model
    monkeypatch.setattr(graph, "cpu_model", lambda model: given.append(real(model)) or given[-1])
    backend = OnnxRuntimeBackend(path, threads=1)
    (model,) = given
    ops = {(n.domain, n.op_type) for n in onnx.load_from_string(model).graph.node}
    assert ("com.microsoft", "MultiHeadAttention") in ops and (ATTENTION_DOMAIN, ATTENTION_OP) not in ops
    x = np.random.default_rng(1).random((1, 3, 40, 24), dtype=np.float32)
    got = backend.run(x)["sr"]
    backend.close()
    body = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["sr"], {"lq": x})[0]
    assert got.shape == (1, 3, 160, 96) and np.abs(got - body).max() < 1e-5


def test_the_cpu_backend_falls_back_to_the_file_when_the_fused_graph_is_rejected(monkeypatch, caplog):
    import runtime.backends.ort_graph as graph
    from runtime.backends.onnxruntime import OnnxRuntimeBackend
    from runtime.upscaler import default_model_path

    path = default_model_path()
    if not path.is_file():
        pytest.skip(f"the shipped model {path} is missing")
    monkeypatch.setattr(graph, "cpu_model", lambda model: b"not a model")  # what an old ONNX Runtime would reject
    with caplog.at_level("WARNING"):
        backend = OnnxRuntimeBackend(path, threads=1)
    assert "running the graph as written" in caplog.text and not backend.fused_attention
    x = np.random.default_rng(2).random((1, 3, 16, 16), dtype=np.float32)
    assert backend.run(x)["sr"].shape == (1, 3, 64, 64)
    backend.close()


def test_a_node_without_its_attributes_is_left_to_onnx_runtime():
    model = _graph(2, 0.25)
    del model.graph.node[0].attribute[:]
    data = model.SerializeToString()
    assert cpu_model(data) is data  # not fused; ONNX Runtime reports the node itself
    with pytest.raises(ValueError, match="num_heads"):
        fuse_window_attention(onnx.load_from_string(data))
