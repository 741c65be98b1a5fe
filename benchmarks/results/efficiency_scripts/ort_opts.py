# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/ort_opts.py SIDE ROUNDS MODEL.onnx [GAP_S] (see efficiency_log.md section 10)
# 2-thread session config variants of one model, interleaved with the Compact peer (default options)
import sys, time, numpy as np, onnxruntime as ort
from pathlib import Path
from benchmarks.latency_peers import _peer_onnx
from runtime.backends.onnxruntime import session_options
from runtime.backends.ort_graph import cpu_model
side, R, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
_, cp, _ = _peer_onnx("realesr-general-x4v3", Path("/tmp/peers"), 0)
variants = {"default": {}, "nospin": {"session.intra_op.allow_spinning": "0"},
            "dbb4": {"session.dynamic_block_base": "4"}, "dbb4_nospin": {"session.dynamic_block_base": "4", "session.intra_op.allow_spinning": "0"}}
sess = {}
for th in (1, 2):
    for k, cfg in variants.items():
        if th == 1 and k != "default": continue
        for name, p in (("compact", cp), ("ours", path)):
            so = session_options(ort, threads=th)
            for a, b in cfg.items(): so.add_session_config_entry(a, b)
            sess[(name, k, th)] = ort.InferenceSession(cpu_model(Path(p)), so, providers=["CPUExecutionProvider"])
x = np.random.rand(1, 3, side, side).astype(np.float32)
for s in sess.values(): s.run(["sr"], {"lq": x})
T = {k: [] for k in sess}
GAP = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
for r in range(R):
    for k, s in sess.items():
        time.sleep(GAP); t0 = time.perf_counter(); s.run(["sr"], {"lq": x}); T[k].append(time.perf_counter() - t0)
for k in sess: print(k, f"{1e3*np.median(T[k]):.1f} ms")
