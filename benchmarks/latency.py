"""End-to-end latency per inference backend, and peak memory of ``runtime.infer`` with and without tiling.

    python -m benchmarks.latency --preset tiny_x4                        # random weights: architecture latency
    python -m benchmarks.latency --checkpoint m.pt --onnx m.onnx --onnx-fp16 m_fp16.onnx --engine m.plan
    python -m benchmarks.latency --peak-memory --onnx m.onnx --peak-size 1024 --peak-tile 256

**Latency.** For every backend and LR size: the median wall time of ``Backend.run(lq)`` (the
runtime's backend interface, :mod:`runtime.backends`) over ``--repeats`` calls after ``--warmup``
calls (which absorb engine builds, autotuning and allocations; the first also checks the output).
All backends are open at once and timed interleaved (each round calls every backend once), so a
change of machine load hits them alike. ``lq`` is a ``(1, 3, H, W)``
float32 array in [0, 1] (random, two arrays rotated); the time runs from the numpy input to the
numpy outputs, so host-device copies are included and the result is synchronous (no device-clock
subtlety). Image decoding, padding and clamping are not included. Sizes are rounded up to the
model's ``multiple_of``. Reported: ms and output megapixels per second.

Backends (each one that cannot run here is listed as skipped, with the reason):
``torch-cpu-fp32``, ``torch-cuda-fp32``, ``torch-cuda-fp16`` (``.half()``) from ``--checkpoint``;
``ort-cpu-fp32``, ``ort-cuda-fp32``, ``ort-trt-fp32``, ``ort-trt-fp16`` (TensorRT EP with
``trt_fp16_enable``) from ``--onnx``; ``ort-cpu-fp16``, ``ort-cuda-fp16``, ``ort-trt-fp16onnx`` from
``--onnx-fp16`` (an FP16 graph with FP32 islands); ``tensorrt`` from ``--engine``.

``--preset NAME`` builds a randomly initialised model of that preset (seeded), writes its checkpoint
and (unless ``--no-onnx``) its ONNX export to a temporary folder, and times those: the latency of
the architecture, not of a trained model (the numbers do not depend on the weights).

**Peak memory** (``--peak-memory``): an LR photo of ``--peak-size`` pixels square (scikit-image's
astronaut, resized) is upscaled by ``python -m runtime.infer`` in a fresh subprocess once with
``--tile 0`` (whole image) and once per ``--peak-tile``; the peak resident set size of each process
is its own high-water mark (``VmHWM``, read at exit by a small launcher). A process that only opens the model gives the
baseline.

**Peers** (``--peers``, :mod:`benchmarks.latency_peers`): the shipped model beside
Real-ESRGAN-shaped networks (spandrel, random weights) on ONNX Runtime CPU at one and two threads:
latency, GFLOP, GFLOP/s and peak memory above the loaded model.

Writes ``benchmarks/results/latency_<tag>.json`` / ``.csv`` (``--peers``: ``latency_peers.{json,md,png}``).
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ugtsr.errors import ConfigError, UGTSRError

from . import _common as C
from . import latency_peers

__all__ = ["main", "BACKEND_CASES", "peak_rss_of"]

logger = logging.getLogger(__name__)

#: every backend label, in the order they are reported
BACKEND_CASES = ("torch-cpu-fp32", "torch-cuda-fp32", "torch-cuda-fp16", "ort-cpu-fp32", "ort-cuda-fp32",
                 "ort-trt-fp32", "ort-trt-fp16", "ort-cpu-fp16", "ort-cuda-fp16", "ort-trt-fp16onnx", "tensorrt")


@dataclass
class _Case:
    label: str
    source: str  # "checkpoint" | "onnx" | "onnx_fp16" | "engine"
    open: Callable[[], Any] | None  # returns a runtime Backend
    skip: str | None = None
    provider: str | None = None  # the ONNX Runtime provider that must be first


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.latency",
                                description="End-to-end latency per backend; peak memory with and without tiling.")
    src = p.add_argument_group("model")
    src.add_argument("--checkpoint", metavar="CKPT", help="UGTSR checkpoint (.pt): torch backends")
    src.add_argument("--onnx", metavar="MODEL.onnx", help="FP32 ONNX export: ONNX Runtime backends")
    src.add_argument("--onnx-fp16", metavar="MODEL.onnx", help="FP16 ONNX export (FP32 islands)")
    src.add_argument("--engine", metavar="ENGINE.plan", help="TensorRT engine built by runtime.build")
    src.add_argument("--preset", metavar="NAME", help="random-weight model of this preset (architecture latency)")
    src.add_argument("--no-onnx", action="store_true", help="with --preset: do not export to ONNX (torch only)")
    src.add_argument("--export-fp16", action="store_true", help="with --preset: also export an FP16 ONNX")
    p.add_argument("--sizes", nargs="+", default=["64", "128", "256"], metavar="N|HxW",
                   help="LR input sizes (default 64 128 256); rounded up to the model's multiple_of")
    p.add_argument("--backends", nargs="+", choices=BACKEND_CASES, default=None,
                   help="only these backends (default: all that apply)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls (default cpu 5, with a GPU 20)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first, the output check included (default 3)")
    p.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime CPU threads")
    p.add_argument("--seed", type=int, default=0)
    pm = p.add_argument_group("peak memory")
    pm.add_argument("--peak-memory", action="store_true", help="measure peak RSS of runtime.infer instead")
    pm.add_argument("--peak-size", type=int, default=1024, help="LR side of the test image (default 1024)")
    pm.add_argument("--peak-tile", type=int, nargs="+", default=[256], help="tile sizes to compare (default 256)")
    pm.add_argument("--peak-backend", default="auto", help="runtime.infer --backend (default auto)")
    latency_peers.add_arguments(p)
    p.add_argument("--tag", default=None, help="result file tag (default: <model>_<cpu|cuda>; --peers: peers)")
    p.add_argument("--out-dir", default=None, help="folder for the results (default benchmarks/results)")
    return p


def _parse_size(text: str) -> tuple[int, int]:
    h, sep, w = str(text).lower().partition("x")
    try:
        hh, ww = int(h), int(w) if sep else int(h)
    except ValueError:
        raise ConfigError(f"size must be N or HxW, got {text!r}") from None
    if hh < 1 or ww < 1:
        raise ConfigError(f"size must be positive, got {text!r}")
    return hh, ww


# ---------------------------------------------------------------------------------------- model files
def _prepare_preset(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Random-weight checkpoint (+ ONNX) of ``--preset`` in ``folder``; sets args paths."""
    import torch

    import ugtsr
    from ugtsr.model import count_parameters

    if args.preset not in ugtsr.PRESETS:
        raise ConfigError(f"unknown preset {args.preset!r}; choose one of: {', '.join(ugtsr.PRESETS)}")
    torch.manual_seed(args.seed)
    model = ugtsr.build_model(args.preset).eval()
    # zero-initialised residual outputs (Top-k fusion, Align-Attention) would make paths exact
    # identities: re-draw them so every timed path computes something
    with torch.no_grad():
        fusion = getattr(model.matcher, "fusion", None)
        if fusion is not None:
            torch.nn.init.normal_(fusion.out.weight, std=0.02)
        for aa in model.skip_fusion or []:
            torch.nn.init.normal_(aa.proj.weight, std=0.02)
    args.checkpoint = str(ugtsr.save_checkpoint(folder / f"{args.preset}.pt", model, random_init=True))
    info = {"preset": args.preset, "random_init": True, "parameters": count_parameters(model),
            "export_seconds": {}}
    if not args.no_onnx:
        from export.onnx import ExportOptions, onnx_from_checkpoint

        precisions = ["fp32", "fp16"] if args.export_fp16 else ["fp32"]
        for precision in precisions:
            t0 = time.perf_counter()
            res = onnx_from_checkpoint(args.checkpoint, folder / f"{args.preset}_{precision}.onnx", model=model,
                                       options=ExportOptions(precision=precision, verify=False))
            info["export_seconds"][precision] = round(time.perf_counter() - t0, 1)
            if precision == "fp32":
                args.onnx = str(res.path)
            else:
                args.onnx_fp16 = str(res.path)
    return info


