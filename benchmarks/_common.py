"""Shared plumbing for the benchmark CLIs: records, timing, tables and writers.

* :func:`record_header` -- machine (CPU model, cores, GPU), versions (python, numpy, torch,
  onnxruntime, ugtsr, ...), the exact command line and the UTC time, for every result file.
* :func:`measure` -- median wall time of repeated calls after warm-up. On CUDA each call is bracketed
  by CUDA events and the device is synchronised before the times are read (device work is
  asynchronous, so host clocks alone would time the launch only); on the CPU ``time.perf_counter``.
  Inputs can rotate among several sets so repeated calls do not time a warm cache on one buffer.
* :func:`write_json`, :func:`write_csv`, :func:`write_text` -- atomic (temp file + ``os.replace``).
* :func:`save_plot` -- a PNG through matplotlib when it is importable; otherwise the plot is skipped
  and the reason returned (matplotlib is not a dependency of the toolkit).
* :func:`format_table`, :func:`markdown_table`, :func:`loglog_slope`.

Nothing heavy is imported at module load: torch, onnxruntime and matplotlib are looked up when used.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from ugtsr.errors import UGTSRError
from ugtsr.fileio import atomic_open, atomic_write_bytes

__all__ = [
    "run_main",
    "RESULTS_DIR",
    "Timing",
    "measure",
    "measure_interleaved",
    "load_average",
    "machine_info",
    "versions",
    "command_line",
    "utc_now",
    "record_header",
    "result_paths",
    "write_json",
    "write_csv",
    "write_text",
    "save_plot",
    "format_table",
    "markdown_table",
    "loglog_slope",
    "finite_or_none",
]

#: default output folder: ``benchmarks/results/`` next to this file
RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ----------------------------------------------------------------------------------------- records
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _gpus() -> list[dict[str, Any]]:
    """CUDA GPUs torch can see (name, memory, capability); empty without torch or CUDA."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        out.append({"index": i, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                    "compute_capability": f"{props.major}.{props.minor}"})
    return out


def machine_info() -> dict[str, Any]:
    """CPU model, logical cores (and those this process may use), memory, GPUs, OS, load average."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    memory_gib = None
    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_logical_cores": os.cpu_count(),
        "cpu_cores_usable": usable,
        "memory_gib": memory_gib,
        "gpus": _gpus(),
        "platform": platform.platform(),
    }
    info["load_average_1_5_15min"] = load_average()
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch_threads"] = None
    return info


def _dist_version(*names: str) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def versions() -> dict[str, str | None]:
    """Versions of python and the libraries a number can depend on (``None`` = not installed).

    Read from package metadata, so nothing is imported (onnxruntime-gpu and onnxruntime are both
    looked for).
    """
    from ugtsr import __version__ as ugtsr_version

    out: dict[str, str | None] = {
        "python": platform.python_version(),
        "ugtsr": ugtsr_version,
        "numpy": _dist_version("numpy"),
        "torch": _dist_version("torch"),
        "onnxruntime": _dist_version("onnxruntime", "onnxruntime-gpu"),
        "onnx": _dist_version("onnx"),
        "opencv": _dist_version("opencv-python-headless", "opencv-python"),
        "tensorrt": _dist_version("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
        "triton": _dist_version("triton"),
    }
    if "torch" in sys.modules:  # the CUDA runtime torch was built with, when torch is in use
        torch = sys.modules["torch"]
        out["torch_cuda"] = getattr(torch.version, "cuda", None)
    return out


def command_line(module: str, argv: Sequence[str] | None, *, executable: str | None = None) -> str:
    """The exact command, as a shell line: ``<sys.executable> -m benchmarks.<name> ARGS``.

    ``executable="python"`` gives the portable form for documents.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join([executable or sys.executable, "-m", module, *args])


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_header(benchmark: str, module: str, argv: Sequence[str] | None, **extra: Any) -> dict[str, Any]:
    """The common head of every result file."""
    return {
        "benchmark": benchmark,
        "command": command_line(module, argv),
        "utc_time": utc_now(),
        "machine": machine_info(),
        "versions": versions(),
        **extra,
    }


