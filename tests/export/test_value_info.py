"""export.value_info: symbolic intermediate shapes are dropped, fixed ones and the graph's ports stay."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from export.value_info import drop_symbolic_value_info
from runtime.backends.ort_graph import cpu_model


def _graph():
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["a"], ["b"]),
             helper.make_node("Add", ["b", "w"], ["y"])]
    w = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.5])
    return helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [w],
        value_info=[helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 4]),
                    helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, 4]),  # unknown dim
                    helper.make_tensor_value_info("w", TensorProto.FLOAT, [1])])


def test_drops_symbolic_and_unknown_dims_only():
    g = _graph()
    assert drop_symbolic_value_info(g) == 2
    assert [v.name for v in g.value_info] == ["w"]
    assert [d.dim_param for d in g.input[0].type.tensor_type.shape.dim][:1] == ["N"]  # ports untouched
    assert drop_symbolic_value_info(g) == 0  # idempotent


def test_the_graph_computes_the_same_without_them():
    model = helper.make_model(_graph(), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    drop_symbolic_value_info(stripped.graph)
    onnx.checker.check_model(stripped)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    a, b = (ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
            for m in (model, stripped))
    np.testing.assert_array_equal(a, b)


def test_shipped_model_has_none_and_cpu_model_strips_old_files(tmp_path):
    """The shipped file was exported without them; cpu_model also strips them from an older export
    (here: the shipped file with a symbolic entry put back) when it fuses its attention."""
    from pathlib import Path
    shipped = Path(__file__).resolve().parents[2] / "runtime" / "models" / "ugtsr_tiny_x4.onnx"
    proto = onnx.load(str(shipped))
    assert not any(d.HasField("dim_param") for v in proto.graph.value_info for d in v.type.tensor_type.shape.dim)
    node = next(n for n in proto.graph.node if n.op_type == "WindowAttention")
    proto.graph.value_info.append(helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, ["B", 64, 32]))
    old = tmp_path / "old.onnx"
    onnx.save(proto, str(old))
    fused = onnx.load_from_string(cpu_model(old))
    assert not any(n.op_type == "WindowAttention" for n in fused.graph.node)
    assert not any(d.HasField("dim_param") for v in fused.graph.value_info for d in v.type.tensor_type.shape.dim)
