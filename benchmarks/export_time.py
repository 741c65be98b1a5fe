"""Wall and CPU time of ``python -m export.onnx`` (with verification), before/after, in one run.

    python -m benchmarks.export_time --baseline-rev 377c7c4 --repeats 2

Each run is a fresh ``python -m export.onnx CKPT -o TMP -q`` subprocess (imports, tracing, optimisation,
verification, writing: what a user waits for). With ``--baseline-rev`` the ``export/`` package of that
git revision is extracted to a temporary folder and run the same way (with the current ``ugtsr/``, so
only the export code differs), interleaved
with the current tree (baseline, current, baseline, current, ...), so both see the same machine
load. CPU seconds (user + system of the child, ``getrusage``) are recorded next to wall seconds:
on a shared machine the wall time mostly measures the other processes, the CPU time much less so.
The current tree's runs also report the seconds of each export stage (``--json`` of
``export.onnx``: trace = ``torch.export`` + translation to ONNX, optimize = onnxscript's optimizer,
verify = ONNX Runtime vs PyTorch, write). Results: ``benchmarks/results/export_time.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from ugtsr.errors import UGTSRError

from ._common import RESULTS_DIR, load_average, record_header, run_main, write_json

__all__ = ["main"]

_REPO = Path(__file__).resolve().parents[1]


def _extract_revision(rev: str, dest: Path) -> None:
    """``export/`` of git revision ``rev`` into ``dest``."""
    tar_path = dest / "rev.tar"
    with open(tar_path, "wb") as fh:
        proc = subprocess.run(["git", "-C", str(_REPO), "archive", "--format=tar", rev, "export"],
                              stdout=fh, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise UGTSRError(f"git archive {rev} failed: {proc.stderr.decode(errors='replace').strip()[:200]}")
    with tarfile.open(tar_path) as tar:
        tar.extractall(dest, filter="data")
    tar_path.unlink()


def _cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _one_run(label: str, cwd: Path, checkpoint: Path, work: Path, *, current: bool, threads: int | None) -> dict[str, Any]:
    out = work / f"{label}.onnx"
    report = work / f"{label}.json"
    for p in (out, report):
        if p.exists():
            p.unlink()
    cmd = [sys.executable, "-m", "export.onnx", str(checkpoint), "-o", str(out), "-q"]
    if current:
        cmd += ["--json", str(report)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(cwd), str(_REPO)]))
    if threads:
        env.update(OMP_NUM_THREADS=str(threads))
    load_before = load_average()
    c0, t0 = _cpu_children(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - t0, _cpu_children() - c0
    if proc.returncode != 0 or not out.is_file():
        raise UGTSRError(f"{label} export failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-300:]}")
    row: dict[str, Any] = {"label": label, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                           "load_avg_before": load_before, "load_avg_after": load_average(),
                           "model_bytes": out.stat().st_size}
    if current and report.is_file():
        rep = json.loads(report.read_text())
        row["stages_wall_s"] = rep.get("timings_s")
        row["stages_cpu_s"] = rep.get("cpu_s")
        row["verification_cases"] = [c["shape"] for c in rep.get("cases", [])]
    return row


def _run(args: argparse.Namespace, argv) -> int:
    checkpoint = Path(args.checkpoint).resolve()
    if not checkpoint.is_file():
        raise UGTSRError(f"{checkpoint}: no such checkpoint")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="export_time_") as tmp:
        tmp_path = Path(tmp)
        work = tmp_path / "work"
        work.mkdir()
        base_dir = None
        if args.baseline_rev:
            base_dir = tmp_path / "baseline"
            base_dir.mkdir()
            _extract_revision(args.baseline_rev, base_dir)
        for i in range(args.repeats):
            if base_dir is not None:
                rows.append(_one_run(f"baseline_{i}", base_dir, checkpoint, work, current=False, threads=args.threads))
                print(f"baseline run {i}: {rows[-1]['wall_s']} s wall, {rows[-1]['cpu_s']} s CPU", flush=True)
            rows.append(_one_run(f"current_{i}", _REPO, checkpoint, work, current=True, threads=args.threads))
            print(f"current run {i}: {rows[-1]['wall_s']} s wall, {rows[-1]['cpu_s']} s CPU", flush=True)

    def med(prefix: str, key: str) -> float | None:
        vals = [r[key] for r in rows if r["label"].startswith(prefix)]
        return round(statistics.median(vals), 2) if vals else None

    summary = {kind: {"median_wall_s": med(kind, "wall_s"), "median_cpu_s": med(kind, "cpu_s")}
               for kind in ("baseline", "current") if any(r["label"].startswith(kind) for r in rows)}
    result = record_header("export_time", "benchmarks.export_time", argv, checkpoint=str(checkpoint),
                           baseline_rev=args.baseline_rev, repeats=args.repeats, threads=args.threads,
                           summary=summary, runs=rows)
    out = Path(args.out) if args.out else RESULTS_DIR / "export_time.json"
    write_json(out, result)
    print(json.dumps(summary))
    print(f"wrote {out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.export_time", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(_REPO / "runtime" / "models" / "ugtsr_tiny_x4.pt"),
                   help="checkpoint to export (default: the shipped tiny_x4 model)")
    p.add_argument("--baseline-rev", default=None, help="git revision to time side by side (e.g. the commit before)")
    p.add_argument("--repeats", type=int, default=1, help="interleaved runs of each (default 1)")
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the exports (default: unset)")
    p.add_argument("--out", default=None, help="result JSON (default benchmarks/results/export_time.json)")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_main("export_time", _parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
