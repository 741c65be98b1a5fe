"""``python -m export.check MODEL.onnx``: will TensorRT's ONNX parser take this graph?

Prints the op histogram and every op or attribute that TensorRT's ONNX parser would reject, so a
user knows before building an engine (which needs a GPU). The rules are the support matrix of
onnx-tensorrt (``docs/operators.md``, TensorRT 10.x: opsets 9-20 there, up to 24 on 10.15 and 25 on
TensorRT 11) and the TopK limits of the TensorRT operator docs; they are data in this module, not a
TensorRT import, so the check runs on any machine.

Severity: ``error`` = the parser (or builder) rejects it; ``warning`` = parses, but needs something
(a plugin, a newer TensorRT, a file next to the model) or loses precision.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ugtsr.errors import UGTSRError, UnsupportedInputError, require

__all__ = ["Finding", "CheckReport", "check_model", "main", "TRT_SUPPORTED_OPS", "TRT_UNSUPPORTED_OPS"]

#: ONNX default-domain ops the TensorRT 10 ONNX parser supports (onnx-tensorrt docs/operators.md).
TRT_SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike
Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements
GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
GroupNormalization GRU HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf
IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool
MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not
OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round
ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice
Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK
Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

#: Listed as unsupported in the same matrix.
TRT_UNSUPPORTED_OPS = frozenset("""
AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor BlackmanWindow Col2Im
CenterCropPad Compress ConcatFromSequence ConvInteger DFT Det DynamicQuantizeLinear HammingWindow
HannWindow ImageDecoder MatMulInteger MaxRoiPool MaxUnpool MelWeightMatrix Multinomial
NegativeLogLikelihoodLoss Optional OptionalGetElement OptionalHasElement QLinearConv QLinearMatMul
RegexFullMatch STFT SequenceAt SequenceConstruct SequenceEmpty SequenceErase SequenceInsert
SequenceLength SequenceMap SoftmaxCrossEntropyLoss SplitToSequence StringConcat StringNormalizer
StringSplit TfIdfVectorizer Unique
""".split())

#: Newer ops: supported only from a given TensorRT release (deploy-facts.md section 2).
_NEWER = {"Attention": "TensorRT 10.15+ (4-D Q/K/V only)", "RMSNormalization": "TensorRT 10.15+"}
_AXES_INPUT = {"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
               "ReduceProd", "ReduceSum", "ReduceSumSquare", "Slice", "Squeeze", "Unsqueeze", "Pad", "CumSum"}
TOPK_MAX_K = 3840
MAX_OPSET = 25  # TensorRT 11 (TensorRT 10.15: 24; 10.0: 20)
MIN_OPSET = 9


@dataclass
class Finding:
    severity: str  # "error" | "warning" | "info"
    node: str
    op: str
    message: str

    def __str__(self) -> str:
        where = f"{self.op} '{self.node}'" if self.node else self.op
        return f"{self.severity.upper():7} {where}: {self.message}"


@dataclass
class CheckReport:
    path: str
    opset: int
    histogram: dict[str, int]
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self) -> str:
        lines = [f"{self.path}: opset {self.opset}, {sum(self.histogram.values())} nodes, "
                 f"{len(self.histogram)} op types"]
        width = max((len(k) for k in self.histogram), default=4)
        for op, n in sorted(self.histogram.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {op:<{width}} {n:5d}")
        if self.findings:
            lines.append("findings:")
            lines.extend(f"  {f}" for f in self.findings)
        lines.append("TensorRT parser: " + ("no blocking issue found" if self.ok else f"{len(self.errors)} blocking issue(s)"))
        return "\n".join(lines)


def _constants(graph) -> dict[str, object]:
    """Names of tensors whose value is known at build time: initializers and Constant outputs."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _attr(node, name: str, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _check_node(node, consts: dict[str, object], findings: list[Finding]) -> None:
    op, name = node.op_type, node.name
    if node.domain not in ("", "ai.onnx"):
        ns = _attr(node, "plugin_namespace", b"")
        ns = ns.decode() if isinstance(ns, bytes) else ns
        findings.append(Finding("warning", name, f"{node.domain}::{op}",
                                f"custom op: TensorRT needs a plugin named '{op}'"
                                f"{f' in namespace {ns!r}' if ns else ''} loaded before parsing (python -m runtime.build --plugins)"))
        return
    if op in TRT_UNSUPPORTED_OPS or (op not in TRT_SUPPORTED_OPS and op not in _NEWER):
        findings.append(Finding("error", name, op, "not supported by TensorRT's ONNX parser"))
        return
    if op in _NEWER:
        findings.append(Finding("warning", name, op, f"needs {_NEWER[op]}"))
    if op == "TopK":
        if _attr(node, "sorted", 1) != 1:
            findings.append(Finding("error", name, op, "sorted must be 1"))
        k_name = node.input[1] if len(node.input) > 1 else None
        if k_name is not None and k_name not in consts:
            findings.append(Finding("warning", name, op, "K is computed at run time (dynamic k); TensorRT < 8.6 "
                                    "rejects it and it defeats kernel selection; export a static k"))
        elif k_name is not None:
            k = int(consts[k_name].reshape(-1)[0])
            if k > TOPK_MAX_K:
                findings.append(Finding("error", name, op, f"K = {k} exceeds TensorRT's maximum of {TOPK_MAX_K}"))
    if op == "Resize":
        mode = _attr(node, "mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode not in ("nearest", "linear"):
            findings.append(Finding("error", name, op, f"mode '{mode}' unsupported (nearest or linear only)"))
        if _attr(node, "antialias", 0):
            findings.append(Finding("error", name, op, "antialiasing is not supported"))
        ctm = _attr(node, "coordinate_transformation_mode", b"half_pixel")
        ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
        if ctm not in ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"):
            findings.append(Finding("error", name, op, f"coordinate_transformation_mode '{ctm}' unsupported"))
    if op in _AXES_INPUT and len(node.input) > 1:
        axes_index = {"Slice": 3, "Pad": 3}.get(op, 1)
        if len(node.input) > axes_index and node.input[axes_index] and node.input[axes_index] not in consts:
            findings.append(Finding("error", name, op, "axes must be an initializer/constant"))
    if op == "Pad":
        # onnx-tensorrt's Pad importer maps each mode to an ISliceLayer sample mode (kFILL, kREFLECT,
        # kCLAMP, kWRAP); run-time ``pads`` tensors are fine, a run-time ``axes`` input is not (below)
        mode = _attr(node, "mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode not in ("constant", "reflect", "edge", "wrap"):
            findings.append(Finding("error", name, op, f"mode '{mode}' unsupported"))
    if op == "LayerNormalization" and len([o for o in node.output if o]) > 1:
        findings.append(Finding("error", name, op, "only the first output Y is supported"))
    if op in ("MaxPool",) and len([o for o in node.output if o]) > 1:
        findings.append(Finding("error", name, op, "the Indices output is unsupported"))


def check_model(path_or_proto) -> CheckReport:
    """Check an ONNX file (or ``onnx.ModelProto``) against TensorRT's ONNX parser rules."""
    onnx = require("onnx", extra="export", purpose="inspecting ONNX models")
    if isinstance(path_or_proto, (str, Path)):
        path = Path(path_or_proto)
        if not path.is_file():
            raise UnsupportedInputError(f"{path}: no such file")
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise UnsupportedInputError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0][:160]})") from None
        label = str(path)
    else:
        proto, label = path_or_proto, "<model>"
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    graph = proto.graph
    findings: list[Finding] = []
    if not MIN_OPSET <= opset <= MAX_OPSET:
        findings.append(Finding("error", "", "opset", f"opset {opset} outside TensorRT's range {MIN_OPSET}-{MAX_OPSET}"))
    elif opset > 20:
        findings.append(Finding("info", "", "opset", f"opset {opset} needs TensorRT >= 10.x with opset {opset} support "
                                "(10.0 parses up to 20, 10.15 up to 24, 11 up to 25)"))
    consts = _constants(graph)
    nodes = list(graph.node)
    for fn in proto.functions:  # model-local functions: TensorRT inlines them
        nodes.extend(fn.node)
    hist = Counter((n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}") for n in graph.node)
    # nodes whose op is a model-local function (export.attention's WindowAttention) parse as the
    # function's body; the plugin variant's CodebookTopK stays a plugin (runtime.build strips its body)
    from .plugin import PLUGIN_DOMAIN, PLUGIN_OP
    inlined = {(f.domain, f.name) for f in proto.functions} - {(PLUGIN_DOMAIN, PLUGIN_OP)}
    for node in nodes:
        if (node.domain, node.op_type) in inlined:
            continue
        _check_node(node, consts, findings)
    for init in graph.initializer:
        if init.data_type == onnx.TensorProto.DOUBLE:
            findings.append(Finding("warning", init.name, "initializer", "float64: TensorRT casts it to float32"))
        if init.data_location == onnx.TensorProto.EXTERNAL:
            findings.append(Finding("info", init.name, "initializer", "external data: build with parse_from_file "
                                    "(runtime.build does) and keep the data file next to the model"))
            break
    return CheckReport(path=label, opset=opset, histogram=dict(hist), findings=findings)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.check", description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="ONNX files to check")
    args = p.parse_args(argv)
    status = 0
    for m in args.models:
        try:
            report = check_model(m)
        except UGTSRError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 2
            continue
        print(report.format())
        if not report.ok:
            status = max(status, 1)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
