"""Matching time versus feature size and codebook size (the paper's Fig. 8).

    python -m benchmarks.matching --device cpu      # grids 8x8 .. 64x64, 3 repeats: ~2 min on 2 cores
    python -m benchmarks.matching --device cuda     # the same grids, 20 repeats

Methods, all on one pre-quantization feature ``z`` ``(1, d, h, w)`` and one codebook ``(K, d)``
(defaults K = 1024, d = 512, batch 1, float32, eval mode, ``torch.no_grad``, no ``torch.compile``):

* ``nearest`` -- FeMaSR's nearest code (eq. 4): :class:`ugtsr.matching.NearestMatcher`.
* ``topk_search`` -- only the k nearest codes (eq. 6, :func:`ugtsr.codebook.knn_search`), to show
  what the search costs inside ``topk``.
* ``topk`` -- the whole UGTSR matcher :class:`ugtsr.matching.TopKMatcher` (k = 3): search, Restormer
  fusion (eq. 7) and re-quantization (eq. 8).
* ``codeformer`` -- :class:`ugtsr.matching.CodeFormerMatcher`: 9 pre-norm layers, dim 512, 8 heads,
  FFN 1024, a learned position embedding sized to the token grid (rebuilt for each grid, so no
  resize is timed), logits over K, argmax, lookup.
* on CUDA, when the module exists, the fused Triton search ``ugtsr.kernels.fused_topk`` next to
  ``topk_search`` (with the index agreement of the two).

Weights are random (timing does not depend on training); the zero-initialised output projection of
the Top-k fusion and CodeFormer's zero position table are re-drawn so no path is an exact identity.
Each number is the median of ``--repeats`` calls after ``--warmup`` calls, rotating among
``--input-sets`` different random ``z``; the methods of one size are timed interleaved (a round
calls each once), so a change of machine load hits them alike; on CUDA every call is timed with CUDA
events. On the CPU torch runs one thread unless ``--threads`` says otherwise (steady numbers on a
shared machine). A log-log
least-squares slope of time against the token count N = h*w is reported per method (1: linear,
2: quadratic), over all sizes and over the larger half, with the CodeFormer / Top-k time ratio per
size (both measured in the same run). The second sweep varies K at a fixed grid.

Writes ``benchmarks/results/matching_<device>.json`` / ``.csv`` / ``.png``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from ugtsr.errors import ConfigError, UGTSRError

from . import _common as C

__all__ = ["main", "METHODS", "build_matcher_for", "run_size_sweep", "run_codebook_sweep"]

logger = logging.getLogger(__name__)

METHODS = ("nearest", "topk_search", "topk", "codeformer")
_DEFAULT_GRIDS = {"cpu": (8, 16, 24, 32, 40, 48, 56, 64), "cuda": (8, 16, 24, 32, 40, 48, 56, 64)}
_DEFAULT_REPEATS = {"cpu": 3, "cuda": 20}
_DEFAULT_WARMUP = {"cpu": 1, "cuda": 5}
_DEFAULT_K_GRID = {"cpu": 32, "cuda": 32}
_FUSED_NAMES = ("fused_topk",)


def _parse_grid(text: str) -> tuple[int, int]:
    h, sep, w = text.lower().partition("x")
    try:
        hh = int(h)
        ww = int(w) if sep else hh
    except ValueError:
        raise argparse.ArgumentTypeError(f"grid must be N or HxW, got {text!r}") from None
    if hh < 1 or ww < 1:
        raise argparse.ArgumentTypeError(f"grid sides must be >= 1, got {text!r}")
    return hh, ww


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.matching",
                                description="Matching time vs feature size and codebook size (Fig. 8).")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--grids", nargs="+", type=_parse_grid, default=None, metavar="N|HxW",
                   help="token grids of the size sweep (default 8x8 .. 64x64 in steps of 8)")
    p.add_argument("--codebook-size", type=int, default=1024, help="K of the size sweep (default 1024)")
    p.add_argument("--dim", type=int, default=512, help="code dimension d (default 512)")
    p.add_argument("--codebook-sizes", nargs="*", type=int, default=[256, 512, 1024, 2048, 4096],
                   help="K values of the codebook sweep (empty: no codebook sweep)")
    p.add_argument("--k-sweep-grid", type=_parse_grid, default=None, metavar="N|HxW",
                   help="token grid of the codebook sweep (default 32x32)")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--fusion-heads", type=int, default=8)
    p.add_argument("--fusion-ffn-factor", type=float, default=2.66)
    p.add_argument("--cf-dim", type=int, default=512, help="CodeFormer model dim (default 512)")
    p.add_argument("--cf-layers", type=int, default=9)
    p.add_argument("--cf-heads", type=int, default=8)
    p.add_argument("--cf-ffn", type=int, default=1024)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=None, help="timed calls per case (default cpu 3, cuda 20)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (default cpu 1, cuda 5)")
    p.add_argument("--input-sets", type=int, default=3, help="distinct random z rotated through (default 3)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default on cpu: 1, steady on a shared machine; 0: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default=None, help="result file tag (default: the device)")
    p.add_argument("--out-dir", default=None, help="folder for the results (default benchmarks/results)")
    p.add_argument("--no-plot", action="store_true")
    return p


# ------------------------------------------------------------------------------------------- models
def _randomize(module: Any, torch: Any) -> None:
    """Re-draw the parameters that start at exactly zero, so no timed path is an identity."""
    from ugtsr.matching import CodeFormerMatcher, TopKMatcher

    with torch.no_grad():
        if isinstance(module, TopKMatcher):
            torch.nn.init.normal_(module.fusion.out.weight, std=0.02)
            torch.nn.init.normal_(module.fusion.out.bias, std=0.02)
        if isinstance(module, CodeFormerMatcher):
            torch.nn.init.normal_(module.pos, std=0.02)


def build_matcher_for(method: str, args: argparse.Namespace, *, grid: tuple[int, int], codebook_size: int,
                      device: str) -> Callable[[Any, Any], Any]:
    """``fn(z, codebook)`` for one method, with random weights, eval mode, on ``device``."""
    import torch

    from ugtsr import codebook as cb
    from ugtsr.matching import CodeFormerMatcher, NearestMatcher, TopKMatcher

    if method == "topk_search":
        k = args.top_k

        def search(z: Any, codebook: Any) -> Any:
            return cb.knn_search(cb.to_rows(z), codebook, k)

        return search
    if method == "nearest":
        module = NearestMatcher()
    elif method == "topk":
        module = TopKMatcher(args.dim, k=args.top_k, heads=args.fusion_heads, ffn_factor=args.fusion_ffn_factor)
    elif method == "codeformer":
        module = CodeFormerMatcher(args.dim, model_dim=args.cf_dim, layers=args.cf_layers, heads=args.cf_heads,
                                   ffn=args.cf_ffn, codebook_size=codebook_size, grid=grid)
    else:  # argparse restricts the choices
        raise ConfigError(f"unknown method {method!r}")
    _randomize(module, torch)
    module = module.to(device).eval()
    return module


def _param_count(fn: Any) -> int:
    params = getattr(fn, "parameters", None)
    return sum(p.numel() for p in params()) if callable(params) else 0


def _inputs(args: argparse.Namespace, grid: tuple[int, int], device: str, gen: Any) -> list[Any]:
    import torch

    h, w = grid
    return [torch.randn(args.batch, args.dim, h, w, generator=gen).to(device) for _ in range(max(1, args.input_sets))]


def _codebook(k: int, dim: int, device: str, gen: Any) -> Any:
    import torch

    return torch.randn(k, dim, generator=gen).to(device)


def _time_methods(fns: dict[str, Any], zs: list[Any], codebook: Any, args: argparse.Namespace) -> dict[str, C.Timing]:
    import torch

    calls = {m: (lambda z, fn=fn: fn(z, codebook)) for m, fn in fns.items()}
    with torch.no_grad():
        return C.measure_interleaved(calls, zs, repeats=args.repeats, warmup=args.warmup, device=args.device)


def _row(sweep: str, grid: tuple[int, int], k: int, method: str, timing: C.Timing, params: int) -> dict[str, Any]:
    return {
        "sweep": sweep, "grid": f"{grid[0]}x{grid[1]}", "tokens": grid[0] * grid[1], "codebook_size": k,
        "method": method, "median_ms": round(timing.median_ms, 4), "min_ms": round(timing.min_ms, 4),
        "max_ms": round(timing.max_ms, 4), "repeats": timing.repeats, "warmup": timing.warmup,
        "timer": timing.method, "parameters": params, "times_ms": timing.times_ms,
    }


def run_size_sweep(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Time every method at every grid with K = ``--codebook-size`` (methods interleaved per grid)."""
    import torch

    gen = torch.Generator().manual_seed(args.seed)
    codebook = _codebook(args.codebook_size, args.dim, args.device, gen)
    fixed = {m: build_matcher_for(m, args, grid=(1, 1), codebook_size=args.codebook_size, device=args.device)
             for m in args.methods if m != "codeformer"}
    rows = []
    for grid in args.grids:
        zs = _inputs(args, grid, args.device, gen)
        torch.manual_seed(args.seed)
        fns = {m: fixed.get(m) or build_matcher_for(m, args, grid=grid, codebook_size=args.codebook_size,
                                                    device=args.device) for m in args.methods}
        timings = _time_methods(fns, zs, codebook, args)
        for m in args.methods:
            rows.append(_row("tokens", grid, args.codebook_size, m, timings[m], _param_count(fns[m])))
        logger.info("grid %dx%d: %s", *grid, {m: round(t.median_ms, 3) for m, t in timings.items()})
        del fns
    return rows


