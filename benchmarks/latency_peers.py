"""``python -m benchmarks.latency --peers``: the shipped model beside Real-ESRGAN-shaped networks on ONNX Runtime CPU.

Peers (random weights, seeded; built with spandrel's implementations of the architectures, exported
to ONNX here with dynamic H/W):

* ``realesr-general-x4v3`` -- ``SRVGGNetCompact`` (64 features, 32 convs, PReLU), the shape of
  Real-ESRGAN's small general model (Wang et al., "Real-ESRGAN", ICCVW 2021; xinntao/Real-ESRGAN);
* ``RealESRGAN_x4plus`` -- ``RRDBNet`` (64 features, 23 RRDB blocks, growth 32), Real-ESRGAN's x4 model.

Ours: the shipped model (``runtime/models/ugtsr_tiny_x4.onnx``), or the ONNX graphs given with
``--ours`` (e.g. before/after an optimisation, or two releases). The FLOPs of each graph are counted
on the network its metadata describes (its config, and the gate branches the export folded to
constants); ``--checkpoint`` only for a graph without that metadata.

Each graph is run for all of its outputs: ONNX Runtime runs every node of the graph whatever
outputs ``session.run`` asks for (checked with its profiler: the uncertainty head's convolutions
and ``Tanh`` run when only ``sr`` is fetched), so a graph without the head is a separate export.

Per LR size (``--sizes``, default 64 128 256) and thread count (``--threads``, default 1 2):

* **latency** -- median of ``--repeats`` interleaved calls of ``InferenceSession.run`` (every model
  and thread count is called once per round, so a change of machine load hits all alike) after
  ``--warmup`` calls; numpy float32 ``(1, 3, H, W)`` in, numpy out. Sessions get the runtime's
  own options (:func:`runtime.backends.onnxruntime.session_options`).
* **GFLOP** -- ``torch.utils.flop_counter.FlopCounterMode`` on the PyTorch model at that size
  (convolutions and matrix products, 2 FLOP per multiply-add; element-wise ops are not counted).
  For a graph of ours without an ``uncertainty`` output the head's FLOPs are subtracted.
* **GFLOP/s** = GFLOP / median seconds, and its ratio to the Compact peer's at the same size and
  thread count (the issue-13 target: >= 0.85).
* **peak memory** -- in a fresh process per model and size (one thread): the session is created and
  the input allocated, the RSS high-water mark is reset (``/proc/self/clear_refs``), one inference
  runs, and the peak is ``VmHWM - VmRSS`` before the run: the memory inference needs above the
  loaded model (the output array included). Also per input pixel.

RRDBNet takes minutes per call above 128x128 on two cores: it is skipped above ``--rrdb-max-side``
(default 128; the table says so).

Writes ``benchmarks/results/latency_peers.{json,md,png}`` (``--tag`` changes ``peers``).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ugtsr.errors import ConfigError, MissingDependencyError, UGTSRError

from . import _common as C

__all__ = ["PEERS", "COMPACT", "build_peer", "count_gflop", "paired_ratio", "add_arguments", "run_peers"]

COMPACT = "realesr-general-x4v3"
RRDB = "RealESRGAN_x4plus"
#: name -> (spandrel class, constructor keywords): the released models' hyper-parameters
PEERS: dict[str, tuple[str, dict[str, Any]]] = {
    COMPACT: ("SRVGGNetCompact", {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_conv": 32, "upscale": 4,
                                  "act_type": "prelu"}),
    RRDB: ("RRDBNet", {"in_nc": 3, "out_nc": 3, "num_filters": 64, "num_blocks": 23, "scale": 4}),
}
_MODULES = {"SRVGGNetCompact": "spandrel.architectures.Compact.__arch.SRVGG",
            "RRDBNet": "spandrel.architectures.ESRGAN.__arch.RRDB"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("peers (--peers)")
    g.add_argument("--peers", action="store_true",
                   help="the shipped model beside Real-ESRGAN-shaped networks (ONNX Runtime CPU)")
    g.add_argument("--peer-threads", type=int, nargs="+", default=[1, 2], metavar="N",
                   help="ONNX Runtime intra-op threads to time (default 1 2)")
    g.add_argument("--rrdb-max-side", type=int, default=128,
                   help="skip RRDBNet above this LR side (default 128: ~2 min per call at 256 on 2 cores)")
    g.add_argument("--peer-cache", metavar="DIR", default=None,
                   help="keep the exported peer ONNX files here and reuse them (default: a temporary folder)")
    g.add_argument("--ours", nargs="+", metavar="MODEL.onnx", default=None,
                   help="ONNX graphs of ours (default: the shipped model); FLOPs from each graph's config metadata")
    g.add_argument("--no-peak", action="store_true", help="with --peers: skip the peak-memory processes")
    g.add_argument("--no-plot", action="store_true", help="with --peers: no PNG")


# ------------------------------------------------------------------------------------------ models
def _spandrel_class(name: str) -> type:
    """spandrel's implementation of an architecture.

    ``import spandrel`` imports every architecture for its model-file loader, and two of them need
    torchvision, whose PyPI wheels are CUDA builds that do not load against a CPU-only torch. Only
    the two architecture modules are needed here: where the package import fails, they are loaded
    from the installed package without its loader (``spandrel/__init__.py`` is not run).
    """
    if importlib.util.find_spec("spandrel") is None:
        raise MissingDependencyError("the peer networks need spandrel: pip install 'spandrel==0.4.2' "
                                     "(part of the dev extra)")
    try:
        import spandrel  # noqa: F401
    except (ImportError, RuntimeError):
        spec = importlib.util.find_spec("spandrel")
        shell = types.ModuleType("spandrel")
        shell.__path__ = list(spec.submodule_search_locations or [])  # type: ignore[attr-defined]
        shell.__spec__ = spec
        sys.modules["spandrel"] = shell
    module = importlib.import_module(_MODULES[name])
    return getattr(module, name)


def build_peer(name: str, *, seed: int = 0) -> Any:
    """A randomly initialised peer network (``eval()``); PReLU slopes and weights as initialised."""
    import torch

    if name not in PEERS:
        raise ConfigError(f"unknown peer {name!r}; choose one of: {', '.join(PEERS)}")
    cls_name, kwargs = PEERS[name]
    torch.manual_seed(seed)
    return _spandrel_class(cls_name)(**kwargs).eval()


def count_gflop(model: Any, h: int, w: int, *, module: str | None = None) -> tuple[float, float]:
    """``(total, of module)`` GFLOP of ``model`` on a ``(1, 3, h, w)`` input (``torch.utils.flop_counter``).

    ``module`` is a dotted path under the model (``"uncertainty_head"``); 0 when absent.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False, depth=None) as counter:
        model(torch.rand(1, 3, h, w))
    part = 0.0
    if module:
        key = f"{type(model).__name__}.{module}"
        part = sum(counter.get_flop_counts().get(key, {}).values()) / 1e9
    return counter.get_total_flops() / 1e9, part


