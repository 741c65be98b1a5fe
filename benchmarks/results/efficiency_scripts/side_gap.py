# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/side_gap.py SIDE ROUNDS LABEL=MODEL.onnx ... (see efficiency_log.md section 10)
# side by side wall latency: models given as LABEL=PATH, 1 and 2 threads, interleaved, median
import sys, time, numpy as np
from pathlib import Path
from benchmarks.latency_peers import _peer_onnx, _session
side = int(sys.argv[1]); R = int(sys.argv[2])
models = {}
_, cp, _ = _peer_onnx("realesr-general-x4v3", Path("/tmp/peers"), 0)
models["compact"] = cp
for a in sys.argv[3:]:
    k, v = a.split("="); models[k] = v
sess = {(k, t): _session(Path(p), t) for k, p in models.items() for t in (1, 2)}
x = np.random.rand(1, 3, side, side).astype(np.float32)
outs = {k: (["sr"]) for k in models}
for s in sess.values(): s.run(["sr"], {"lq": x})
T = {k: [] for k in sess}
for r in range(R):
    for k, s in sess.items():
        time.sleep(0.05); t0 = time.perf_counter(); s.run(["sr"], {"lq": x}); T[k].append(time.perf_counter() - t0)
for k in sess: print(k, f"{1e3*np.median(T[k]):.1f} ms")