def run_codebook_sweep(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Time every method at ``--k-sweep-grid`` for every K in ``--codebook-sizes`` (interleaved per K)."""
    import torch

    gen = torch.Generator().manual_seed(args.seed + 1)
    grid = args.k_sweep_grid
    zs = _inputs(args, grid, args.device, gen)
    rows = []
    for k in args.codebook_sizes:
        codebook = _codebook(k, args.dim, args.device, gen)
        methods = [m for m in args.methods if not (m in ("topk", "topk_search") and args.top_k > k)]
        torch.manual_seed(args.seed)
        fns = {m: build_matcher_for(m, args, grid=grid, codebook_size=k, device=args.device) for m in methods}
        timings = _time_methods(fns, zs, codebook, args)
        for m in methods:
            rows.append(_row("codebook", grid, k, m, timings[m], _param_count(fns[m])))
        del fns
    return rows


def _fused_kernel(args: argparse.Namespace) -> dict[str, Any]:
    """Time ``ugtsr.kernels.fused_topk`` beside ``knn_search`` on CUDA, when the module exists."""
    if args.device != "cuda":
        return {"status": "skipped", "reason": "the fused Triton kernel is timed on --device cuda only"}
    try:
        module = importlib.import_module("ugtsr.kernels.fused_topk")
    except ImportError as exc:
        return {"status": "skipped", "reason": f"ugtsr.kernels.fused_topk is not importable ({exc})"}
    fn = next((getattr(module, n) for n in _FUSED_NAMES if callable(getattr(module, n, None))), None)
    if fn is None:
        return {"status": "skipped", "reason": f"ugtsr.kernels.fused_topk has none of {', '.join(_FUSED_NAMES)}"}
    import torch

    from ugtsr import codebook as cb

    gen = torch.Generator().manual_seed(args.seed + 2)
    codebook = _codebook(args.codebook_size, args.dim, args.device, gen)
    rows = []
    try:
        for grid in args.grids:
            zs = [cb.to_rows(z).contiguous() for z in _inputs(args, grid, args.device, gen)]
            with torch.no_grad():
                ref = cb.knn_search(zs[0], codebook, args.top_k)
                got = fn(zs[0], codebook, args.top_k)
                got = getattr(got, "indices", got)
                if isinstance(got, tuple):
                    got = got[-1] if got[0].dtype.is_floating_point else got[0]
                top1 = float((got[:, 0].long() == ref[:, 0]).float().mean())
                same_set = float((got.long().sort(dim=1).values == ref.sort(dim=1).values).all(dim=1).float().mean())
                t_ref = C.measure(lambda r: cb.knn_search(r, codebook, args.top_k), zs, repeats=args.repeats,
                                  warmup=args.warmup, device=args.device)
                t_fused = C.measure(lambda r: fn(r, codebook, k=args.top_k), zs, repeats=args.repeats,
                                    warmup=args.warmup, device=args.device)
            rows.append({"grid": f"{grid[0]}x{grid[1]}", "tokens": grid[0] * grid[1],
                         "knn_search_ms": round(t_ref.median_ms, 4), "fused_topk_ms": round(t_fused.median_ms, 4),
                         "speedup": round(t_ref.median_ms / t_fused.median_ms, 3),
                         "top1_index_agreement": round(top1, 6), "topk_set_agreement": round(same_set, 6)})
    except Exception as exc:  # a kernel still being written: report, do not fail the whole benchmark
        return {"status": "failed", "function": fn.__name__, "reason": f"{type(exc).__name__}: {exc}"[:300],
                "rows": rows}
    return {"status": "measured", "function": f"{module.__name__}.{fn.__name__}", "rows": rows}


# ------------------------------------------------------------------------------------------ analysis
def _slopes(rows: list[dict[str, Any]], x_key: str, methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for m in methods:
        pts = sorted((r[x_key], r["median_ms"]) for r in rows if r["method"] == m)
        if not pts:
            continue
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        # the larger half, at least two points (a slope needs two); one point gives no slope (None)
        half = min(len(pts), max(2, (len(pts) + 1) // 2))
        out[m] = {"all": C.finite_or_none(C.loglog_slope(xs, ys), 3),
                  "upper_half": C.finite_or_none(C.loglog_slope(xs[-half:], ys[-half:]), 3),
                  "upper_half_from": xs[-half] if len(pts) >= 2 else None}
    return out


def _ratios(rows: list[dict[str, Any]], x_key: str) -> list[dict[str, Any]]:
    by = {(r[x_key], r["method"]): r["median_ms"] for r in rows}
    out = []
    for x in sorted({r[x_key] for r in rows}):
        cf, tk, nn = by.get((x, "codeformer")), by.get((x, "topk")), by.get((x, "nearest"))
        out.append({x_key: x,  # 4 significant digits: a ratio far below 1 keeps its precision
                    "codeformer_over_topk": float(f"{cf / tk:.4g}") if cf and tk else None,
                    "codeformer_over_nearest": float(f"{cf / nn:.4g}") if cf and nn else None,
                    "topk_over_nearest": float(f"{tk / nn:.4g}") if tk and nn else None})
    return out


def _pivot(rows: list[dict[str, Any]], x_key: str, methods: Sequence[str]) -> list[dict[str, Any]]:
    table: dict[Any, dict[str, Any]] = {}
    for r in rows:
        entry = table.setdefault(r[x_key], {x_key: r[x_key], "grid": r["grid"]})
        entry[r["method"]] = r["median_ms"]
    return [table[x] for x in sorted(table)]


def _draw(record: dict[str, Any], methods: Sequence[str]) -> Callable[[Any], None]:
    def draw(plt: Any) -> None:
        sweeps = [("size_sweep", "tokens", "tokens N = h*w"), ("codebook_sweep", "codebook_size", "codebook size K")]
        sweeps = [s for s in sweeps if record.get(s[0], {}).get("rows")]
        fig, axes = plt.subplots(1, len(sweeps), figsize=(6 * len(sweeps), 4.5), squeeze=False)
        for ax, (key, x_key, label) in zip(axes[0], sweeps):
            rows = record[key]["rows"]
            for m in methods:
                pts = sorted((r[x_key], r["median_ms"]) for r in rows if r["method"] == m)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=m)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel("median time per call (ms)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
            fixed = (f"K={record['settings']['codebook_size']}" if key == "size_sweep"
                     else f"grid {record['codebook_sweep']['grid']}")
            ax.set_title(f"{fixed}, d={record['settings']['dim']}, {record['device']}")
        fig.tight_layout()

    return draw


def _run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UGTSRError("--device cuda: torch sees no CUDA GPU (use --device cpu)")
    dev = args.device
    if dev == "cpu" and args.threads is None:
        # one thread: on a CPU shared with other jobs, oversubscribed OpenMP threads make single calls
        # 10x slower at random; one thread is slowed by at most the share it loses
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    load_start = C.load_average()
    args.grids = args.grids or [(g, g) for g in _DEFAULT_GRIDS[dev]]
    args.k_sweep_grid = args.k_sweep_grid or (_DEFAULT_K_GRID[dev],) * 2
    args.repeats = args.repeats or _DEFAULT_REPEATS[dev]
    args.warmup = _DEFAULT_WARMUP[dev] if args.warmup is None else args.warmup
    for name in ("codebook_size", "dim", "batch", "repeats", "input_sets", "top_k"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
    if args.top_k > args.codebook_size:
        raise ConfigError(f"--top-k {args.top_k} exceeds --codebook-size {args.codebook_size}")
    if args.dim % args.fusion_heads or args.cf_dim % args.cf_heads:
        raise ConfigError("--dim must be divisible by --fusion-heads and --cf-dim by --cf-heads")
    paths = C.result_paths(args.out_dir, "matching", args.tag or dev)

    size_rows = run_size_sweep(args)
    k_rows = run_codebook_sweep(args) if args.codebook_sizes else []
    fused = _fused_kernel(args)

    header = C.record_header("matching", "benchmarks.matching", argv, device=dev,
                             torch_threads=torch.get_num_threads(), load_average_at_start=load_start)
    if dev == "cuda":
        header["cuda_settings"] = {"allow_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                                   "allow_tf32_cudnn": torch.backends.cudnn.allow_tf32,
                                   "float32_matmul_precision": torch.get_float32_matmul_precision()}
    record = {
        **header,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()
                     if k not in ("out_dir", "tag", "no_plot")},
        "size_sweep": {"codebook_size": args.codebook_size, "dim": args.dim, "rows": size_rows},
        "size_sweep_slopes_vs_tokens": _slopes(size_rows, "tokens", args.methods),
        "size_sweep_ratios": _ratios(size_rows, "tokens"),
        "codebook_sweep": {"grid": "{}x{}".format(*args.k_sweep_grid), "dim": args.dim, "rows": k_rows},
        "codebook_sweep_slopes_vs_K": _slopes(k_rows, "codebook_size", args.methods) if k_rows else {},
        "fused_kernel": fused,
        "notes": [
            "float32, eval mode, torch.no_grad, no torch.compile; random weights (timing does not depend on training)",
            "each number: median of the timed calls after warm-up; the methods are timed interleaved (one call "
            "of each per round) so load changes hit them alike; CUDA calls timed with CUDA events",
            "slopes: least-squares log(time) vs log(N); 1 = linear, 2 = quadratic; 'upper_half' uses the larger sizes",
            "codeformer: position embedding rebuilt at each grid's size (no resize timed)",
            "ratios come from numbers measured side by side in this run",
        ],
    }
    plot_path, plot_note = C.save_plot(paths["png"], _draw(record, args.methods), enabled=not args.no_plot)
    record["plot"] = str(plot_path) if plot_path else None
    if plot_note:
        record["notes"].append(plot_note)
    C.write_json(paths["json"], record)
    C.write_csv(paths["csv"], [{k: v for k, v in r.items() if k != "times_ms"} for r in size_rows + k_rows])

    methods = list(args.methods)
    print(f"Matching time (median ms, batch {args.batch}, K={args.codebook_size}, d={args.dim}, {dev}, "
          f"{args.repeats} repeats after {args.warmup} warm-up)")
    print(C.format_table(_pivot(size_rows, "tokens", methods), ["grid", "tokens", *methods],
                         {m: ".3f" for m in methods}))
    print()
    ratios = record["size_sweep_ratios"]
    print(C.format_table(ratios, ["tokens", "codeformer_over_topk", "codeformer_over_nearest", "topk_over_nearest"],
                         {k: ".2f" for k in ("codeformer_over_topk", "codeformer_over_nearest", "topk_over_nearest")}))
    print()
    slope_rows = [{"method": m, **v} for m, v in record["size_sweep_slopes_vs_tokens"].items()]
    print("log-log slope of time vs N:")
    print(C.format_table(slope_rows, ["method", "all", "upper_half", "upper_half_from"],
                         {"all": ".2f", "upper_half": ".2f"}))
    if k_rows:
        print()
        print(f"Codebook sweep at grid {record['codebook_sweep']['grid']} (median ms):")
        print(C.format_table(_pivot(k_rows, "codebook_size", methods), ["codebook_size", *methods],
                             {m: ".3f" for m in methods}))
        slope_rows = [{"method": m, **v} for m, v in record["codebook_sweep_slopes_vs_K"].items()]
        print("log-log slope of time vs K:")
        print(C.format_table(slope_rows, ["method", "all", "upper_half"], {"all": ".2f", "upper_half": ".2f"}))
    print()
    if fused["status"] == "measured":
        print(C.format_table(fused["rows"], ["grid", "knn_search_ms", "fused_topk_ms", "speedup",
                                             "top1_index_agreement", "topk_set_agreement"]))
    else:
        print(f"fused Triton kernel: {fused['status']}: {fused['reason']}")
    if plot_note:
        print(f"plot: {plot_note}")
    print(f"wrote {paths['json']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return C.run_main("matching", _parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
