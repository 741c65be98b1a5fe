# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/mem2.py ARGS (see efficiency_log.md)
import json, sys, os, numpy as np, onnxruntime as ort
def status():
    with open('/proc/self/status') as fh:
        return {k: int(v.split()[0]) for k, v in (l.split(':', 1) for l in fh) if k in ('VmRSS', 'VmHWM')}
path, side, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
so = ort.SessionOptions(); so.intra_op_num_threads = 1
if mode.startswith("env"):
    strat = 1 if "same" in mode else 0
    cfg = ort.OrtArenaCfg(0, strat, -1, -1)
    ort.create_and_register_allocator(ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT), cfg)
    so.add_session_config_entry("session.use_env_allocators", "1")
if "nopat" in mode: so.enable_mem_pattern = False
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32)
base = status()["VmRSS"]; open('/proc/self/clear_refs', 'w').write('5')
o = s.run(["sr"], {"lq": x})
p1 = status()["VmHWM"]
for _ in range(3): o = s.run(["sr"], {"lq": x})
p2 = status()["VmHWM"]
print(f"{os.path.basename(path)} {side} {mode}: peak above model run1 {(p1-base)/side/side:.2f} KiB/px, run2 {(p2-base)/side/side:.2f}")
