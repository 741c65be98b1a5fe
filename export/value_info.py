"""Drop the intermediate shapes with symbolic dimensions that ``torch.onnx`` writes into a graph.

The dynamo exporter records a ``value_info`` entry for every intermediate tensor, with dimensions
such as ``"64*s35*s38"`` where a size depends on the input's. They are optional in ONNX
(``value_info`` only annotates; consumers infer shapes themselves) and they cost memory on ONNX
Runtime: its allocation planner treats two tensors whose recorded shapes are the same symbolic
expression as the same size and plans a later one into the buffer of an earlier one
("reuse"), so that buffer stays allocated from the first tensor's death until the last reuser's,
however far apart they run. Measured on the fourth default model (ONNX Runtime 1.32, CPU, one
thread, 256x256 LR): the arena's bytes in use at the peak 5.78 -> 3.53 KiB per input pixel, peak
RSS of the session 6.76 -> 5.23 KiB/px; 512x512 through ``runtime.infer``: 6.88 -> 5.87 KiB/px;
outputs within 1.2e-6 (ONNX Runtime fuses a few ops differently), latency unchanged (issue 13,
``benchmarks/results/efficiency_log.md`` section 8). TensorRT's parser does not read ``value_info``.

Entries whose dimensions are all fixed numbers (the parameters') stay, as do the graph's inputs and
outputs. No torch, no onnx import: this works on any ``onnx.GraphProto``.
"""
from __future__ import annotations

__all__ = ["drop_symbolic_value_info"]


def _symbolic(value_info) -> bool:
    t = value_info.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return False
    return any(d.HasField("dim_param") or not d.HasField("dim_value") for d in t.tensor_type.shape.dim)


def drop_symbolic_value_info(graph) -> int:
    """Remove from ``graph.value_info`` (in place) every tensor shape that has a symbolic or unknown
    dimension; returns how many were removed."""
    keep = [v for v in graph.value_info if not _symbolic(v)]
    dropped = len(graph.value_info) - len(keep)
    if dropped:
        del graph.value_info[:]
        graph.value_info.extend(keep)
    return dropped