def _ort_providers() -> tuple[list[str], str | None]:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return [], f"onnxruntime is not installed ({exc})"
    return list(ort.get_available_providers()), None


def _cases(args: argparse.Namespace) -> list[_Case]:
    from runtime.backends import load_backend

    try:
        import torch

        cuda = torch.cuda.is_available()
        torch_reason = None if cuda else "torch sees no CUDA GPU"
    except ImportError:
        cuda, torch_reason = False, "torch is not installed"
    providers, ort_reason = _ort_providers()
    threads = args.threads

    def ort(path: str, prov: str, **kw: Any) -> Callable[[], Any]:
        return lambda: load_backend(path, backend="onnxruntime", providers=[prov], threads=threads, **kw)

    def torch_case(label: str, device: str, half: bool) -> _Case:
        if not args.checkpoint:
            return _Case(label, "checkpoint", None, "no --checkpoint given")
        if device == "cuda" and not cuda:
            return _Case(label, "checkpoint", None, torch_reason)
        return _Case(label, "checkpoint",
                     lambda: load_backend(args.checkpoint, backend="torch", device=device, fp16=half))

    def ort_case(label: str, source: str, provider: str, **kw: Any) -> _Case:
        path = getattr(args, source)
        if not path:
            return _Case(label, source, None, f"no --{source.replace('_', '-')} given")
        if ort_reason:
            return _Case(label, source, None, ort_reason)
        full = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                "tensorrt": "TensorrtExecutionProvider"}[provider]
        if full not in providers:
            return _Case(label, source, None, f"{full} is not in this onnxruntime build "
                                              f"(available: {', '.join(providers)})")
        return _Case(label, source, ort(path, provider, **kw), provider=full)

    def engine_case() -> _Case:
        if not args.engine:
            return _Case("tensorrt", "engine", None, "no --engine given")
        return _Case("tensorrt", "engine", lambda: load_backend(args.engine, backend="tensorrt"))

    cases = [
        torch_case("torch-cpu-fp32", "cpu", False),
        torch_case("torch-cuda-fp32", "cuda", False),
        torch_case("torch-cuda-fp16", "cuda", True),
        ort_case("ort-cpu-fp32", "onnx", "cpu"),
        ort_case("ort-cuda-fp32", "onnx", "cuda"),
        ort_case("ort-trt-fp32", "onnx", "tensorrt"),
        ort_case("ort-trt-fp16", "onnx", "tensorrt", fp16=True),
        ort_case("ort-cpu-fp16", "onnx_fp16", "cpu"),
        ort_case("ort-cuda-fp16", "onnx_fp16", "cuda"),
        ort_case("ort-trt-fp16onnx", "onnx_fp16", "tensorrt"),
        engine_case(),
    ]
    if args.backends:
        cases = [c for c in cases if c.label in args.backends]
    return cases