def _export_peer(model: Any, path: Path) -> dict[str, Any]:
    """Dynamic-shape ONNX of a peer (input ``lq``, output ``sr``), checked against PyTorch at 48x40."""
    import onnxruntime as ort
    import torch

    n, h, w = torch.export.Dim("n", min=1), torch.export.Dim("h", min=16), torch.export.Dim("w", min=16)
    example = torch.rand(2, 3, 64, 64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    torch.onnx.export(model, (example,), str(tmp), dynamo=True, input_names=["lq"], output_names=["sr"],
                      dynamic_shapes=({0: n, 2: h, 3: w},), external_data=False, opset_version=21,
                      verbose=False)
    x = torch.rand(1, 3, 48, 40)
    with torch.no_grad():
        ref = model(x).numpy()
    got = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"]).run(["sr"], {"lq": x.numpy()})[0]
    err = float(np.abs(got - ref).max())
    if got.shape != ref.shape or not err <= 1e-3:
        raise UGTSRError(f"{path.name}: the ONNX export differs from PyTorch (max |d| {err:.3g})")
    os.replace(tmp, path)
    return {"max_abs_diff_48x40": err}


def _peer_onnx(name: str, folder: Path, seed: int) -> tuple[Any, Path, dict[str, Any]]:
    model = build_peer(name, seed=seed)
    path = folder / f"{name}_seed{seed}.onnx"
    info: dict[str, Any] = {"architecture": PEERS[name][0], "kwargs": PEERS[name][1], "random_init": True,
                            "seed": seed, "parameters": sum(p.numel() for p in model.parameters())}
    if path.is_file():
        info["export"] = "reused from the peer cache"
    else:
        info["export"] = _export_peer(model, path)
    return model, path, info


# ------------------------------------------------------------------------------------------- timing
def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    from runtime.backends.onnxruntime import session_options
    from runtime.backends.ort_graph import cpu_model

    # what the runtime's CPU backend runs (its WindowAttention nodes fused; other graphs unchanged)
    return ort.InferenceSession(cpu_model(path), sess_options=session_options(ort, threads=threads),
                                providers=["CPUExecutionProvider"])


_PEAK_CHILD = r"""
import json, sys
import numpy as np
import onnxruntime as ort
from runtime.backends.onnxruntime import session_options
from runtime.backends.ort_graph import cpu_model

def status():
    with open('/proc/self/status') as fh:
        return {k: int(v.split()[0]) for k, v in (l.split(':', 1) for l in fh) if k in ('VmRSS', 'VmHWM')}

path, side, outputs = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(',')
sess = ort.InferenceSession(cpu_model(path), sess_options=session_options(ort, threads=1), providers=['CPUExecutionProvider'])
x = np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32)
loaded = status()
with open('/proc/self/clear_refs', 'w') as fh:
    fh.write('5')
reset = status()
out = sess.run(outputs, {sess.get_inputs()[0].name: x})
after = status()
print(json.dumps({'loaded': loaded, 'reset': reset, 'after': after}))
"""


def _peak_above_model(path: Path, side: int, outputs: Sequence[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _PEAK_CHILD, str(path), str(side), ",".join(outputs)],
                          capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        return {"peak_status": "failed", "peak_reason": (proc.stderr.strip().splitlines() or ["?"])[-1][:300]}
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    base = rec["loaded"]["VmRSS"]
    peak = rec["after"]["VmHWM"]
    reset_ok = rec["reset"]["VmHWM"] <= rec["loaded"]["VmRSS"] + 1024
    above_kib = peak - base
    return {"peak_status": "measured", "loaded_rss_mib": round(base / 1024, 1),
            "peak_above_model_mib": round(above_kib / 1024, 1),
            "peak_kib_per_input_pixel": round(above_kib / (side * side), 2), "hwm_reset": reset_ok}


# ---------------------------------------------------------------------------------------------- run
def _ours(args: argparse.Namespace) -> tuple[list[Path], Path]:
    from runtime.upscaler import default_model_path

    graphs = [Path(p) for p in args.ours] if args.ours else [default_model_path()]
    ckpt = Path(args.checkpoint) if args.checkpoint else graphs[0].with_suffix(".pt")
    for p in graphs:
        if not p.is_file():
            raise ConfigError(f"{p}: ONNX model not found (--ours)")
    return graphs, ckpt  # the checkpoint is read only for a graph without config metadata


def _flop_model(path: Path) -> tuple[Any, str]:
    """The network a graph computes, for counting its FLOPs: built from the config in the graph's
    metadata (random weights: FLOPs do not depend on them), with the gate branches that the export
    folded to constants (metadata ``gate_constant_branches``) folded here too. ``(None, "")`` for a
    graph without a config."""
    import onnx

    import ugtsr

    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if "config" not in meta:
        return None, ""
    model = ugtsr.build_model(ugtsr.UGTSRConfig.from_json(meta["config"])).eval()
    folded = set(filter(None, meta.get("gate_constant_branches", "").split(",")))
    if model.fidelity_gate is not None:
        model.fidelity_gate.constant_body = "body" in folded
        model.fidelity_gate.constant_context = "context" in folded
    return model, f"config of {path.name}" + (f" (gate {', '.join(sorted(folded))} folded)" if folded else "")


def _graph_outputs(path: Path) -> list[str]:
    import onnxruntime as ort

    return [o.name for o in ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_outputs()]


def run_peers(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """Latency, GFLOP/s and peak memory of ours and the peers; writes the JSON, Markdown table and plot."""
    import torch

    import ugtsr

    sides = []
    for text in args.sizes:
        h, _, w = str(text).lower().partition("x")
        if w and w != h:
            raise ConfigError(f"--peers takes square sizes (N), got {text!r}")
        if not h.isdigit() or int(h) < 16 or int(h) % 16:
            raise ConfigError(f"--peers sizes must be multiples of 16 and >= 16, got {text!r}")
        sides.append(int(h))
    threads = sorted(set(args.peer_threads))
    if any(t < 1 for t in threads):
        raise ConfigError("--peer-threads must be >= 1")
    torch.set_num_threads(max(threads))
    graphs, ckpt_path = _ours(args)
    fallback_model = None
    with tempfile.TemporaryDirectory(prefix="ugtsr_peers_") as tmp:
        folder = Path(args.peer_cache) if args.peer_cache else Path(tmp)
        models: dict[str, dict[str, Any]] = {}
        for path in graphs:
            label = path.stem if path.stem not in models else str(path)
            outputs = _graph_outputs(path)
            if "sr" not in outputs:
                raise ConfigError(f"{path}: no 'sr' output (outputs: {', '.join(outputs)})")
            ours_model, counted_on = _flop_model(path)
            if ours_model is None:  # no config in the graph: the checkpoint's model
                if fallback_model is None:
                    if not ckpt_path.is_file():
                        raise ConfigError(f"{path} carries no config and {ckpt_path} is missing: give --checkpoint")
                    fallback_model = ugtsr.load_model(ckpt_path).eval()
                ours_model, counted_on = fallback_model, str(ckpt_path)
            models[label] = {"kind": "ours", "onnx": path, "torch": ours_model, "outputs": outputs,
                             "info": {"onnx": str(path), "flops_counted_on": counted_on,
                                      "parameters": sum(p.numel() for p in ours_model.parameters())}}
        for name in PEERS:
            model, path, info = _peer_onnx(name, folder, args.seed)
            models[name] = {"kind": "peer", "onnx": path, "torch": model, "outputs": ["sr"], "info": info}
        rows = _measure(models, sides, threads, args)
        if not args.no_peak:
            for row in rows:
                if row["status"] == "measured" and row["threads"] == threads[0]:
                    m = models[row["model"]]
                    row.update(_peak_above_model(m["onnx"], row["side"], m["outputs"]))
    _ratios(rows)
    return _write(rows, models, args, argv, sides, threads)


def _measure(models: dict[str, dict[str, Any]], sides: list[int], threads: list[int],
             args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    sessions = {(name, t): _session(m["onnx"], t) for name, m in models.items() for t in threads}
    rng = np.random.default_rng(args.seed)
    for side in sides:
        inputs = [rng.random((1, 3, side, side), dtype=np.float32) for _ in range(2)]
        fns = {}
        for name, m in models.items():
            gflop, head = count_gflop(m["torch"], side, side, module="uncertainty_head" if m["kind"] == "ours" else None)
            if m["kind"] == "ours" and "uncertainty" not in m["outputs"]:
                gflop -= head
            base = {"model": name, "kind": m["kind"], "outputs": ",".join(m["outputs"]), "side": side,
                    "lr_size": f"{side}x{side}", "output_size": f"{4 * side}x{4 * side}", "gflop": round(gflop, 3)}
            for t in threads:
                if name == RRDB and side > args.rrdb_max_side:
                    rows.append({**base, "threads": t, "status": "skipped",
                                 "reason": f"RRDBNet above {args.rrdb_max_side}x{args.rrdb_max_side} is skipped "
                                           "(--rrdb-max-side)"})
                    continue
                sess, outs = sessions[(name, t)], m["outputs"]
                fns[(name, t)] = (lambda x, s=sess, o=outs: s.run(o, {"lq": x}))
                rows.append({**base, "threads": t, "status": "measured"})
        timings = C.measure_interleaved({f"{n}|{t}": fn for (n, t), fn in fns.items()}, inputs,
                                        repeats=args.repeats, warmup=args.warmup)
        for row in rows:
            key = f"{row['model']}|{row['threads']}"
            if row["side"] == side and row["status"] == "measured" and key in timings:
                tm = timings[key]
                row.update(median_ms=round(tm.median_ms, 2), min_ms=round(tm.min_ms, 2), times_ms=tm.times_ms,
                           gflop_per_s=round(row["gflop"] / (tm.median_ms / 1e3), 2))
    return rows


def paired_ratio(gflop: float, times_ms: Sequence[float], ref_gflop: float, ref_times_ms: Sequence[float]) -> dict[str, float]:
    """GFLOP/s of a model against a reference, round by round: in round ``i`` both were called one
    right after the other, so ``(gflop / t_i) / (ref_gflop / ref_t_i)`` cancels whatever load the
    shared machine had during that round. Returns the median and the quartiles over the rounds (the
    ratio of the two medians, ``gflops_vs_compact``, can move with load that changed mid-run)."""
    if not times_ms or len(times_ms) != len(ref_times_ms):
        raise ValueError(f"paired rounds need equal, non-empty timing lists, got {len(times_ms)} and {len(ref_times_ms)}")
    per_round = (gflop / ref_gflop) * np.asarray(ref_times_ms, dtype=np.float64) / np.asarray(times_ms, dtype=np.float64)
    q25, q50, q75 = np.quantile(per_round, [0.25, 0.5, 0.75])
    return {"median": round(float(q50), 3), "q25": round(float(q25), 3), "q75": round(float(q75), 3)}


def _ratios(rows: list[dict[str, Any]]) -> None:
    ref = {(r["side"], r["threads"]): r for r in rows if r["model"] == COMPACT and r["status"] == "measured"}
    for r in rows:
        c = ref.get((r["side"], r["threads"]))
        if r["status"] == "measured" and c:
            r["gflops_vs_compact"] = round(r["gflop_per_s"] / c["gflop_per_s"], 3)
            r["gflops_vs_compact_paired"] = paired_ratio(r["gflop"], r["times_ms"], c["gflop"], c["times_ms"])
            r["time_vs_compact"] = round(r["median_ms"] / c["median_ms"], 3)


def _write(rows: list[dict[str, Any]], models: dict[str, dict[str, Any]], args: argparse.Namespace,
           argv: Sequence[str] | None, sides: list[int], threads: list[int]) -> int:
    paths = C.result_paths(args.out_dir, "latency", args.tag or "peers")
    notes = ["ONNX Runtime CPU (CPUExecutionProvider), sessions with the runtime's options; numpy in -> numpy out",
             f"latency: median of {args.repeats} interleaved rounds after {args.warmup} warm-up calls; every model "
             "and thread count is called once per round",
             "vs Compact: GFLOP/s over the Compact peer's from the two medians; paired: the same ratio in each round "
             "(both called one after the other) and its median and quartiles over the rounds, which cancels load "
             "that changes during the run",
             "GFLOP: torch.utils.flop_counter on the PyTorch model (conv/matmul, 2 FLOP per MAC); a graph of ours "
             "without the uncertainty output (export --outputs sr) is charged without the head's FLOPs",
             "every graph is run for all of its outputs (ONNX Runtime runs every node whatever outputs are fetched)",
             "peers: random weights (seeded), spandrel's architecture code, exported here; latency does not depend "
             "on the weights",
             "peak memory: fresh process per model and size, 1 thread; VmHWM after one run minus VmRSS of the "
             "loaded session (high-water mark reset through /proc/self/clear_refs)",
             f"RRDBNet skipped above {args.rrdb_max_side}x{args.rrdb_max_side} LR (--rrdb-max-side)"]
    record = {**C.record_header("latency", "benchmarks.latency", argv), "mode": "peers",
              "settings": {"sizes": sides, "threads": threads, "repeats": args.repeats, "warmup": args.warmup,
                           "seed": args.seed, "rrdb_max_side": args.rrdb_max_side},
              "models": {n: {"kind": m["kind"], "outputs": m["outputs"], **m["info"]} for n, m in models.items()},
              "rows": rows, "notes": notes}
    C.write_json(paths["json"], record)
    table = _table(rows, threads)
    head = (f"# Latency, GFLOP/s and peak memory beside Real-ESRGAN-shaped networks\n\n"
            f"`{C.command_line('benchmarks.latency', argv, executable='python')}`  \n"
            f"{record['utc_time']}, {record['machine']['cpu_model']}, {record['machine']['cpu_cores_usable']} cores "
            f"usable, load average at the end {record['machine']['load_average_1_5_15min']} (a shared machine: "
            "compare ratios within one run), onnxruntime "
            f"{record['versions']['onnxruntime']}.\n\n")
    C.write_text(paths["md"], head + table + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    plot, why = C.save_plot(paths["png"], lambda plt: _draw(plt, rows, threads), enabled=not args.no_plot)
    print(table)
    print(f"wrote {paths['json']}, {paths['md']}" + (f", {plot}" if plot else f" (no plot: {why})"))
    return 0


def _table(rows: list[dict[str, Any]], threads: list[int]) -> str:
    by: dict[tuple[str, int], dict[int, dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["model"], r["side"]), {})[r["threads"]] = r
    out = []
    for (model, _side), per in by.items():
        first = per[threads[0]]
        line: dict[str, Any] = {"model": model, "LR": first["lr_size"], "GFLOP": first["gflop"]}
        for t in threads:
            r = per.get(t, {})
            ok = r.get("status") == "measured"
            line[f"ms ({t} thr)"] = r.get("median_ms") if ok else "skipped"
            line[f"GFLOP/s ({t} thr)"] = r.get("gflop_per_s") if ok else ""
            line[f"vs Compact ({t} thr)"] = r.get("gflops_vs_compact", "") if ok else ""
            pr = r.get("gflops_vs_compact_paired") if ok else None
            line[f"paired, IQR ({t} thr)"] = f"{pr['median']} [{pr['q25']}-{pr['q75']}]" if pr else ""
        line["peak MiB above model"] = first.get("peak_above_model_mib", "")
        line["KiB / input px"] = first.get("peak_kib_per_input_pixel", "")
        out.append(line)
    return C.markdown_table(out, list(out[0]) if out else [])


def _draw(plt: Any, rows: list[dict[str, Any]], threads: list[int]) -> None:
    ok = [r for r in rows if r["status"] == "measured"]
    names = list(dict.fromkeys(r["model"] for r in ok))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    styles = ["-o", "--s", ":^", "-.d"]
    for i, name in enumerate(names):
        for j, t in enumerate(threads):
            pts = sorted((r["side"], r["median_ms"], r["gflop_per_s"]) for r in ok if r["model"] == name
                         and r["threads"] == t)
            if pts:
                kw = {"color": f"C{i}", "label": f"{name}, {t} thr"}
                axes[0].plot([p[0] for p in pts], [p[1] for p in pts], styles[j % 4], **kw)
                axes[1].plot([p[0] for p in pts], [p[2] for p in pts], styles[j % 4], **kw)
        mem = sorted((r["side"], r["peak_above_model_mib"]) for r in ok if r["model"] == name
                     and r["threads"] == threads[0] and "peak_above_model_mib" in r)
        if mem:
            axes[2].plot([p[0] for p in mem], [p[1] for p in mem], "-o", color=f"C{i}", label=name)
    for ax, title, ylabel in ((axes[0], "latency (median)", "ms"), (axes[1], "effective compute", "GFLOP/s"),
                              (axes[2], "peak RSS above the loaded model (1 thr)", "MiB")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("LR side (px), x4 output")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[2].set_yscale("log")
    axes[1].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    fig.suptitle("ONNX Runtime CPU: UGTSR tiny_x4 vs Real-ESRGAN-shaped networks (random weights)")
