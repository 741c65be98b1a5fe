"""``python -m benchmarks.batch``: images/s of ``python -m runtime.batch`` (Ray Data) against ``runtime.infer``.

One folder of ``--images`` random RGB PNGs of ``--size`` x ``--size`` pixels is upscaled with the same
model (default: the shipped one) by:

* ``infer, 1 thread`` / ``infer, 2 threads`` -- ``runtime.infer.main`` in this process
  (``--threads 1`` / ``2``);
* ``batch, N workers`` for each ``--workers`` value -- ``runtime.batch.main`` on a local Ray cluster
  started once (``ray.init(address="local")``, all cores), actors of 1 CPU each, 1 ONNX Runtime
  thread per actor.

Every run is a whole job with ``--overwrite``: model loading and, for the batch runs, starting the
actor pool are inside the time (Ray's cluster start is not; it is measured once and reported apart).
The configurations are timed side by side, interleaved (one run of each per round, ``--repeats``
rounds after one warm-up round), so a change of machine load hits all alike; the table shows medians.
Outputs of every configuration are checked to be byte-identical to ``infer, 1 thread``'s.

Writes ``benchmarks/results/batch_<tag>.{json,csv,md}`` (default tag ``cpu``).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ugtsr.errors import UGTSRError, require

from . import _common as C

__all__ = ["main", "run"]


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.batch", description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=48, help="number of images (default 48)")
    p.add_argument("--size", type=int, default=64, help="side of each square input in pixels (default 64)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="actor counts (default 1 2)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds after the warm-up (default 3)")
    p.add_argument("--model", default=None, help="model file (default: the shipped model)")
    p.add_argument("--tag", default="cpu", help="result file tag (default cpu)")
    p.add_argument("--out-dir", default=None, help="results folder (default benchmarks/results)")
    return p


def _make_images(folder: Path, n: int, size: int) -> None:
    from runtime.imageio import write_image

    rng = np.random.default_rng(0)
    for i in range(n):
        write_image(folder / f"img{i:03d}.png", rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8))


def _job(fn, inputs: str, out: Path, extra: Sequence[str]):
    argv = [inputs, "-o", str(out), "--overwrite", "--quiet", *extra]

    def call(_: Any) -> None:
        rc = fn(argv)
        if rc != 0:
            raise UGTSRError(f"{fn.__module__} {' '.join(argv)} exited with {rc}")

    return call


def run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    ray = require("ray", extra="batch", purpose="benchmarks.batch")
    from runtime.batch import main as batch_main
    from runtime.infer import main as infer_main

    model = ["--model", args.model] if args.model else []
    header = C.record_header("batch", "benchmarks.batch", argv, images=args.images, size=args.size)
    header["note"] = ("measured on a machine shared with other engineers' test runs at the same time: "
                      "absolute numbers move with their load; the configurations are interleaved so the "
                      "ratios are comparable")
    with tempfile.TemporaryDirectory(prefix="ugtsr-bench-batch-") as tmp:
        root = Path(tmp)
        _make_images(root / "in", args.images, args.size)
        t0 = time.perf_counter()
        ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        ray_start_s = time.perf_counter() - t0
        try:
            fns = {"infer, 1 thread": _job(infer_main, str(root / "in"), root / "infer1", ["--threads", "1", *model]),
                   "infer, 2 threads": _job(infer_main, str(root / "in"), root / "infer2",
                                            ["--threads", "2", *model])}
            for w in args.workers:
                fns[f"batch, {w} worker{'s' if w > 1 else ''}"] = _job(
                    batch_main, str(root / "in"), root / f"batch{w}",
                    ["--ray", "auto", "--workers", str(w), "--cpus-per-worker", "1", "--threads", "1", *model])
            load_before = C.load_average()
            timings = C.measure_interleaved(fns, [None], repeats=args.repeats, warmup=1)
            load_after = C.load_average()
            resources = ray.cluster_resources()
        finally:
            ray.shutdown()
        reference = {p.name: p.read_bytes() for p in (root / "infer1").glob("*.png")}
        identical = {}
        for name in fns:
            folder = root / {"infer, 1 thread": "infer1", "infer, 2 threads": "infer2"}.get(
                name, f"batch{name.split(', ')[1].split()[0]}")
            identical[name] = {p.name: p.read_bytes() for p in folder.glob("*.png")} == reference
    base = timings["infer, 1 thread"].median_ms
    rows = []
    for name, t in timings.items():
        rows.append({"configuration": name, "median_s": t.median_ms / 1000, "min_s": t.min_ms / 1000,
                     "max_s": t.max_ms / 1000, "images_per_s": args.images / (t.median_ms / 1000),
                     "speedup_vs_infer_1_thread": base / t.median_ms, "identical_to_infer": identical[name]})
    record = {**header, "ray_version": ray.__version__, "ray_cluster_start_s": round(ray_start_s, 2),
              "ray_cluster_resources": {k: v for k, v in resources.items() if k in ("CPU", "GPU", "memory")},
              "load_average_before_after": [load_before, load_after],
              "rows": rows, "timings": {k: v.to_dict() for k, v in timings.items()}}
    columns = ["configuration", ("images_per_s", "images/s"), ("median_s", "median s"), ("min_s", "min s"),
               ("max_s", "max s"), ("speedup_vs_infer_1_thread", "vs infer 1 thread"),
               ("identical_to_infer", "same bytes")]
    formats = {"images_per_s": ".2f", "median_s": ".2f", "min_s": ".2f", "max_s": ".2f",
               "speedup_vs_infer_1_thread": ".2f"}
    paths = C.result_paths(args.out_dir, "batch", args.tag)
    C.write_json(paths["json"], record)
    C.write_csv(paths["csv"], rows)
    md = [f"# runtime.batch vs runtime.infer: {args.images} images of {args.size}x{args.size} px", "",
          f"Command: `{header['command']}`", "",
          f"Machine: {header['machine']['cpu_model']}, {header['machine']['cpu_logical_cores']} logical cores; "
          f"load average before/after: {load_before} / {load_after}. {header['note']}.", "",
          f"Median of {args.repeats} interleaved runs (after one warm-up round); each run is a whole job "
          f"(model load and actor start included; Ray's cluster start, {ray_start_s:.1f} s, is not).", "",
          C.markdown_table(rows, columns, formats), ""]
    C.write_text(paths["md"], "\n".join(md))
    print(C.format_table(rows, columns, formats))
    print(f"Ray cluster start: {ray_start_s:.1f} s (not included); results: {paths['json']}")
    return 0 if all(identical.values()) else 1


def main(argv: Sequence[str] | None = None) -> int:
    return C.run_main("batch", _build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
