"""Windowed attention as one ``ugtsr::WindowAttention`` node with a standard-op function body.

Every export traces the windowed attention of Align-Attention (``ugtsr.attention.window_attention``,
eq. 9) as one node::

    WindowAttention(q (B', N, C), k (B', N, C), v (B', N, C)) -> (B', N, C)
        domain "ugtsr" (opset 1); attributes num_heads:int, scale:float

and attaches a model-local ``FunctionProto`` of the same name whose body computes it with standard
ops (Reshape to heads, Transpose, ``MatMul(q * scale, k^T)``, ``Softmax`` in float32, ``MatMul`` with
``v``, Transpose, Reshape): the same operations and order as the eager module. Any ONNX consumer
runs the body (ONNX Runtime and TensorRT's parser inline model-local functions; TensorRT's parser
resolves the body's attribute references ``num_heads`` / ``scale`` against the calling node, see
onnx-tensorrt ``OnnxAttrs.cpp``, ``isExternalAttribute`` and ``localFunctionStack``), so the file is
as portable as before. Not run through TensorRT here (it cannot be installed). The node's layout and scale are exactly those of ONNX Runtime's contrib
operator ``com.microsoft.MultiHeadAttention`` (query/key/value ``(batch, sequence, heads x
head_size)``, attribute ``num_heads``, ``scale``), so ``runtime.backends.ort_graph`` can hand each
node to that fused kernel on ONNX Runtime's CPU provider: a flash-attention kernel (MLAS) that never
materialises the ``(B', heads, N, N)`` scores and their softmax, 4 KiB per input pixel of the
fourth default model at its peak (issue 13).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ugtsr.errors import require

__all__ = ["ATTENTION_DOMAIN", "ATTENTION_OP", "ATTENTION_VERSION", "attention_nodes",
           "make_attention_function", "attach_attention_function", "window_attention_nodes"]

ATTENTION_DOMAIN = "ugtsr"
ATTENTION_OP = "WindowAttention"
ATTENTION_VERSION = 1


@contextlib.contextmanager
def attention_nodes() -> Iterator[None]:
    """Within the block, exports trace ``ugtsr.attention.window_attention`` as one node."""
    from ugtsr import attention

    before = attention.EMIT_ATTENTION_NODE
    attention.EMIT_ATTENTION_NODE = True
    try:
        yield
    finally:
        attention.EMIT_ATTENTION_NODE = before


def window_attention_nodes(graph) -> list:
    """The ``ugtsr::WindowAttention`` nodes of an ``onnx.GraphProto``."""
    return [n for n in graph.node if n.domain == ATTENTION_DOMAIN and n.op_type == ATTENTION_OP]


def _attr_ref(onnx, name: str, ref: str, kind) -> object:
    attr = onnx.AttributeProto()
    attr.name, attr.ref_attr_name, attr.type = name, ref, kind
    return attr


def make_attention_function(opset: int):
    """``FunctionProto`` ``ugtsr::WindowAttention(q, k, v) -> out`` in standard ONNX ops."""
    onnx = require("onnx", extra="export", purpose="building the attention function")
    from onnx import TensorProto, helper

    heads = helper.make_node("Constant", [], ["heads"])
    heads.attribute.append(_attr_ref(onnx, "value_int", "num_heads", onnx.AttributeProto.INT))
    scale = helper.make_node("Constant", [], ["scale_f32"])
    scale.attribute.append(_attr_ref(onnx, "value_float", "scale", onnx.AttributeProto.FLOAT))
    nodes = [
        heads,
        scale,
        helper.make_node("CastLike", ["scale_f32", "q"], ["scale"]),
        helper.make_node("Constant", [], ["one"], value_ints=[1]),
        helper.make_node("Constant", [], ["minus_one"], value_ints=[-1]),
        helper.make_node("Reshape", ["heads", "one"], ["heads_1d"]),
        helper.make_node("Shape", ["q"], ["bn"], start=0, end=2),  # (B', N)
        helper.make_node("Shape", ["q"], ["bnc"]),
        helper.make_node("Concat", ["bn", "heads_1d", "minus_one"], ["split_shape"], axis=0),
        helper.make_node("Reshape", ["q", "split_shape"], ["q4"]),  # (B', N, heads, hd)
        helper.make_node("Reshape", ["k", "split_shape"], ["k4"]),
        helper.make_node("Reshape", ["v", "split_shape"], ["v4"]),
        helper.make_node("Transpose", ["q4"], ["qh"], perm=[0, 2, 1, 3]),  # (B', heads, N, hd)
        helper.make_node("Transpose", ["k4"], ["kt"], perm=[0, 2, 3, 1]),  # (B', heads, hd, N)
        helper.make_node("Transpose", ["v4"], ["vh"], perm=[0, 2, 1, 3]),
        helper.make_node("Mul", ["qh", "scale"], ["qs"]),
        helper.make_node("MatMul", ["qs", "kt"], ["scores"]),  # (B', heads, N, N)
        helper.make_node("Cast", ["scores"], ["scores_f32"], to=TensorProto.FLOAT),
        helper.make_node("Softmax", ["scores_f32"], ["probs_f32"], axis=-1),
        helper.make_node("CastLike", ["probs_f32", "q"], ["probs"]),
        helper.make_node("MatMul", ["probs", "vh"], ["oh"]),  # (B', heads, N, hd)
        helper.make_node("Transpose", ["oh"], ["o4"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["o4", "bnc"], ["out"]),
    ]
    return helper.make_function(
        ATTENTION_DOMAIN, ATTENTION_OP, inputs=["q", "k", "v"], outputs=["out"], nodes=nodes,
        opset_imports=[helper.make_opsetid("", opset)], attributes=["num_heads", "scale"],
        doc_string="softmax(q k^T * scale) v per head on (B', N, heads x head_size) windows, the softmax in "
                   "float32 (ugtsr.attention.window_attention). ONNX Runtime's CPU provider runs it as "
                   "com.microsoft.MultiHeadAttention (runtime.backends.ort_graph).",
    )


def attach_attention_function(proto, opset: int) -> int:
    """Add the ``WindowAttention`` function to ``proto`` (in place) when its graph has such nodes.

    Returns the number of nodes. Also declares the ``ugtsr`` opset (version 1, shared with the
    plugin variant's ``CodebookTopK``).
    """
    onnx = require("onnx", extra="export", purpose="building the attention function")
    nodes = window_attention_nodes(proto.graph)
    if not nodes:
        return 0
    if not any(imp.domain == ATTENTION_DOMAIN for imp in proto.opset_import):
        proto.opset_import.append(onnx.helper.make_opsetid(ATTENTION_DOMAIN, ATTENTION_VERSION))
    keep = [f for f in proto.functions if not (f.domain == ATTENTION_DOMAIN and f.name == ATTENTION_OP)]
    del proto.functions[:]
    proto.functions.extend(keep)
    proto.functions.append(make_attention_function(opset))
    return len(nodes)
