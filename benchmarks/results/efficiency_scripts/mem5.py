# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/mem5.py ARGS (see efficiency_log.md section 7)
import sys, os, time, numpy as np, onnxruntime as ort
path, side = sys.argv[1], int(sys.argv[2]); cfgs = sys.argv[3]
def status():
    with open('/proc/self/status') as fh:
        return {k: int(v.split()[0]) for k, v in (l.split(':', 1) for l in fh) if k in ('VmRSS', 'VmHWM')}
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.enable_mem_pattern = False
if cfgs != "default":
    d = {k: int(v) for k, v in (kv.split("=") for kv in cfgs.split(","))}
    cfg = ort.OrtArenaCfg(d)
    ort.create_and_register_allocator(ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT), cfg)
    so.add_session_config_entry("session.use_env_allocators", "1")
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32)
base = status()["VmRSS"]; open('/proc/self/clear_refs', 'w').write('5')
t = time.perf_counter(); o = s.run(["sr"], {"lq": x}); t1 = time.perf_counter() - t
p1 = status()["VmHWM"]; ts = []
for _ in range(3):
    t = time.perf_counter(); o = s.run(["sr"], {"lq": x}); ts.append(time.perf_counter() - t)
p2 = status()["VmHWM"]
print(f"{cfgs}: run1 {(p1-base)/side/side:.2f} KiB/px, run4 {(p2-base)/side/side:.2f}  t1 {t1*1e3:.0f} ms, later {min(ts)*1e3:.0f} ms")
