# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/cmpso.py ARGS (see efficiency_log.md)
"""same graph, several SessionOptions, interleaved: cmpso.py model SIDE R"""
import onnxruntime as ort, numpy as np, time, statistics, sys
path, n, R = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def mk(**kw):
    so = ort.SessionOptions(); so.intra_op_num_threads = 1
    for k, v in kw.items(): setattr(so, k, v)
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
S = {"default": mk(), "mem_pattern=False": mk(enable_mem_pattern=False),
     "opt=EXTENDED": mk(graph_optimization_level=ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)}
rng = np.random.default_rng(0); xs = [rng.random((1, 3, n, n), dtype=np.float32) for _ in range(2)]
for s in S.values(): s.run(["sr"], {"lq": xs[0]})
t = {k: [] for k in S}
for r in range(R):
    for k, s in S.items():
        t0 = time.perf_counter(); s.run(["sr"], {"lq": xs[r % 2]}); t[k].append((time.perf_counter() - t0) * 1e3)
m0 = statistics.median(t["default"])
for k, v in t.items(): print(f"{k:20s} median {statistics.median(v):8.1f} ms min {min(v):8.1f}  ratio {statistics.median(v)/m0:.3f}")
print("load", open("/proc/loadavg").read().split()[:3])
