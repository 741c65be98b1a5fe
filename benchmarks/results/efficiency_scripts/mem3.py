# issue-13 experiment script: peak RSS above the loaded session per execution order: mem3.py MODEL SIDE DEFAULT|PRIORITY_BASED
import sys, os, numpy as np, onnxruntime as ort
def status():
    with open('/proc/self/status') as fh:
        return {k: int(v.split()[0]) for k, v in (l.split(':', 1) for l in fh) if k in ('VmRSS', 'VmHWM')}
path, side, order = sys.argv[1], int(sys.argv[2]), sys.argv[3]
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.enable_mem_pattern = False
so.execution_order = getattr(ort.ExecutionOrder, order)
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32)
base = status()["VmRSS"]; open('/proc/self/clear_refs', 'w').write('5')
o = s.run(["sr"], {"lq": x}); p1 = status()["VmHWM"]
print(f"{os.path.basename(path)} {side} {order}: {(p1-base)/side/side:.2f} KiB/px")
