"""``python -m export.onnx CKPT``: a verified, self-contained ONNX model of a UGTSR checkpoint.

The graph takes ``lq`` ``(N, 3, H, W)`` float32 RGB in [0, 1] with N, H, W dynamic and any H, W >=
the ``min_size`` metadata: it reflect-pads its input to the network's ``multiple_of`` itself and crops
``sr`` (and ``uncertainty``) back to ``H*scale x W*scale`` (``export.padding``; metadata
``pads_input="1"``). The graph holds no size from the example input. Matching is written in ops that ONNX Runtime and TensorRT both run
well: distances as one MatMul against precomputed codebook norms, TopK with a static k, Gather for
lookups, ArgMin for the nearest code; no cdist, no one-hot matmul. Attention (Swin windows with
masks computed from the actual size, MDTA, Align-Attention windows) exports as
Reshape/Transpose/MatMul/Softmax with symbolic shapes.

``--precision fp16`` writes an FP16 graph with FP32 islands (see ``export.fp16``) for strongly typed
TensorRT; its input and output stay float32.

After export the model is checked with ``onnx.checker`` and verified against PyTorch with ONNX
Runtime at odd sizes and at batch 2 (see ``export.verify``); the file is written (atomically) only
when verification passes, so a failed export leaves nothing behind. Every output path is checked
for writability -- and an existing model is refused without ``--overwrite`` -- before the work
starts. Progress goes to stderr as one line per stage (``-q`` silences it).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ugtsr.errors import ExportError, UGTSRError, first_line, require
from ugtsr.fileio import atomic_open, atomic_write_bytes

__all__ = ["ExportOptions", "ExportResult", "export_model", "onnx_from_checkpoint", "main",
           "METADATA_FORMAT", "SUPPORTED_OPSETS"]

log = logging.getLogger("export.onnx")  # not __name__: "__main__" under python -m

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
    pad_input: bool = True  # pad to multiple_of inside the graph (False: the pre-issue-10 graph)
    optimize: bool = True  # onnxscript's optimizer (constant folding, dead code) after translation
    # Align-Attention's windowed attention as ugtsr::WindowAttention nodes with a standard-op function
    # body (export.attention; ONNX Runtime CPU fuses them); False: the standard ops inline
    attention_node: bool = True
    fast_trace: bool = True  # export.fast_trace (one trace, no redundant passes); False: plain torch.onnx.export
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

    from .padding import PADS_INPUT_KEY

    cfg = model.config
    meta = {
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
    if options.pad_input:
        meta[PADS_INPUT_KEY] = "1"
    return meta


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


class _Stages:
    """One progress line per stage (INFO on ``export.onnx``'s logger, i.e. stderr in the CLI) and the
    wall and CPU seconds each stage took (``report["timings_s"]`` / ``report["cpu_s"]``). CPU time is
    recorded too because wall time on a shared machine mostly measures the other processes."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self.trace_info: dict[str, Any] = {}  # which trace route ran (export.fast_trace) and what it skipped

    @contextlib.contextmanager
    def __call__(self, key: str, message: str | None) -> Iterator[None]:
        if message:  # None: timed but silent (a bad checkpoint stays a one-line error)
            log.info("%s ...", message)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[key] = round(self.seconds.get(key, 0.0) + time.perf_counter() - t0, 2)
            self.cpu_seconds[key] = round(self.cpu_seconds.get(key, 0.0) + time.process_time() - c0, 2)


def export_model(model, options: ExportOptions | None = None, *, stages: _Stages | None = None):
    """Export a ``UGTSRNet`` to an in-memory ``onnx.ModelProto`` with outputs
    ``sr, indices[, uncertainty]`` (indices are pruned by :func:`onnx_from_checkpoint` unless asked for)."""
    options = options or ExportOptions()
    stages = stages or _Stages()
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
        ctx = contextlib.nullcontext()
    if options.attention_node:
        from .attention import attention_nodes
        ctx_attention = attention_nodes()
    else:
        ctx_attention = contextlib.nullcontext()
    # a gate whose local parts are constant (zero last layers) exports as their biases: the same
    # values without its output-resolution convolutions (FidelityGate.fold_constant_branches). Only
    # for the trace: the verification's reference runs the branches as trained.
    gate = getattr(net, "fidelity_gate", None)
    folded = gate.fold_constant_branches() if gate is not None else None
    wrapper = _export_wrapper(net, outputs)
    m = model.config.multiple_of
    max_blocks = max(2, options.max_side // m)
    # The traced core takes multiples of m; export.padding adds the pad/crop around it afterwards
    # (graph surgery: tracing the padding too would only make torch.export's shape algebra slower).
    dyn = ({0: Dim("batch", min=1, max=1024), 2: m * Dim("h_blocks", min=1, max=max_blocks),
            3: m * Dim("w_blocks", min=1, max=max_blocks)},)
    side = options.example_blocks * m
    example = torch.rand(options.example_batch, 3, side, side)
    names = ["sr", "indices"] + (["uncertainty"] if "uncertainty" in outputs else [])
    try:
        with ctx, ctx_attention, warnings.catch_warnings(), torch.no_grad(), \
                stages("trace", f"tracing '{model.config.name}' with torch.export and translating to ONNX "
                       f"(opset {options.opset}, {options.precision}, {options.matching} matching)"):
            warnings.simplefilter("ignore")
            for noisy in ("torch.onnx", "onnxscript", "onnx_ir"):
                logging.getLogger(noisy).setLevel(logging.ERROR)
            program = None
            if options.fast_trace:
                from .fast_trace import fast_onnx_program
                try:
                    program = fast_onnx_program(wrapper, (example,), dynamic_shapes=dyn, opset=options.opset,
                                                input_names=["lq"], output_names=names, stats=stages.trace_info)
                    stages.trace_info["route"] = "fast"
                except Exception as exc:  # any failure: the plain exporter (same graph, slower) decides
                    first = first_line(exc, 200)
                    log.info("fast trace not applicable (%s); using torch.onnx.export", first)
                    stages.trace_info.clear()
                    stages.trace_info["fast_route_failed"] = first
            if program is None:
                stages.trace_info["route"] = "plain"
                try:
                    program = torch.onnx.export(
                        wrapper, (example,), dynamo=True, dynamic_shapes=dyn, opset_version=options.opset,
                        input_names=["lq"], output_names=names, external_data=False, optimize=False,
                        verbose=False, report=False,
                    )
                except Exception as exc:  # the exporter raises many types; wrap them with the cause
                    raise ExportError(f"torch.onnx.export failed for '{model.config.name}': {first_line(exc, 300)}") from exc
    finally:
        if gate is not None:
            gate.constant_body = gate.constant_context = False
    if folded is not None:
        stages.trace_info["gate_constant_body"], stages.trace_info["gate_constant_context"] = folded
    if options.optimize:
        with warnings.catch_warnings(), stages("optimize", "optimising the graph (onnxscript: constant folding, "
                                               "dead code)"):
            warnings.simplefilter("ignore")
            if options.fast_trace:
                from .fast_trace import optimize_program
                stages.trace_info.update(optimize_program(program))
            else:
                program.optimize()
    with stages("finalize", "adding in-graph padding, metadata and checking the graph"
                if options.pad_input else "adding metadata and checking the graph"):
        proto = program.model_proto
        meta = _metadata(model, options, outputs)
        if folded is not None and any(folded):  # what the graph computes as a constant (benchmarks count FLOPs by it)
            meta["gate_constant_branches"] = ",".join(n for n, f in zip(("body", "context"), folded) if f)
        del proto.metadata_props[:]
        for k, v in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        proto.producer_name = "ugtsr.export"
        if options.matching == "plugin":
            from .plugin import attach_plugin_functions
            attach_plugin_functions(proto, model.config)
        if options.attention_node:
            from .attention import attach_attention_function
            stages.trace_info["attention_nodes"] = attach_attention_function(proto, options.opset)
        if options.pad_input:
            from .padding import add_input_padding
            add_input_padding(proto, multiple_of=m, scale=model.config.scale)
        # symbolic intermediate shapes make ONNX Runtime's planner hold buffers for far-off reuse
        from .value_info import drop_symbolic_value_info
        stages.trace_info["value_info_dropped"] = drop_symbolic_value_info(proto.graph)
        try:
            onnx.checker.check_model(proto, full_check=False)
        except Exception as exc:
            raise ExportError(f"onnx.checker rejected the exported graph: {str(exc).splitlines()[0][:300]}") from exc
    return proto


def _check_target(path: Path, *, overwrite: bool, what: str, flag: str = "--overwrite") -> None:
    """Fail now, before minutes of work, if ``path`` cannot be (re)written: an existing file without
    ``overwrite``, a directory, or a folder we cannot create a file in."""
    if path.is_dir():
        raise ExportError(f"{path}: is a directory (the {what} must be a file path)")
    if path.exists() and not overwrite:
        raise ExportError(f"{path}: exists; pass {flag} to replace it (the {what} is not overwritten by default)")
    parent = path.parent
    probe_dir = parent
    while not probe_dir.exists():  # atomic_open creates missing folders: probe the first existing one
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise ExportError(f"{path}: cannot write the {what} ({probe_dir} is not a directory)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=probe_dir)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ExportError(f"{path}: cannot write the {what} ({exc.strerror or exc})") from None


def _write_outputs(out_path: Path, data: bytes, json_path: Path | None, report: dict[str, Any]) -> None:
    """Write the model (and the JSON report) atomically; on any failure neither is left half-written.

    The report is committed inside the model's atomic write, so a failure writing either leaves the
    model's temporary file removed and the previous files (if any) untouched."""
    try:
        with atomic_open(out_path) as fh:
            fh.write(data)
            if json_path is not None:
                atomic_write_bytes(json_path, (json.dumps(report, indent=2) + "\n").encode())
    except OSError as exc:
        target = json_path if json_path is not None and not out_path.exists() else out_path
        raise ExportError(f"{target}: write failed ({exc.strerror or exc}); nothing was written") from None


def onnx_from_checkpoint(checkpoint: str | Path, out: str | Path | None = None, *,
                         options: ExportOptions | None = None, model=None, overwrite: bool = False,
                         json_path: str | Path | None = None) -> ExportResult:
    """Export ``checkpoint`` (a UGTSR checkpoint) to ``out`` (default: next to it, ``.onnx``).

    ``model``: pass an already-built ``UGTSRNet`` instead of reading ``checkpoint`` (tests).
    ``overwrite``: replace an existing ``out`` / ``json_path`` (otherwise :class:`ExportError` before
    any work). ``json_path``: also write the report (verification cases, metadata, stage timings).
    Raises :class:`ExportError` (or ``CheckpointError``) with a one-line message.
    """
    options = options or ExportOptions()
    t0, c0 = time.perf_counter(), time.process_time()
    ckpt = Path(checkpoint)
    default_suffix = ".onnx" if options.precision == "fp32" else "_fp16.onnx"
    out_path = Path(out) if out is not None else ckpt.with_name(ckpt.stem + default_suffix)
    json_file = Path(json_path) if json_path is not None else None
    if out_path.resolve() == ckpt.resolve() and model is None:
        raise ExportError(f"{out_path}: is the input checkpoint; choose another output")
    _check_target(out_path, overwrite=overwrite, what="output model")
    if json_file is not None:
        if json_file.resolve() == out_path.resolve():
            raise ExportError(f"{json_file}: --json and the output model are the same file")
        _check_target(json_file, overwrite=overwrite, what="--json report")
    stages = _Stages()
    if model is None:
        from ugtsr.checkpoint import load_model
        with stages("load", None):
            model = load_model(checkpoint)
    outputs = _resolve_outputs(model, options)
    proto = export_model(model, options, stages=stages)
    report: dict[str, Any] = {"verified": False}
    if options.verify:
        from .verify import verify_onnx
        with stages("verify", "verifying against PyTorch with ONNX Runtime (odd sizes, batch 2)"):
            report = {"verified": True, **verify_onnx(proto.SerializeToString(), model, options=options)}
        if not report["passed"]:
            raise ExportError(f"verification failed ({report['failure']}); nothing was written. "
                              "Re-run with --no-verify to inspect the graph anyway")
    _prune_outputs(proto, outputs)
    data = proto.SerializeToString()
    if len(data) >= 2**31:
        raise ExportError("the model is over 2 GB; external-data export is not supported by this toolkit")
    meta = {p.key: p.value for p in proto.metadata_props}
    report.update(model_file=str(out_path), model_bytes=len(data), outputs=list(outputs),
                  metadata={k: v for k, v in meta.items() if k != "config"}, timings_s=dict(stages.seconds),
                  cpu_s=dict(stages.cpu_seconds), trace=dict(stages.trace_info))
    with stages("write", f"writing {out_path}"):
        report["timings_s"]["total"] = round(time.perf_counter() - t0, 2)
        report["cpu_s"]["total"] = round(time.process_time() - c0, 2)
        _write_outputs(out_path, data, json_file, report)
    return ExportResult(path=out_path, model_bytes=len(data), outputs=outputs, metadata=meta, report=report,
                        seconds=time.perf_counter() - t0)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m export.onnx", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="UGTSR checkpoint (.pt) written by ugtsr.save_checkpoint / ugtsr.train")
    p.add_argument("-o", "--output", help="output .onnx (default: next to the checkpoint)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output model / --json report")
    p.add_argument("--opset", type=int, default=21, help="ONNX opset (default 21: native GroupNormalization; 17 works too)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32")
    p.add_argument("--matching", choices=("standard", "plugin"), default="standard",
                   help="standard ops (runs everywhere) or a CodebookTopK plugin node for TensorRT")
    p.add_argument("--outputs", default=None, help="comma list among sr,indices,uncertainty (default: sr[,uncertainty])")
    p.add_argument("--plain-attention", action="store_true",
                   help="Align-Attention as standard ops inline instead of ugtsr::WindowAttention nodes with a "
                        "standard-op function body (which ONNX Runtime CPU runs as a fused kernel)")
    p.add_argument("--no-graph-padding", action="store_true",
                   help="legacy graph that needs H, W multiples of multiple_of (the caller pads)")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch verification")
    p.add_argument("--json", metavar="PATH", help="also write the report (verification, metadata, stage timings) as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines, no summary")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    # Our own stage lines at INFO on stderr; the ONNX optimiser logs every rewrite at INFO, so only
    # the export/ugtsr loggers get INFO.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours = [logging.getLogger(name) for name in ("export", "ugtsr")]
    saved = [(lg, lg.level, lg.propagate) for lg in ours]
    for lg in ours:
        lg.setLevel(logging.WARNING if args.quiet else logging.INFO)
        lg.addHandler(handler)
        lg.propagate = False
    try:
        outputs = tuple(o.strip() for o in args.outputs.split(",")) if args.outputs else None
        options = ExportOptions(opset=args.opset, precision=args.precision, matching=args.matching,
                                outputs=outputs, verify=not args.no_verify, pad_input=not args.no_graph_padding,
                                attention_node=not args.plain_attention)
        result = onnx_from_checkpoint(args.checkpoint, args.output, options=options, overwrite=args.overwrite,
                                      json_path=args.json)
    except UGTSRError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    finally:
        for lg, level, propagate in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate
    if not args.quiet:
        from .verify import format_report
        print(f"wrote {result.path} ({result.model_bytes / 1e6:.1f} MB, outputs: {', '.join(result.outputs)}, "
              f"opset {options.opset}, {options.precision}, {result.seconds:.0f} s)")
        if result.report.get("verified"):
            print(format_report(result.report))
        else:
            print("not verified (--no-verify)")
        if args.json:
            print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    from ugtsr.errors import torch_missing_message

    _problem = torch_missing_message("python -m export.onnx", "export")
    if _problem:
        print(_problem, file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main())
