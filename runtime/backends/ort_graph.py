"""What ONNX Runtime's CPU provider is given: exported graphs with their attention fused.

``python -m export.onnx`` writes Align-Attention's windowed attention as ``ugtsr::WindowAttention``
nodes with a standard-op function body (``export.attention``): every ONNX consumer, TensorRT
included, can run the file as it is. On ONNX Runtime's CPU provider each such node is replaced by
ONNX Runtime's contrib operator ``com.microsoft.MultiHeadAttention`` (same layout ``(batch,
sequence, heads x head_size)``, same ``num_heads`` and ``scale``): without a mask or a bias it runs
MLAS's flash-attention kernel (``onnxruntime/contrib_ops/cpu/bert/multihead_attention.cc``), which
never materialises the ``(windows, heads, N, N)`` scores and their softmax. For the fourth default
model that is 1 KiB per input pixel less at the peak of whole-image inference and a few per cent
less time (issue 13, ``docs/EFFICIENCY.md``); ``export.verify`` checks both forms against PyTorch.

Only float32 graphs are fused (the CPU kernel is float32 only); a model without such nodes, or a
machine without the ``onnx`` package, gets the file unchanged (the function body runs instead:
the same values, unfused).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from export.attention import ATTENTION_DOMAIN, ATTENTION_OP, window_attention_nodes  # no torch, no onnx
from export.value_info import drop_symbolic_value_info  # no torch, no onnx

__all__ = ["fuse_window_attention", "cpu_model"]

logger = logging.getLogger(__name__)

_MS_DOMAIN = "com.microsoft"


def fuse_window_attention(proto) -> int:
    """Replace every ``ugtsr::WindowAttention`` node of ``proto`` by ``com.microsoft.MultiHeadAttention``.

    In place; returns the number of nodes replaced (0 leaves ``proto`` untouched). The function
    body is dropped once no node uses it; the ``ugtsr`` opset stays while other ``ugtsr`` nodes
    (the plugin variant's ``CodebookTopK``) remain.
    """
    from onnx import helper

    nodes = window_attention_nodes(proto.graph)
    if not nodes:
        return 0
    for n in nodes:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if not isinstance(attrs.get("num_heads"), int) or not isinstance(attrs.get("scale"), float):
            raise ValueError(f"WindowAttention node '{n.name}' lacks num_heads:int / scale:float")
        fused = helper.make_node("MultiHeadAttention", list(n.input), list(n.output), name=n.name,
                                 domain=_MS_DOMAIN, num_heads=attrs["num_heads"], scale=attrs["scale"])
        n.CopyFrom(fused)
    keep = [f for f in proto.functions if not (f.domain == ATTENTION_DOMAIN and f.name == ATTENTION_OP)]
    del proto.functions[:]
    proto.functions.extend(keep)
    if not any(n.domain == ATTENTION_DOMAIN for n in proto.graph.node) and not any(
            f.domain == ATTENTION_DOMAIN for f in proto.functions):
        kept = [imp for imp in proto.opset_import if imp.domain != ATTENTION_DOMAIN]
        del proto.opset_import[:]
        proto.opset_import.extend(kept)
    if not any(imp.domain == _MS_DOMAIN for imp in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid(_MS_DOMAIN, 1))
    return len(nodes)


def _is_fp32(proto) -> bool:
    meta = {p.key: p.value for p in proto.metadata_props}
    return meta.get("precision", "fp32") == "fp32"


def cpu_model(model: str | os.PathLike | bytes) -> str | bytes:
    """What to hand ``onnxruntime.InferenceSession`` on the CPU provider for ``model`` (a path or bytes).

    The serialized graph with fused attention when ``model`` has ``WindowAttention`` nodes and is
    float32 (its symbolic intermediate shapes dropped as well, :mod:`export.value_info`: files exported
    before the exporter did it); otherwise ``model`` itself (a path stays a path). Reading a file that
    is not a valid ONNX model also returns it unchanged: ONNX Runtime then reports the problem itself.
    """
    data = model if isinstance(model, bytes) else None
    if data is None:
        try:
            with open(model, "rb") as fh:
                head = fh.read()
        except OSError:
            return str(model)
        if ATTENTION_OP.encode() not in head:  # a pre-filter: these bytes cannot hold the node
            return str(model)
        data = head
    elif ATTENTION_OP.encode() not in data:
        return data
    try:
        import onnx
    except ImportError:
        logger.info("the onnx package is not installed: WindowAttention runs as its function body, unfused")
        return data if isinstance(model, bytes) else str(model)
    unchanged = data if isinstance(model, bytes) else str(model)
    try:
        proto = onnx.load_from_string(data)
        if not _is_fp32(proto) or not window_attention_nodes(proto.graph):
            return unchanged
        if not isinstance(model, bytes) and any(
                t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
            onnx.load_external_data_for_model(proto, str(Path(model).parent))
        fuse_window_attention(proto)
        drop_symbolic_value_info(proto.graph)  # files exported before it was done at export
        return proto.SerializeToString()
    except Exception as exc:  # noqa: BLE001 - not a model onnx can read, a node without its attributes, a
        # graph over protobuf's 2 GB: ONNX Runtime gets the file as it is and says what is wrong, if anything
        logger.info("WindowAttention not fused (%s); the graph runs as written", " ".join(str(exc).split())[:160])
        return unchanged
