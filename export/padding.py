"""In-graph padding: make an exported graph accept any ``H, W >= min_size`` (issue 10 section 1).

The traced network needs ``H`` and ``W`` that are multiples of ``multiple_of`` (Swin windows, the
stride-8 latent grid). :func:`add_input_padding` wraps the traced graph with a few standard ops so
that the padding the runtime used to do happens inside the ONNX, computed from the input's run-time
shape (nothing is specialised to the export example)::

    hw      = Shape(lq, start=2, end=4)                  # [H, W] int64
    pad_hw  = Mod(Sub(m, Mod(hw, m)), m)                 # bottom/right pad to the next multiple
    pads    = Concat([0, 0, 0, 0, 0, 0], pad_hw)         # ONNX order: begins of N,C,H,W, then ends
    lq_pad  = Pad(lq, pads, mode="reflect")              # mirror without repeating the edge
    ...the traced network on lq_pad...
    sr      = Slice(sr_pad, starts=[0, 0], ends=hw * scale, axes=[2, 3])   # crop back (+ uncertainty)

This is the padding of ``UGTSRNet.forward`` and ``runtime.padding.pad_to_multiple``: reflect at the
bottom and right, so the image's top-left pixel grid is the model's grid. Reflect needs the pad to be
smaller than the side, which ``H, W >= min_size >= multiple_of`` guarantees (the pad is at most
``multiple_of - 1``); smaller inputs are the runtime's business (it replicates, as before).
``indices`` keep the padded latent grid ``(N, ceil(H/m)*m/ls, ceil(W/m)*m/ls)``, as in PyTorch.

Every op here is in TensorRT's ONNX parser's support matrix (onnx-tensorrt ``docs/operators.md``):
``Shape`` (with start/end), ``Mod``/``Sub``/``Mul``/``Concat`` on int64 shape tensors, ``Pad`` whose
``pads`` is a run-time tensor and whose mode is ``reflect`` (the importer maps it to an
``ISliceLayer`` with ``SampleMode::kREFLECT``; no ``axes`` input is used), and ``Slice`` with
constant ``axes``. So ``trtexec --shapes=lq:1x3x1080x1920`` needs no padding by the caller.
"""
from __future__ import annotations

from typing import Any

from ugtsr.errors import ExportError, require

__all__ = ["add_input_padding", "PADS_INPUT_KEY", "graph_pads_input"]

#: metadata key (value "1") that says the graph pads its input itself
PADS_INPUT_KEY = "pads_input"
_PREFIX = "ugtsr_pad/"


def graph_pads_input(proto) -> bool:
    """True when ``proto`` carries the in-graph padding of :func:`add_input_padding`."""
    return any(n.name.startswith(_PREFIX) for n in proto.graph.node)


def _rename_uses(graph, old: str, new: str) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new


def _set_dims(value_info, dims: list[Any]) -> None:
    shape = value_info.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, int):
            dim.dim_value = d
        else:
            dim.dim_param = d


def add_input_padding(proto, *, multiple_of: int, scale: int, crop: tuple[str, ...] = ("sr", "uncertainty"),
                      input_name: str = "lq") -> None:
    """Rewrite ``proto`` in place: pad ``input_name`` to ``multiple_of`` inside the graph and crop the
    ``crop`` outputs (those present) back to ``H*scale x W*scale``. Idempotent: a graph that already
    pads itself is left alone."""
    onnx = require("onnx", extra="export", purpose="ONNX export")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    if graph_pads_input(proto):
        return
    inputs = [i for i in graph.input if i.name == input_name]
    if len(inputs) != 1:
        raise ExportError(f"cannot add in-graph padding: the graph has no input '{input_name}'")
    if multiple_of < 1 or scale < 1:
        raise ExportError(f"cannot add in-graph padding with multiple_of={multiple_of}, scale={scale}")
    old_in = inputs[0]
    elem = old_in.type.tensor_type.elem_type
    if elem not in (TensorProto.FLOAT, TensorProto.FLOAT16):
        raise ExportError(f"cannot add in-graph padding to a '{input_name}' of ONNX type {elem}")
    inner_in = f"{_PREFIX}{input_name}_padded"
    _rename_uses(graph, input_name, inner_in)
    channels = old_in.type.tensor_type.shape.dim[1].dim_value or 3
    # the padded tensor keeps the traced input's type (its dims are the traced symbols)
    padded_vi = onnx.ValueInfoProto()
    padded_vi.CopyFrom(old_in)
    padded_vi.name = inner_in
    graph.value_info.append(padded_vi)
    _set_dims(old_in, ["batch", channels, "height", "width"])

    def const(name: str, values) -> str:
        full = _PREFIX + name
        graph.initializer.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), full))
        return full

    p = _PREFIX
    m = const("multiple", [multiple_of])
    nodes = [
        helper.make_node("Shape", [input_name], [p + "hw"], name=p + "shape_hw", start=2, end=4),
        helper.make_node("Mod", [p + "hw", m], [p + "rem"], name=p + "rem"),
        helper.make_node("Sub", [m, p + "rem"], [p + "to_next"], name=p + "to_next"),
        helper.make_node("Mod", [p + "to_next", m], [p + "pad_hw"], name=p + "pad_hw"),
        helper.make_node("Concat", [const("zeros6", [0] * 6), p + "pad_hw"], [p + "pads"], name=p + "pads", axis=0),
        helper.make_node("Pad", [input_name, p + "pads"], [inner_in], name=p + "pad", mode="reflect"),
    ]
    crop_nodes = []
    present = [o for o in graph.output if o.name in crop]
    if present:
        starts, axes = const("crop_starts", [0, 0]), const("crop_axes", [2, 3])
        crop_nodes.append(helper.make_node("Mul", [p + "hw", const("scale", [scale])], [p + "out_hw"],
                                           name=p + "out_hw"))
    for out in present:
        inner = f"{p}{out.name}_padded"
        _rename_uses(graph, out.name, inner)
        crop_nodes.append(helper.make_node("Slice", [inner, starts, p + "out_hw", axes], [out.name],
                                           name=f"{p}crop_{out.name}"))
        padded_out = onnx.ValueInfoProto()
        padded_out.CopyFrom(out)
        padded_out.name = inner
        graph.value_info.append(padded_out)
        ch = out.type.tensor_type.shape.dim[1].dim_value or 3
        _set_dims(out, ["batch", ch, f"height*{scale}", f"width*{scale}"])
    for out in graph.output:
        if out.name == "indices":
            _set_dims(out, ["batch", "latent_height", "latent_width"])
    # the new nodes first (the graph stays topologically sorted), the crops last
    old_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old_nodes + crop_nodes)
    # drop stale value_info entries for names that are now graph inputs/outputs
    io = {input_name} | {o.name for o in present}
    for vi in [v for v in graph.value_info if v.name in io]:
        graph.value_info.remove(vi)
