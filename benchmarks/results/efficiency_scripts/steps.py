# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/steps.py ARGS (see efficiency_log.md)
"""interleaved medians of several graphs + the Compact peer, GFLOP/s ratios: steps.py SIDE R THREADS out.json label=path:gflop ..."""
import onnxruntime as ort, numpy as np, time, statistics, sys, json, os
n, R, th, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
items = [a.split("=", 1) for a in sys.argv[5:]]
S = {}
for label, spec in items:
    path, gf = spec.rsplit(":", 1)
    so = ort.SessionOptions(); so.intra_op_num_threads = th
    S[label] = (ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]), float(gf), path)
rng = np.random.default_rng(0); xs = [rng.random((1, 3, n, n), dtype=np.float32) for _ in range(2)]
ref = None; diffs = {}
for label, (s, gf, p) in S.items():
    y = s.run([s.get_outputs()[0].name], {s.get_inputs()[0].name: xs[0]})[0]
    if "compact" not in label.lower():
        ref = y if ref is None else ref; diffs[label] = float(np.abs(y - ref).max())
t = {k: [] for k in S}
for r in range(R):
    for k, (s, gf, p) in S.items():
        t0 = time.perf_counter(); s.run([s.get_outputs()[0].name], {s.get_inputs()[0].name: xs[r % 2]}); t[k].append((time.perf_counter() - t0) * 1e3)
rows = {}
comp = [k for k in S if "compact" in k.lower()][0]
cg = S[comp][1] / (statistics.median(t[comp]) / 1e3)
for k, (s, gf, p) in S.items():
    med = statistics.median(t[k]); g = gf / (med / 1e3)
    rows[k] = {"path": p, "gflop": gf, "median_ms": round(med, 1), "min_ms": round(min(t[k]), 1), "gflop_per_s": round(g, 2),
               "gflops_vs_compact": round(g / cg, 3), "max_abs_sr_vs_first": diffs.get(k), "times_ms": [round(v, 1) for v in t[k]]}
    print(f"{k:28s} {med:8.1f} ms (min {min(t[k]):7.1f})  {g:6.1f} GFLOP/s  vs Compact {g / cg:.3f}  d_sr {diffs.get(k)}")
rec = {"side": n, "repeats": R, "threads": th, "load_end": open("/proc/loadavg").read().split()[:3], "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows}
json.dump(rec, open(out, "w"), indent=1); print("load", rec["load_end"])
