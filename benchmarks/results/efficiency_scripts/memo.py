# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/memo.py ARGS (see efficiency_log.md section 7)
import sys, os, time, numpy as np, onnxruntime as ort
from runtime.backends.ort_graph import cpu_model
path, side, order = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def status():
    with open('/proc/self/status') as fh:
        return {k: int(v.split()[0]) for k, v in (l.split(':', 1) for l in fh) if k in ('VmRSS', 'VmHWM')}
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.enable_mem_pattern = False
if order == "prio": so.execution_order = ort.ExecutionOrder.PRIORITY_BASED
s = ort.InferenceSession(cpu_model(path), so, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32)
base = status()["VmRSS"]; open('/proc/self/clear_refs', 'w').write('5')
t = time.perf_counter(); o = s.run(["sr"], {"lq": x}); t1 = time.perf_counter() - t; p1 = status()["VmHWM"]
print(f"{os.path.basename(path)} {side} {order}: run1 {(p1-base)/side/side:.2f} KiB/px  {t1*1e3:.0f} ms")