# ------------------------------------------------------------------------------------------- latency
def _open(case: _Case) -> tuple[Any | None, dict[str, Any] | None]:
    """The opened backend, or ``None`` and the row saying why it was skipped."""
    base = {"backend": case.label, "source": case.source}
    try:
        backend = case.open()
    except (UGTSRError, ImportError, RuntimeError) as exc:
        return None, {**base, "status": "skipped", "reason": f"cannot open: {exc}"[:300]}
    providers = getattr(backend, "providers", None)
    if case.provider and providers and providers[0] != case.provider:
        backend.close()
        return None, {**base, "status": "skipped",
                      "reason": f"ONNX Runtime fell back to {', '.join(providers)} instead of {case.provider}"}
    return backend, None


def _time_backends(opened: dict[str, tuple[_Case, Any]], sizes: list[tuple[int, int]],
                   args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per size: one checked call per backend, then all working backends timed interleaved."""
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(args.seed)
    for h, w in sizes:
        ready: dict[str, Callable[[np.ndarray], Any]] = {}
        meta: dict[str, dict[str, Any]] = {}
        inputs: dict[str, list[np.ndarray]] = {}
        for label, (case, backend) in opened.items():
            info = backend.info
            m = max(info.multiple_of, 1)
            rh, rw = max(-(-h // m) * m, info.min_size), max(-(-w // m) * m, info.min_size)
            key = f"{rh}x{rw}"
            if key not in inputs:
                inputs[key] = [rng.random((1, 3, rh, rw), dtype=np.float32) for _ in range(2)]
            row = {"backend": label, "source": case.source, "lr_size": key, "requested": f"{h}x{w}",
                   "output_size": f"{rh * info.scale}x{rw * info.scale}", "precision": info.precision,
                   "output_megapixels": rh * info.scale * rw * info.scale / 1e6}
            providers = getattr(backend, "providers", None)
            if providers:
                row["providers"] = providers
            try:
                out = backend.run(inputs[key][0])  # the check; also the first warm-up call
                if not np.isfinite(out["sr"]).all():
                    raise UGTSRError("non-finite output")
            except (UGTSRError, RuntimeError, MemoryError) as exc:
                rows.append({**row, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:300]})
                continue
            ready[label] = backend.run
            meta[label] = row
        # backends of one size share the input shape unless their multiple_of differs: group by shape
        for key in inputs:
            group = {label: fn for label, fn in ready.items() if meta[label]["lr_size"] == key}
            if not group:
                continue
            timings = C.measure_interleaved(group, inputs[key], repeats=args.repeats, warmup=args.warmup - 1)
            for label, t in timings.items():
                row = meta[label]
                mp = row.pop("output_megapixels")
                rows.append({**row, "status": "measured", "median_ms": round(t.median_ms, 3),
                             "min_ms": round(t.min_ms, 3), "max_ms": round(t.max_ms, 3), "repeats": t.repeats,
                             "warmup": t.warmup + 1, "output_mp_per_s": round(mp / (t.median_ms / 1e3), 4),
                             "times_ms": t.times_ms})
    order = {label: i for i, label in enumerate(BACKEND_CASES)}
    return sorted(rows, key=lambda r: (order.get(r["backend"], 99), [int(v) for v in r["lr_size"].split("x")]))


# --------------------------------------------------------------------------------------- peak memory
# Runs ``python -m MODULE ...`` or ``python -c CODE ...`` and, at exit, writes the process's own peak
# RSS (VmHWM of /proc/self/status, in KiB) to the file named by the environment variable. ru_maxrss of
# a child is no good on Linux: exec() folds the parent's high-water mark into it (we hold torch).
_LAUNCHER = """
import atexit, os, runpy, sys
def _report():
    try:
        with open('/proc/self/status') as fh:
            kib = next(line.split()[1] for line in fh if line.startswith('VmHWM:'))
        with open(os.environ['UGTSR_PEAK_RSS_FILE'], 'w') as out:
            out.write(kib)
    except Exception:
        pass
atexit.register(_report)
mode, target, args = sys.argv[1], sys.argv[2], sys.argv[3:]
if mode == '-m':
    sys.argv = [target, *args]
    runpy.run_module(target, run_name='__main__', alter_sys=True)
else:
    sys.argv = ['-c', *args]
    exec(compile(target, '<string>', 'exec'), {'__name__': '__main__'})
"""


def peak_rss_of(python_args: Sequence[str], *, timeout: float | None = None) -> dict[str, Any]:
    """Run ``python -m MODULE ARGS`` / ``python -c CODE ARGS`` in a fresh process; exit code, wall time, peak RSS.

    ``python_args`` starts with ``"-m"`` or ``"-c"``. The peak is the process's own VmHWM (Linux
    ``/proc``); elsewhere the children's ``ru_maxrss`` is reported instead (``rss_source`` says which).
    """
    if len(python_args) < 2 or python_args[0] not in ("-m", "-c"):
        raise ConfigError("peak_rss_of expects ['-m', MODULE, ...] or ['-c', CODE, ...]")
    with tempfile.TemporaryDirectory(prefix="ugtsr_rss_") as tmp:
        report = Path(tmp) / "vmhwm"
        env = {**os.environ, "UGTSR_PEAK_RSS_FILE": str(report)}
        t0 = time.perf_counter()
        with open(Path(tmp) / "stderr", "wb") as err:
            proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, *python_args], stdout=subprocess.DEVNULL,
                                    stderr=err, env=env)
            timed_out = False
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                timed_out = True
        wall = time.perf_counter() - t0
        tail = (Path(tmp) / "stderr").read_text("utf-8", "replace")[-500:].strip()
        if report.is_file() and report.read_text().strip().isdigit():
            rss, source = int(report.read_text()) / 1024, "VmHWM"
        else:
            import resource

            rss, source = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "ru_maxrss_children"
    return {"returncode": proc.returncode, "timed_out": timed_out, "wall_s": round(wall, 2),
            "peak_rss_mib": round(rss, 1), "rss_source": source, "stderr_tail": tail or None}


def _test_photo(size: int, folder: Path) -> Path:
    from ugtsr.errors import require

    cv2 = require("cv2", extra="runtime", purpose="writing the test image")
    data = require("skimage.data", extra="train", purpose="the test photo")
    img = data.astronaut()[..., ::-1]  # RGB -> BGR for cv2
    img = cv2.resize(np.ascontiguousarray(img), (size, size), interpolation=cv2.INTER_CUBIC)
    path = folder / f"astronaut_{size}.png"
    if not cv2.imwrite(str(path), img):
        raise UGTSRError(f"{path}: cannot write the test image")
    return path


def _peak_memory(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    model = args.onnx or args.checkpoint or args.engine
    if not model:
        raise ConfigError("--peak-memory needs a model: --onnx, --checkpoint, --engine or --preset")
    photo = _test_photo(args.peak_size, folder)
    threads = ["--threads", str(args.threads)] if args.threads else []
    load_only = ("import sys; from runtime import Upscaler; "
                 "u = Upscaler(sys.argv[1], backend=sys.argv[2], tile=0); u.close()")
    rows = [{"case": "open model only", "tile": None,
             **peak_rss_of(["-c", load_only, model, args.peak_backend], timeout=600)}]
    for tile in [0, *args.peak_tile]:
        out_dir = folder / f"out_tile{tile}"
        cmd = ["-m", "runtime.infer", str(photo), "-o", str(out_dir), "--model", model,
               "--backend", args.peak_backend, "--tile", str(tile), "--max-pixels", "0", "--quiet", *threads]
        res = peak_rss_of(cmd, timeout=1800)
        outputs = list(out_dir.glob("*")) if out_dir.is_dir() else []
        rows.append({"case": "whole image" if tile == 0 else f"tile {tile}", "tile": tile, **res,
                     "output_written": bool(outputs)})
    for r in rows:
        r.update(lr_size=f"{args.peak_size}x{args.peak_size}", model=str(model), backend=args.peak_backend)
    return rows


# ------------------------------------------------------------------------------------------------ run
def _model_name(args: argparse.Namespace) -> str:
    if args.preset:
        return args.preset
    for p in (args.checkpoint, args.onnx, args.onnx_fp16, args.engine):
        if p:
            return Path(p).stem
    return "model"


def _run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    if args.peers:
        args.repeats = args.repeats or 7
        args.warmup = 1 if args.warmup is None else args.warmup
        if args.repeats < 1 or args.warmup < 0:
            raise ConfigError("--repeats must be >= 1 and --warmup >= 0")
        return latency_peers.run_peers(args, argv)
    if not any((args.preset, args.checkpoint, args.onnx, args.onnx_fp16, args.engine)):
        raise ConfigError("give a model: --preset NAME, --checkpoint, --onnx, --onnx-fp16 or --engine")
    try:
        import torch

        gpu = torch.cuda.is_available()
        if args.threads:
            torch.set_num_threads(args.threads)
    except ImportError:
        gpu = False
    args.repeats = args.repeats or (20 if gpu else 5)
    args.warmup = 3 if args.warmup is None else args.warmup
    if args.repeats < 1 or args.warmup < 1:
        raise ConfigError("--repeats and --warmup must be >= 1 (the first call is the output check)")
    sizes = [_parse_size(s) for s in args.sizes]
    name = _model_name(args)
    with tempfile.TemporaryDirectory(prefix="ugtsr_latency_") as tmp:
        folder = Path(tmp)
        model_info: dict[str, Any] = {"random_init": False}
        if args.preset:
            model_info = _prepare_preset(args, folder)
        model_info.update(checkpoint=args.checkpoint if not args.preset else None,
                          onnx=args.onnx if not args.preset else None,
                          onnx_fp16=args.onnx_fp16 if not args.preset else None, engine=args.engine)
        if args.peak_memory:
            return _finish_peak(args, argv, name, model_info, _peak_memory(args, folder))
        rows: list[dict[str, Any]] = []
        opened: dict[str, tuple[_Case, Any]] = {}
        try:
            for case in _cases(args):
                if case.open is None:
                    rows.append({"backend": case.label, "source": case.source, "status": "skipped",
                                 "reason": case.skip})
                    continue
                backend, skipped = _open(case)
                if skipped is not None:
                    rows.append(skipped)
                else:
                    opened[case.label] = (case, backend)
            rows = _time_backends(opened, sizes, args) + rows
        finally:
            for _, backend in opened.values():
                backend.close()
    tag = args.tag or f"{name}_{'cuda' if gpu else 'cpu'}"
    paths = C.result_paths(args.out_dir, "latency", tag)
    notes = ["time: numpy float32 input -> numpy outputs through runtime.backends (host-device copies included; "
             "image decode, padding and clamping not included); median of the timed calls after warm-up",
             "output_mp_per_s = output megapixels / median time"]
    if model_info.get("random_init"):
        notes.insert(0, f"random-weight {args.preset} model: architecture latency, not a trained model")
    record = {**C.record_header("latency", "benchmarks.latency", argv), "mode": "latency", "model": model_info,
              "settings": {"sizes": [f"{h}x{w}" for h, w in sizes], "repeats": args.repeats, "warmup": args.warmup,
                           "threads": args.threads, "seed": args.seed},
              "rows": rows, "notes": notes}
    C.write_json(paths["json"], record)
    C.write_csv(paths["csv"], [{k: v for k, v in r.items() if k not in ("times_ms", "providers")} for r in rows])

    measured = [r for r in rows if r.get("status") == "measured"]
    head = f"Latency of {name}" + (" (RANDOM WEIGHTS: architecture latency)" if model_info.get("random_init") else "")
    print(f"{head}; median of {args.repeats} calls after {args.warmup} warm-up; numpy in -> numpy out")
    print(C.format_table(measured, [("backend", "backend"), ("lr_size", "LR"), ("output_size", "output"),
                                    ("median_ms", "median ms"), ("min_ms", "min ms"),
                                    ("output_mp_per_s", "out MP/s")],
                         {"median_ms": ".1f", "min_ms": ".1f", "output_mp_per_s": ".3f"}))
    other = [r for r in rows if r.get("status") != "measured"]
    if other:
        print()
        print(C.format_table(other, ["backend", "status", ("lr_size", "LR"), "reason"]))
    print(f"wrote {paths['json']}")
    return 0


def _finish_peak(args: argparse.Namespace, argv: Sequence[str] | None, name: str, model_info: dict[str, Any],
                 rows: list[dict[str, Any]]) -> int:
    tag = args.tag or f"{name}_peakmem_{args.peak_size}"
    paths = C.result_paths(args.out_dir, "latency", tag)
    record = {**C.record_header("latency", "benchmarks.latency", argv), "mode": "peak_memory", "model": model_info,
              "settings": {"peak_size": args.peak_size, "peak_tile": args.peak_tile, "backend": args.peak_backend,
                           "threads": args.threads},
              "rows": rows,
              "notes": ["peak RSS (VmHWM at exit) of a fresh python -m runtime.infer process per case; "
                        "'open model only' is the baseline of the interpreter, libraries and weights",
                        "GPU memory is not included in RSS"]}
    C.write_json(paths["json"], record)
    C.write_csv(paths["csv"], rows)
    print(f"Peak memory of runtime.infer on a {args.peak_size}x{args.peak_size} LR image ({name}, backend "
          f"{args.peak_backend})" + (" (RANDOM WEIGHTS)" if model_info.get("random_init") else ""))
    print(C.format_table(rows, ["case", "returncode", ("peak_rss_mib", "peak RSS MiB"), ("wall_s", "wall s"),
                                "output_written"], {"peak_rss_mib": ".0f", "wall_s": ".1f"}))
    failed = [r for r in rows if r["returncode"] != 0]
    for r in failed:
        print(f"{r['case']}: exit {r['returncode']}: {(r.get('stderr_tail') or '').splitlines()[-1:]}",
              file=sys.stderr)
    print(f"wrote {paths['json']}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    return C.run_main("latency", _parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
