"""The plugin variant of the export: codebook search as one ``ugtsr::CodebookTopK`` node.

``python -m export.onnx CKPT --matching plugin`` exports the same network as the standard variant,
except that every codebook search (``ugtsr.codebook.knn_search`` / ``nearest_search``: the Top-k
candidates of eq. 6 and the re-quantization argmin of eqs. 4/8) becomes one custom node::

    CodebookTopK(rows (N, d) f32, codebook (K, d) f32, codebook_sq (K,) f32) -> indices (N, k) int32
        domain "ugtsr" (opset 1); attributes k:int, plugin_namespace="ugtsr", plugin_version="1"

followed by a standard ``Cast`` to int64 (TensorRT plugins output int32 well; the rest of the graph
gathers with int64 as before). The nearest search is the node with ``k=1`` plus a ``Reshape``.
Compared with the standard graph, each search loses its MatMul/Add/TopK (or ArgMin) subgraph and
the ``(N, K)`` distance tensor; everything else is identical.

Two consumers, two forms of the same file:

* ONNX Runtime (and ``export.verify``): :func:`attach_plugin_functions` adds a model-local
  ``FunctionProto`` ``ugtsr::CodebookTopK`` whose body computes the node with standard ops
  (``||z||^2 + ||e||^2 - 2 z.e``, ``TopK(largest=0, sorted=1)``, ``Cast``), so the exported plugin
  graph runs unchanged on any ORT. This is what the export writes.
* TensorRT: its ONNX parser inlines model-local functions *before* it looks for a plugin
  (onnx-tensorrt ``ModelImporter.cpp``), so with the function present the node never reaches the
  plugin. :func:`strip_plugin_functions` removes it and sets the node attribute ``aot`` (JIT or AOT
  implementation) in the copy that is handed to the parser; then the node resolves to the
  ``ugtsr::CodebookTopK`` plugin of ``runtime.plugins.codebook_topk`` (by op type +
  ``plugin_namespace``; TensorRT >= 10.10 also reads the namespace from the domain), which must be
  imported before parsing. Parsed *with* the function, TensorRT should build the standard-op body
  instead (an engine without the plugin; not yet verified on TensorRT).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from ugtsr.errors import ExportError, require

__all__ = [
    "PLUGIN_DOMAIN",
    "PLUGIN_OP",
    "PLUGIN_VERSION",
    "plugin_matching",
    "attach_plugin_functions",
    "strip_plugin_functions",
    "plugin_nodes",
    "make_plugin_function",
]

log = logging.getLogger(__name__)

PLUGIN_DOMAIN = "ugtsr"
PLUGIN_OP = "CodebookTopK"
PLUGIN_VERSION = 1


def _emit_node(rows, codebook, k: int):
    """The custom node for ``k`` nearest codes of ``rows``: ``(N, d)`` -> ``(N, k)`` int64 (via int32)."""
    import torch

    from ugtsr import codebook as cb

    codebook_sq = cb.codebook_sq_norms(codebook)  # constant-folded from the codebook initializer
    idx32 = torch.onnx.ops.symbolic(
        f"{PLUGIN_DOMAIN}::{PLUGIN_OP}", (rows, codebook, codebook_sq),
        attrs={"k": int(k), "plugin_namespace": PLUGIN_DOMAIN, "plugin_version": str(PLUGIN_VERSION)},
        dtype=torch.int32, shape=(rows.shape[0], int(k)), version=PLUGIN_VERSION,
    )
    return idx32.to(torch.int64)


@contextlib.contextmanager
def plugin_matching(net: Any = None) -> Iterator[None]:
    """Within the block, ``ugtsr.codebook.knn_search``/``nearest_search`` emit ``CodebookTopK`` nodes
    while ``torch.onnx`` exports, and behave as before otherwise (eager calls run the originals).

    ``net``: the model being exported (checked: a CodeFormer-style matcher has no codebook search, so
    its plugin variant would equal the standard one). The module attributes are restored on exit,
    also when the export raises.
    """
    import torch

    from ugtsr import codebook as cb

    config = getattr(net, "config", None)
    if config is not None and getattr(config, "matching", None) == "codeformer":
        raise ExportError(f"model '{config.name}' uses codeformer matching (logits, no codebook search); "
                          "the plugin variant does not apply, export with --matching standard")
    orig_knn, orig_nearest = cb.knn_search, cb.nearest_search

    def knn_search(rows, codebook, k):
        if torch.onnx.is_in_onnx_export():
            return _emit_node(rows, codebook, k)
        return orig_knn(rows, codebook, k)

    def nearest_search(rows, codebook):
        if torch.onnx.is_in_onnx_export():
            return _emit_node(rows, codebook, 1).reshape(-1)
        return orig_nearest(rows, codebook)

    knn_search.__doc__ = orig_knn.__doc__
    nearest_search.__doc__ = orig_nearest.__doc__
    cb.knn_search, cb.nearest_search = knn_search, nearest_search
    try:
        yield
    finally:
        cb.knn_search, cb.nearest_search = orig_knn, orig_nearest


def plugin_nodes(proto) -> list:
    """The ``ugtsr::CodebookTopK`` nodes of the main graph of ``proto`` (an ``onnx.ModelProto``)."""
    return [n for n in proto.graph.node if n.domain == PLUGIN_DOMAIN and n.op_type == PLUGIN_OP]


def _default_opset(proto) -> int:
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise ExportError("the model imports no default ONNX opset")


def make_plugin_function(opset: int):
    """``FunctionProto`` ``ugtsr::CodebookTopK(rows, codebook, codebook_sq) -> indices`` in standard ops.

    Same arithmetic and order as ``ugtsr.codebook.squared_distances`` (``(||z||^2 + ||e||^2) - 2 z.e``),
    so ONNX Runtime picks the same codes as PyTorch up to float rounding. ``||z||^2`` is a MatMul
    with a ones column built from the codebook's shape rather than a ReduceSum: a ReduceSum's axes
    input inside a function is not a graph constant, which TensorRT rules (``export.check``) flag.
    """
    onnx = require("onnx", extra="export", purpose="building the plugin graph")
    from onnx import TensorProto, helper

    # Constant(value_int = <the node's attribute k>), written by hand: make_attribute_ref's
    # signature changed across onnx releases.
    k_ref = onnx.AttributeProto()
    k_ref.name, k_ref.ref_attr_name, k_ref.type = "value_int", "k", onnx.AttributeProto.INT
    k_node = helper.make_node("Constant", [], ["k_scalar"])
    k_node.attribute.append(k_ref)
    nodes = [
        helper.make_node("Mul", ["rows", "rows"], ["rows_sq"]),
        helper.make_node("Shape", ["codebook"], ["dim"], start=1, end=2),
        helper.make_node("Constant", [], ["one"], value_ints=[1]),
        helper.make_node("Concat", ["dim", "one"], ["ones_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["ones_shape"], ["ones_f32"],
                         value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
        helper.make_node("CastLike", ["ones_f32", "rows"], ["ones"]),
        helper.make_node("MatMul", ["rows_sq", "ones"], ["rows_norm"]),  # (N, 1)
        helper.make_node("CastLike", ["codebook_sq", "rows"], ["code_norm"]),
        helper.make_node("Add", ["rows_norm", "code_norm"], ["norms"]),  # (N, K)
        helper.make_node("Transpose", ["codebook"], ["codebook_t"], perm=[1, 0]),
        helper.make_node("MatMul", ["rows", "codebook_t"], ["dots"]),  # (N, K)
        helper.make_node("Constant", [], ["two_f32"], value_float=2.0),
        helper.make_node("CastLike", ["two_f32", "rows"], ["two"]),
        helper.make_node("Mul", ["two", "dots"], ["dots2"]),
        helper.make_node("Sub", ["norms", "dots2"], ["dist"]),
        k_node,
        helper.make_node("Reshape", ["k_scalar", "one"], ["k_1d"]),
        helper.make_node("TopK", ["dist", "k_1d"], ["top_values", "top_indices"], axis=-1, largest=0, sorted=1),
        helper.make_node("Cast", ["top_indices"], ["indices"], to=TensorProto.INT32),
    ]
    return helper.make_function(
        PLUGIN_DOMAIN, PLUGIN_OP, inputs=["rows", "codebook", "codebook_sq"], outputs=["indices"],
        nodes=nodes, opset_imports=[helper.make_opsetid("", opset)], attributes=["k"],
        doc_string="Fallback body of the TensorRT plugin ugtsr::CodebookTopK for ONNX Runtime: the k nearest "
                   "codes (squared L2, nearest first) as int32. runtime.build strips this function so that "
                   "TensorRT uses the plugin.",
    )


def attach_plugin_functions(proto, config: Any = None) -> None:
    """Add the ``CodebookTopK`` function to ``proto`` (in place) so ONNX Runtime runs the plugin graph.

    ``config``: the model's ``UGTSRConfig`` (checked against the nodes: ``top_k`` for the Top-k
    candidates, ``k=1`` for nearest-code searches). Raises :class:`ExportError` when the graph has no
    ``CodebookTopK`` node or a node lacks the ``k`` attribute.
    """
    require("onnx", extra="export", purpose="building the plugin graph")
    from onnx import helper

    nodes = plugin_nodes(proto)
    if not nodes:
        raise ExportError("the plugin export produced no ugtsr::CodebookTopK node; the matcher does not use "
                          "ugtsr.codebook.knn_search/nearest_search")
    ks = []
    for n in nodes:
        k = next((helper.get_attribute_value(a) for a in n.attribute if a.name == "k"), None)
        if not isinstance(k, int):
            raise ExportError(f"CodebookTopK node '{n.name}' has no integer attribute k")
        ks.append(k)
    if config is not None:
        allowed = {1} | ({int(config.top_k)} if getattr(config, "matching", None) == "topk" else set())
        unexpected = sorted(set(ks) - allowed)
        if unexpected:
            raise ExportError(f"CodebookTopK nodes with k={unexpected}; expected k in {sorted(allowed)} for "
                              f"'{config.name}'")
    for imp in proto.opset_import:
        if imp.domain == PLUGIN_DOMAIN:
            imp.version = PLUGIN_VERSION
            break
    else:
        proto.opset_import.append(helper.make_opsetid(PLUGIN_DOMAIN, PLUGIN_VERSION))
    keep = [f for f in proto.functions if not (f.domain == PLUGIN_DOMAIN and f.name == PLUGIN_OP)]
    del proto.functions[:]
    proto.functions.extend(keep)
    proto.functions.append(make_plugin_function(_default_opset(proto)))
    log.info("plugin graph: %d CodebookTopK node(s) (k=%s) with an ONNX Runtime fallback function",
             len(nodes), ",".join(map(str, sorted(set(ks)))))


def strip_plugin_functions(proto, *, aot: bool = False):
    """Prepare ``proto`` for TensorRT (in place): drop the ``CodebookTopK`` function, pick JIT or AOT.

    TensorRT's ONNX parser expands model-local functions before it tries plugins, so with the
    function present it would build the standard-op subgraph and never use the plugin. Every
    ``CodebookTopK`` node also gets the attribute ``aot`` (``1``: the plugin's ahead-of-time Triton
    kernel embedded in the engine, TensorRT >= 10.9, no Python needed at run time; ``0``: the JIT
    Python implementation). TensorRT requires that choice when a plugin has both implementations.
    Returns ``proto``. Without the function ONNX Runtime can no longer load the model.
    """
    require("onnx", extra="export", purpose="preparing the plugin graph for TensorRT")
    from onnx import helper

    keep = [f for f in proto.functions if not (f.domain == PLUGIN_DOMAIN and f.name == PLUGIN_OP)]
    del proto.functions[:]
    proto.functions.extend(keep)
    for n in plugin_nodes(proto):
        for a in [a for a in n.attribute if a.name == "aot"]:
            n.attribute.remove(a)
        n.attribute.append(helper.make_attribute("aot", int(bool(aot))))
    return proto
