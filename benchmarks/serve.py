"""Serving throughput and latency: ``python -m runtime.serve`` under 1, 4 and 16 concurrent clients.

    python -m benchmarks.serve                       # shipped model, 32x32 LR BGR uint8, a few minutes

For each server setting -- Triton's dynamic batching off (``ugtsr`` with ``max_batch_size`` 0: one
image per network call) and on (``--dynamic-batching``: Triton groups same-shape requests, up to
``--max-request-batch``, waiting at most ``--max-queue-delay-us``) -- the benchmark starts a real
Triton server (PyTriton, in the serve venv: ``$UGTSR_SERVE_PYTHON`` or ``.venv-serve/bin/python``),
checks one answer against the local :class:`runtime.Upscaler` (within 1 LSB), and then, for each
concurrency, runs that many client threads (one gRPC ``RemoteUpscaler`` each, requests back to back)
for ``--seconds`` per window, ``--repeats`` windows after a warm-up window; both servers stay up and
their windows alternate, so a change in the machine's load affects both settings alike. It reports requests/s
(median over the windows) and the p50 / p99 latency over all requests of the windows.

The clients run on the same machine as the server, so on a small CPU they take cores from it; the
numbers are this machine's, with its load average recorded in the result file.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from runtime.serve_process import ServeProcess
from ugtsr.errors import UGTSRError

from ._common import (
    format_table,
    markdown_table,
    record_header,
    result_paths,
    run_main,
    write_csv,
    write_json,
    write_text,
)

__all__ = ["main"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def _serve_python(explicit: str | None) -> str:
    for candidate in (explicit, os.environ.get("UGTSR_SERVE_PYTHON"), str(REPO_ROOT / ".venv-serve" / "bin" / "python")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise UGTSRError("no serve environment: set UGTSR_SERVE_PYTHON or pass --serve-python (build it with "
                     "/usr/bin/python3.11 -m venv .venv-serve && .venv-serve/bin/pip install -e '.[serve]')")


def _server(python: str, model: str | None, extra: list[str], log: Path) -> ServeProcess:
    return ServeProcess(python, [*([model] if model else []), *extra], log=log, ready_timeout=300)


def _window(address: str, image: np.ndarray, clients: int, seconds: float) -> tuple[int, float, list[float]]:
    """``clients`` threads sending back to back for ``seconds``: (completed, elapsed s, latencies s)."""
    from runtime.remote import RemoteUpscaler

    upscalers = [RemoteUpscaler(address, protocol="grpc") for _ in range(clients)]
    for up in upscalers:  # connection set-up and the model-config lookup outside the window
        up.upscale(image)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    start_gate = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def worker(i: int) -> None:
        start_gate.wait()
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at[0]:
                    return
                upscalers[i].upscale(image)
                latencies[i].append(time.perf_counter() - t0)
        except BaseException as exc:  # reported after the window
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    t_start = time.perf_counter()
    stop_at[0] = t_start + seconds
    start_gate.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t_start
    for up in upscalers:
        up.close()
    if errors:
        raise UGTSRError(f"a client failed: {errors[0]}")
    flat = [x for per in latencies for x in per]
    return len(flat), elapsed, flat


def _counts(metrics_port: int) -> tuple[float, float]:
    """Triton's ``(requests succeeded, model executions)`` for ``ugtsr``: their ratio is the mean batch."""
    import urllib.request

    with urllib.request.urlopen(f"http://localhost:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        for key in ("nv_inference_request_success", "nv_inference_exec_count"):
            if line.startswith(key + "{") and 'model="ugtsr"' in line:
                values[key] = float(line.rsplit(" ", 1)[1])
    return values.get("nv_inference_request_success", 0.0), values.get("nv_inference_exec_count", 0.0)


def _run(args: argparse.Namespace, argv: Any) -> int:
    from runtime import Upscaler
    from runtime.upscaler import default_model_path

    python = _serve_python(args.serve_python)
    load_at_start = os.getloadavg()
    probe = subprocess.run([python, "-c", "import json, importlib.metadata as m, sys; print(json.dumps({'python': "
                            "sys.version.split()[0], **{p: m.version(p) for p in ('nvidia-pytriton', 'numpy', "
                            "'onnxruntime', 'opencv-python-headless', 'tritonclient')}}))"],
                           capture_output=True, text=True, timeout=120)
    server_versions = json.loads(probe.stdout) if probe.returncode == 0 else {"error": probe.stderr.strip()[-300:]}
    model = str(args.model or default_model_path())
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(args.size, args.size, 3), dtype=np.uint8)
    with Upscaler(model, tile=0) as local:
        reference = local.upscale(image)
    common = ["--tile", "0", "--instances", str(args.instances)]
    if args.threads:
        common += ["--threads", str(args.threads)]
    settings = [("off", common),
                ("on", [*common, "--dynamic-batching", "--max-request-batch", str(args.max_request_batch),
                        "--max-queue-delay-us", str(args.max_queue_delay_us)])]
    paths = result_paths(args.out_dir, "serve", args.tag)
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    servers: dict[str, ServeProcess] = {}
    logs = {b: paths["json"].with_name(f".serve_{args.tag}_{b}.log") for b, _ in settings}
    try:
        # both servers stay up and the windows alternate between them, so a change in the machine's
        # load hits both settings alike
        for batching, extra in settings:
            servers[batching] = _server(python, args.model, extra, logs[batching])
        from runtime.remote import RemoteUpscaler

        address = {b: f"localhost:{srv.grpc}" for b, srv in servers.items()}
        diff = {}
        for batching in servers:
            with RemoteUpscaler(address[batching]) as probe:
                got = probe.upscale(image)
            diff[batching] = int(np.abs(got.astype(np.int64) - reference.astype(np.int64)).max())
            if diff[batching] > 1:
                raise UGTSRError(f"dynamic batching {batching}: the server's output differs from the local "
                                 f"Upscaler by {diff[batching]} LSB")
        for clients in args.clients:
            rates: dict[str, list[float]] = {b: [] for b in servers}
            lat: dict[str, list[float]] = {b: [] for b in servers}
            counts0 = {}
            for batching in servers:
                _window(address[batching], image, clients, args.seconds)  # warm-up window
                counts0[batching] = _counts(servers[batching].metrics)
            for _ in range(args.repeats):
                for batching in servers:
                    done, elapsed, latencies = _window(address[batching], image, clients, args.seconds)
                    rates[batching].append(done / elapsed)
                    lat[batching] += latencies
            for batching, srv in servers.items():
                (req0, exec0), (req1, exec1) = counts0[batching], _counts(srv.metrics)
                lat_ms = np.array(lat[batching]) * 1000.0
                row = {"dynamic_batching": batching, "clients": clients, "requests": len(lat_ms),
                       "requests_per_s": round(statistics.median(rates[batching]), 2),
                       "requests_per_s_windows": [round(r, 2) for r in rates[batching]],
                       "p50_ms": round(float(np.percentile(lat_ms, 50)), 1),
                       "p99_ms": round(float(np.percentile(lat_ms, 99)), 1),
                       "mean_batch": round((req1 - req0) / (exec1 - exec0), 2) if exec1 > exec0 else None,
                       "max_abs_diff_vs_local": diff[batching]}
                rows.append(row)
                print(f"batching {batching:3}  clients {clients:2d}: {row['requests_per_s']:7.2f} req/s  "
                      f"p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  mean batch {row['mean_batch']}  "
                      f"({len(lat_ms)} requests)", flush=True)
    finally:
        for srv in servers.values():
            srv.stop()
        for log in logs.values():
            log.unlink(missing_ok=True)
    rows.sort(key=lambda r: (r["dynamic_batching"] != "off", r["clients"]))
    cols = [("dynamic_batching", "dynamic batching"), "clients", ("requests_per_s", "req/s"),
            ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("mean_batch", "mean batch"), "requests"]
    print(format_table(rows, cols))
    record = record_header(
        "serve", "benchmarks.serve", argv, model=model, image=f"{args.size}x{args.size} BGR uint8 (random)",
        server={"instances": args.instances, "tile": 0, "threads": args.threads,
                "max_request_batch": args.max_request_batch, "max_queue_delay_us": args.max_queue_delay_us},
        window_seconds=args.seconds, repeats=args.repeats, protocol="grpc", server_versions=server_versions,
        load_average_at_start=[round(v, 2) for v in load_at_start],
        note="clients and server share this machine; req/s = median over the windows, p50/p99 over all "
             "requests of the windows; the windows of the two settings alternate (both servers up, one idle while "
             "the other is measured); one warm-up window per row is not counted; mean batch = Triton's "
             "nv_inference_request_success / nv_inference_exec_count for ugtsr over the windows")
    record["rows"] = rows
    write_json(paths["json"], record)
    write_csv(paths["csv"], [{k: v for k, v in r.items() if k != "requests_per_s_windows"} for r in rows])
    write_text(paths["md"], f"`{record['command']}`\n\n" + markdown_table(rows, cols) + "\n")
    print(f"wrote {paths['json']}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model file (default: the shipped model)")
    p.add_argument("--size", type=int, default=32, help="LR image side in pixels (default 32)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrent clients (default 1 4 16)")
    p.add_argument("--seconds", type=float, default=5.0, help="length of one measuring window (default 5)")
    p.add_argument("--repeats", type=int, default=3, help="windows per row (default 3)")
    p.add_argument("--instances", type=int, default=1, help="model instances on the server (default 1)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per instance (default: ORT's)")
    p.add_argument("--max-request-batch", type=int, default=8, help="dynamic batching: largest batch (default 8)")
    p.add_argument("--max-queue-delay-us", type=int, default=2000, help="dynamic batching: queue delay (default 2000)")
    p.add_argument("--serve-python", default=None, help="python of the serve venv (default $UGTSR_SERVE_PYTHON)")
    p.add_argument("--tag", default="cpu_32px")
    p.add_argument("--out-dir", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_main("serve", _parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
