# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/paired_variants.py SIDE ROUNDS THREADS LABEL=MODEL.onnx:GFLOP ...
# (see efficiency_log.md section 11). Each round runs, for every model in turn, the Compact peer and then the
# model, 50 ms apart, each alone; the round's GFLOP/s ratio (model / Compact) cancels the load of that moment.
# Prints per model the median latency and the median [quartiles] of the paired ratio.
import sys, time, json, numpy as np
from pathlib import Path
from benchmarks.latency_peers import _peer_onnx, _session, count_gflop, paired_ratio
side, R, threads = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
peer, cp, info = _peer_onnx("realesr-general-x4v3", Path("/tmp/peers_cache"), 0)
g_c = count_gflop(peer, side, side)[0]
models = {}
for a in sys.argv[4:]:
    k, v = a.split("=", 1); p, g = v.rsplit(":", 1); models[k] = (p, float(g))
compact = _session(Path(cp), threads)
sess = {k: _session(Path(p), threads) for k, (p, _) in models.items()}
x = np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32)
for s in [compact, *sess.values()]:
    s.run(None, {"lq": x}) if s is compact else s.run(["sr"], {"lq": x})
T = {k: [] for k in sess}; C = {k: [] for k in sess}
for r in range(R):
    for k, s in sess.items():
        time.sleep(0.05); t0 = time.perf_counter(); compact.run(None, {"lq": x}); C[k].append(time.perf_counter() - t0)
        time.sleep(0.05); t0 = time.perf_counter(); s.run(["sr"], {"lq": x}); T[k].append(time.perf_counter() - t0)
res = {}
for k, (p, g) in models.items():
    pr = paired_ratio(g, T[k], g_c, C[k])
    med, q1, q3 = pr["median"], pr["q25"], pr["q75"]
    res[k] = {"ms": 1e3 * float(np.median(T[k])), "compact_ms": 1e3 * float(np.median(C[k])), "paired": med,
              "q1": q1, "q3": q3}
    print(f"{k}: {res[k]['ms']:.1f} ms (compact {res[k]['compact_ms']:.1f}), paired GFLOP/s ratio {med:.3f} [{q1:.3f}-{q3:.3f}]", flush=True)
print(json.dumps({"side": side, "threads": threads, "rounds": R, "results": res}))
