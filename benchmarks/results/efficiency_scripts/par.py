# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/par.py ARGS (see efficiency_log.md section 7)
import sys, time, statistics, numpy as np, onnxruntime as ort
from runtime.backends.ort_graph import cpu_model
path = sys.argv[1]; n = 128
def mk(intra, par, inter=2):
    so = ort.SessionOptions(); so.enable_mem_pattern = False; so.intra_op_num_threads = intra
    if par: so.execution_mode = ort.ExecutionMode.ORT_PARALLEL; so.inter_op_num_threads = inter
    return ort.InferenceSession(cpu_model(path), so, providers=["CPUExecutionProvider"])
S = {"intra2": mk(2, False), "par_i1x2": mk(1, True), "par_i2x2": mk(2, True), "intra1": mk(1, False)}
x = np.random.default_rng(0).random((1, 3, n, n), dtype=np.float32)
t = {k: [] for k in S}
for k, s in S.items(): s.run(["sr"], {"lq": x})
for r in range(7):
    for k, s in S.items():
        t0 = time.perf_counter(); s.run(["sr"], {"lq": x}); t[k].append(time.perf_counter() - t0)
for k in S: print(k, round(statistics.median(t[k]) * 1e3, 1))