def result_paths(out_dir: str | os.PathLike | None, name: str, tag: str) -> dict[str, Path]:
    """``{json, csv, png, md}`` paths ``<out_dir>/<name>_<tag>.<ext>`` (default out_dir: RESULTS_DIR)."""
    base = Path(out_dir) if out_dir is not None else RESULTS_DIR
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in tag) or "default"
    stem = f"{name}_{safe}"
    return {ext: base / f"{stem}.{ext}" for ext in ("json", "csv", "png", "md")}


# ------------------------------------------------------------------------------------------- timing
@dataclass
class Timing:
    """Wall times of one measured call, in milliseconds; ``median_ms`` is the reported number."""

    median_ms: float
    min_ms: float
    max_ms: float
    repeats: int
    warmup: int
    method: str  # "cuda-events" | "perf_counter"
    times_ms: list[float] = field(default_factory=list)

    def to_dict(self, *, with_times: bool = True) -> dict[str, Any]:
        d = asdict(self)
        if not with_times:
            d.pop("times_ms")
        return d


def _is_cuda(device: Any) -> bool:
    return str(device).startswith("cuda")


def measure(
    fn: Callable[[Any], Any],
    inputs: Sequence[Any],
    *,
    repeats: int,
    warmup: int = 1,
    device: str = "cpu",
) -> Timing:
    """Median time of ``fn(inputs[i % len(inputs)])`` over ``repeats`` calls after ``warmup`` calls.

    ``device`` ``"cuda[:N]"``: every call is bracketed by ``torch.cuda.Event`` records, the device is
    synchronised before the warm-up ends and again before the times are read, so each number is the
    device time of one call including its launches. Otherwise ``time.perf_counter`` around each call
    (``fn`` must finish its work before returning, as CPU code and numpy-returning backends do).
    Rotating among several ``inputs`` keeps repeated calls from timing one cached buffer.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not inputs:
        raise ValueError("measure needs at least one input")
    n = len(inputs)
    for i in range(max(0, warmup)):
        fn(inputs[i % n])
    times: list[float] = []
    if _is_cuda(device):
        import torch

        torch.cuda.synchronize(device)
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(repeats)]
        for i, (start, end) in enumerate(events):
            start.record()
            fn(inputs[i % n])
            end.record()
        torch.cuda.synchronize(device)
        times = [start.elapsed_time(end) for start, end in events]
        method = "cuda-events"
    else:
        for i in range(repeats):
            t0 = time.perf_counter()
            fn(inputs[i % n])
            times.append((time.perf_counter() - t0) * 1e3)
        method = "perf_counter"
    return Timing(median_ms=statistics.median(times), min_ms=min(times), max_ms=max(times), repeats=repeats,
                  warmup=max(0, warmup), method=method, times_ms=[round(t, 4) for t in times])


def measure_interleaved(
    fns: Mapping[str, Callable[[Any], Any]],
    inputs: Sequence[Any],
    *,
    repeats: int,
    warmup: int = 1,
    device: str = "cpu",
) -> dict[str, Timing]:
    """Like :func:`measure` for several functions timed side by side: repeat ``r`` calls each one once.

    Interleaving spreads any change of machine load (a shared CPU) over all functions alike, so
    their ratios stay meaningful even when the absolute times drift.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not inputs:
        raise ValueError("measure_interleaved needs at least one input")
    n = len(inputs)
    for fn in fns.values():
        for i in range(max(0, warmup)):
            fn(inputs[i % n])
    times: dict[str, list[float]] = {name: [] for name in fns}
    cuda = _is_cuda(device)
    if cuda:
        import torch

        torch.cuda.synchronize(device)
        pending = []
        for i in range(repeats):
            for name, fn in fns.items():
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn(inputs[i % n])
                end.record()
                pending.append((name, start, end))
        torch.cuda.synchronize(device)
        for name, start, end in pending:
            times[name].append(start.elapsed_time(end))
    else:
        for i in range(repeats):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn(inputs[i % n])
                times[name].append((time.perf_counter() - t0) * 1e3)
    method = "cuda-events" if cuda else "perf_counter"
    return {name: Timing(median_ms=statistics.median(t), min_ms=min(t), max_ms=max(t), repeats=repeats,
                         warmup=max(0, warmup), method=method, times_ms=[round(x, 4) for x in t])
            for name, t in times.items()}


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (``None`` where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ``log y`` against ``log x`` (``None`` with fewer than two valid points).

    Slope 1: time linear in ``x``; slope 2: quadratic.
    """
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys)
           if x is not None and y is not None and x > 0 and y > 0 and math.isfinite(y)]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    if sxx == 0:
        return None
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def finite_or_none(x: float | None, digits: int = 6) -> float | None:
    """Round a float for JSON; NaN and infinities become ``None`` (JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x):
        return None
    return round(x, digits)


# ------------------------------------------------------------------------------------------- writers
def _atomic_write(path: Path, data: bytes) -> Path:
    return atomic_write_bytes(path, data)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Pretty JSON, strict (a NaN anywhere is an error: use :func:`finite_or_none`)."""
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    return _atomic_write(Path(path), text.encode("utf-8"))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return _atomic_write(Path(path), text.encode("utf-8"))


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]],
              fieldnames: Sequence[str] | None = None) -> Path:
    """Rows of dicts as CSV; columns are ``fieldnames`` or the union of keys in first-seen order."""
    rows = list(rows)
    if fieldnames is None:
        seen: dict[str, None] = {}
        for row in rows:
            for key in row:
                seen.setdefault(key, None)
        fieldnames = list(seen)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return _atomic_write(Path(path), buf.getvalue().encode("utf-8"))


def save_plot(path: str | os.PathLike, draw: Callable[[Any], None], *, enabled: bool = True) -> tuple[Path | None, str | None]:
    """Draw with ``draw(pyplot)`` and save a PNG atomically.

    Returns ``(path, None)`` when written, ``(None, reason)`` when skipped (disabled, or matplotlib
    is not installed -- it is optional).
    """
    if not enabled:
        return None, "plot disabled (--no-plot)"
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return None, "matplotlib is not installed: no plot (pip install matplotlib to get one)"
    path = Path(path)
    try:
        draw(plt)
        with atomic_open(path) as fh:
            plt.savefig(fh, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close("all")
    return path, None


# -------------------------------------------------------------------------------------------- tables
def _cell(value: Any, fmt: str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return format(value, fmt or ".4g")
    return str(value)


def _rows_as_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str | tuple[str, str]],
                  formats: Mapping[str, str] | None) -> tuple[list[str], list[list[str]]]:
    formats = formats or {}
    keys = [c if isinstance(c, str) else c[0] for c in columns]
    heads = [c if isinstance(c, str) else c[1] for c in columns]
    body = [[_cell(row.get(k), formats.get(k)) for k in keys] for row in rows]
    return heads, body


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str | tuple[str, str]],
                 formats: Mapping[str, str] | None = None) -> str:
    """A fixed-width text table; ``columns`` are keys or ``(key, header)``; ``formats`` per key."""
    heads, body = _rows_as_text(rows, columns, formats)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths)),
             "  ".join("-" * w for w in widths)]
    keys = [c if isinstance(c, str) else c[0] for c in columns]
    numeric = [all(isinstance(row.get(k), (int, float)) or row.get(k) is None for row in rows) for k in keys]
    lines += ["  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric)) for r in body]
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str | tuple[str, str]],
                   formats: Mapping[str, str] | None = None) -> str:
    """The same table as GitHub markdown."""
    heads, body = _rows_as_text(rows, columns, formats)
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join(" --- " for _ in heads) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- CLI
def run_main(name: str, parser: Any, run: Callable[[Any, Sequence[str] | None], int],
             argv: Sequence[str] | None) -> int:
    """The shared ``main()`` of the benchmarks: parse, run, a :class:`UGTSRError` becomes one line
    on stderr and exit status 1."""
    args = parser.parse_args(argv)
    try:
        return run(args, argv)
    except UGTSRError as exc:
        print(f"benchmarks.{name}: error: {exc}", file=sys.stderr)
        return 1
