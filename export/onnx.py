"""``python -m export.onnx CKPT``: a verified, self-contained ONNX model of a UGTSR checkpoint.

The graph takes ``lq`` ``(N, 3, H, W)`` float32 RGB in [0, 1] with N, H, W dynamic; H and W must be
multiples of the ``multiple_of`` metadata (the runtime pads and crops; the graph itself holds no
size from the example input). Matching is written in ops that ONNX Runtime and TensorRT both run
well: distances as one MatMul against precomputed codebook norms, TopK with a static k, Gather for
lookups, ArgMin for the nearest code; no cdist, no one-hot matmul. Attention (Swin windows with
masks computed from the actual size, MDTA, Align-Attention windows) exports as
Reshape/Transpose/MatMul/Softmax with symbolic shapes.

``--precision fp16`` writes an FP16 graph with FP32 islands (see ``export.fp16``) for strongly typed
TensorRT; its input and output stay float32.

After export the model is checked with ``onnx.checker`` and verified against PyTorch with ONNX
Runtime at sizes other than the example (see ``export.verify``); the file is written (atomically)
only when verification passes, so a failed export leaves nothing behind.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ugtsr.errors import ExportError, UGTSRError, require
from ugtsr.fileio import atomic_write_bytes

__all__ = ["ExportOptions", "ExportResult", "export_model", "onnx_from_checkpoint", "main",
           "METADATA_FORMAT", "SUPPORTED_OPSETS"]

log = logging.getLogger(__name__)

METADATA_FORMAT = "1"
SUPPORTED_OPSETS = (17, 18, 19, 20, 21, 22, 23)
_OUTPUTS = ("sr", "indices", "uncertainty")


@dataclass(frozen=True)
class ExportOptions:
    """How to export. ``outputs=None``: ``sr`` plus ``uncertainty`` when the model has the head."""

    opset: int = 21
    precision: Literal["fp32", "fp16"] = "fp32"
    matching: Literal["standard", "plugin"] = "standard"
    outputs: tuple[str, ...] | None = None
    verify: bool = True
    example_batch: int = 2  # torch.export specialises dims whose example size is 0 or 1
    example_blocks: int = 4  # example H = W = example_blocks * multiple_of
    max_side: int = 8192
    atol: float = 1e-4
    min_index_agreement: float = 0.999
    fp16_min_psnr: float = 40.0

    def __post_init__(self) -> None:
        if self.opset not in SUPPORTED_OPSETS:
            raise ExportError(f"unsupported opset {self.opset}; choose one of {', '.join(map(str, SUPPORTED_OPSETS))} "
                              "(21 gives native GroupNormalization)")
        if self.precision not in ("fp32", "fp16"):
            raise ExportError(f"precision must be fp32 or fp16, got {self.precision!r}")
        if self.matching not in ("standard", "plugin"):
            raise ExportError(f"matching must be 'standard' or 'plugin', got {self.matching!r}")
        if self.outputs is not None:
            bad = [o for o in self.outputs if o not in _OUTPUTS]
            if bad or "sr" not in self.outputs:
                raise ExportError(f"outputs must include 'sr' and be among {', '.join(_OUTPUTS)}; got {', '.join(self.outputs)}")
        if self.example_batch < 2:
            raise ExportError("example_batch must be >= 2 (a size-1 example dimension is baked in as a constant)")


@dataclass
class ExportResult:
    path: Path | None
    model_bytes: int
    outputs: tuple[str, ...]
    metadata: dict[str, str]
    report: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _export_wrapper(model, outputs: tuple[str, ...]):
    """The module that is traced: ``lq -> (sr, indices[, uncertainty])`` (torch imported here only)."""
    import torch

    class Wrapper(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, lq):
            # FP16 models keep a float32 encoder (export.fp16), so the input stays float32:
            # rounding the image itself to FP16 already flips near-tie codes.
            out = self.net.forward_unpadded(lq)
            # indices always leave the graph during verification; pruned afterwards if unwanted
            res = [out.sr.float(), out.indices]
            if "uncertainty" in outputs:
                res.append(out.uncertainty.float())
            return tuple(res)

    return Wrapper(model).eval()


def _resolve_outputs(model, options: ExportOptions) -> tuple[str, ...]:
    has_head = model.uncertainty_head is not None
    outputs = options.outputs
    if outputs is None:
        outputs = ("sr", "uncertainty") if has_head else ("sr",)
    if "uncertainty" in outputs and not has_head:
        raise ExportError(f"model '{model.config.name}' has no uncertainty head; drop 'uncertainty' from --outputs")
    return tuple(o for o in _OUTPUTS if o in outputs)  # canonical order


def _metadata(model, options: ExportOptions, outputs: tuple[str, ...]) -> dict[str, str]:
    import ugtsr

    cfg = model.config
    return {
        "ugtsr_format": METADATA_FORMAT,
        "scale": str(cfg.scale),
        "multiple_of": str(cfg.multiple_of),
        "min_size": str(max(model.min_size, cfg.multiple_of)),
        "latent_stride": str(cfg.latent_stride),
        "config": cfg.to_json(),
        "ugtsr_version": ugtsr.__version__,
        "matching": cfg.matching,
        "precision": options.precision,
        "outputs": ",".join(outputs),
        "opset": str(options.opset),
        "variant": options.matching,
    }


def _prune_outputs(proto, keep: tuple[str, ...]) -> None:
    """Drop graph outputs not in ``keep`` and the nodes that only fed them."""
    graph = proto.graph
    for out in [o for o in graph.output if o.name not in keep]:
        graph.output.remove(out)
    while True:
        needed = {o.name for o in graph.output}
        for node in graph.node:
            needed.update(node.input)
        dead = [n for n in graph.node if not any(o in needed for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)


def export_model(model, options: ExportOptions | None = None):
    """Export a ``UGTSRNet`` to an in-memory ``onnx.ModelProto`` with outputs
    ``sr, indices[, uncertainty]`` (indices are pruned by :func:`onnx_from_checkpoint` unless asked for)."""
    options = options or ExportOptions()
    torch = require("torch", extra="export", purpose="ONNX export")
    onnx = require("onnx", extra="export", purpose="ONNX export")
    require("onnxscript", extra="export", purpose="torch.onnx's dynamo exporter")
    from torch.export import Dim

    outputs = _resolve_outputs(model, options)
    net = model.eval()
    if options.precision == "fp16":
        from .fp16 import to_fp16_with_fp32_islands
        net = to_fp16_with_fp32_islands(model)
    if options.matching == "plugin":
        from .plugin import plugin_matching
        ctx = plugin_matching(net)
    else:
        import contextlib
        ctx = contextlib.nullcontext()
    wrapper = _export_wrapper(net, outputs)
    m = model.config.multiple_of
    max_blocks = max(2, options.max_side // m)
    dyn = ({0: Dim("batch", min=1, max=1024), 2: m * Dim("h_blocks", min=1, max=max_blocks),
            3: m * Dim("w_blocks", min=1, max=max_blocks)},)
    side = options.example_blocks * m
    example = torch.rand(options.example_batch, 3, side, side)
    names = ["sr", "indices"] + (["uncertainty"] if "uncertainty" in outputs else [])
    import warnings
    with ctx, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        for noisy in ("torch.onnx", "onnxscript", "onnx_ir"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(
                wrapper, (example,), dynamo=True, dynamic_shapes=dyn, opset_version=options.opset,
                input_names=["lq"], output_names=names, external_data=False, optimize=True,
                verbose=False, report=False,
            )
        except Exception as exc:  # the exporter raises many types; wrap them with the cause
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"torch.onnx.export failed for '{model.config.name}': {first}") from exc
    proto = program.model_proto
    meta = _metadata(model, options, outputs)
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "ugtsr.export"
    if options.matching == "plugin":
        from .plugin import attach_plugin_functions
        attach_plugin_functions(proto, model.config)
    try:
        onnx.checker.check_model(proto, full_check=False)
    except Exception as exc:
        raise ExportError(f"onnx.checker rejected the exported graph: {str(exc).splitlines()[0][:300]}") from exc
    return proto


def _check_writable(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=out.parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ExportError(f"{out}: cannot write the output ({exc.strerror or exc})") from None
    if out.exists() and out.is_dir():
        raise ExportError(f"{out}: is a directory")


def onnx_from_checkpoint(checkpoint: str | Path, out: str | Path | None = None, *,
                         options: ExportOptions | None = None, model=None) -> ExportResult:
    """Export ``checkpoint`` (a UGTSR checkpoint) to ``out`` (default: next to it, ``.onnx``).

    ``model``: pass an already-built ``UGTSRNet`` instead of reading ``checkpoint`` (tests).
    Raises :class:`ExportError` (or ``CheckpointError``) with a one-line message.
    """
    options = options or ExportOptions()
    t0 = time.perf_counter()
    if model is None:
        from ugtsr.checkpoint import load_model
        model = load_model(checkpoint)
    ckpt = Path(checkpoint)
    default_suffix = ".onnx" if options.precision == "fp32" else "_fp16.onnx"
    out_path = Path(out) if out is not None else ckpt.with_name(ckpt.stem + default_suffix)
    _check_writable(out_path)
    outputs = _resolve_outputs(model, options)
    proto = export_model(model, options)
    report: dict[str, Any] = {}
    if options.verify:
        from .verify import verify_onnx
        report = verify_onnx(proto.SerializeToString(), model, options=options)
        if not report["passed"]:
            raise ExportError(f"verification failed ({report['failure']}); nothing was written. "
                              "Re-run with --no-verify to inspect the graph anyway")
    _prune_outputs(proto, outputs)
    data = proto.SerializeToString()
    if len(data) >= 2**31:
        raise ExportError("the model is over 2 GB; external-data export is not supported by this toolkit")
    atomic_write_bytes(out_path, data)
    meta = {p.key: p.value for p in proto.metadata_props}
    return ExportResult(path=out_path, model_bytes=len(data), outputs=outputs, metadata=meta, report=report,
                        seconds=time.perf_counter() - t0)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m export.onnx", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="UGTSR checkpoint (.pt) written by ugtsr.save_checkpoint / ugtsr.train")
    p.add_argument("-o", "--output", help="output .onnx (default: next to the checkpoint)")
    p.add_argument("--opset", type=int, default=21, help="ONNX opset (default 21: native GroupNormalization; 17 works too)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32")
    p.add_argument("--matching", choices=("standard", "plugin"), default="standard",
                   help="standard ops (runs everywhere) or a CodebookTopK plugin node for TensorRT")
    p.add_argument("--outputs", default=None, help="comma list among sr,indices,uncertainty (default: sr[,uncertainty])")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch verification")
    p.add_argument("--json", metavar="PATH", help="also write the verification report as JSON")
    p.add_argument("-q", "--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    # Only our own loggers at INFO: the ONNX optimiser logs every rewrite at INFO.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for name in ("export", "ugtsr"):
        logging.getLogger(name).setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        outputs = tuple(o.strip() for o in args.outputs.split(",")) if args.outputs else None
        options = ExportOptions(opset=args.opset, precision=args.precision, matching=args.matching,
                                outputs=outputs, verify=not args.no_verify)
        result = onnx_from_checkpoint(args.checkpoint, args.output, options=options)
    except UGTSRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        from .verify import format_report
        print(f"wrote {result.path} ({result.model_bytes / 1e6:.1f} MB, outputs: {', '.join(result.outputs)}, "
              f"opset {options.opset}, {options.precision}, {result.seconds:.0f} s)")
        if result.report:
            print(format_report(result.report))
    if args.json and result.report:
        Path(args.json).write_text(json.dumps(result.report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
