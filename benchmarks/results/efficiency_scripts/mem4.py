# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/mem4.py MODEL SIDE arena|noarena|noarena_mmap (see efficiency_log.md section 7)
import sys, os, ctypes, time, numpy as np
path, side, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if "mmap" in mode:
    libc = ctypes.CDLL("libc.so.6")
    print("mallopt", libc.mallopt(-3, int(os.environ.get("THR", 1 << 20))), libc.mallopt(-1, 1 << 20))
import onnxruntime as ort
def status():
    with open('/proc/self/status') as fh:
        return {k: int(v.split()[0]) for k, v in (l.split(':', 1) for l in fh) if k in ('VmRSS', 'VmHWM')}
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.enable_mem_pattern = False
if "noarena" in mode: so.enable_cpu_mem_arena = False
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32)
base = status()["VmRSS"]; open('/proc/self/clear_refs', 'w').write('5')
t = time.perf_counter(); o = s.run(["sr"], {"lq": x}); t1 = time.perf_counter() - t
p1 = status()["VmHWM"]
ts = []
for _ in range(3):
    t = time.perf_counter(); o = s.run(["sr"], {"lq": x}); ts.append(time.perf_counter() - t)
p2 = status()["VmHWM"]
print(f"{os.path.basename(path)} {side} {mode}: run1 {(p1-base)/side/side:.2f} KiB/px, run4 {(p2-base)/side/side:.2f}  t1 {t1*1e3:.0f} ms, later {min(ts)*1e3:.0f} ms")
