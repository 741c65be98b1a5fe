# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/live.py ARGS (see efficiency_log.md)
"""liveness at the peak: live.py model.onnx SIDE [outs]"""
import onnxruntime as ort, numpy as np, json, sys, os, collections, onnx
path, n = sys.argv[1], int(sys.argv[2]); outs = sys.argv[3].split(",") if len(sys.argv) > 3 else None
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.enable_profiling = True; so.profile_file_prefix = "/tmp/eff/lv"
so.optimized_model_filepath = "/tmp/eff/opt.onnx"
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
x = np.random.rand(1, 3, n, n).astype(np.float32)
s.run(outs, {"lq": x})
f = s.end_profiling(); ev = json.load(open(f)); os.remove(f)
nodes = [e for e in ev if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
print(list(nodes[0]["args"].keys()))
g = onnx.load("/tmp/eff/opt.onnx", load_external_data=False).graph
byname = {nd.name: nd for nd in g.node}
order = [e["name"][:-12] for e in nodes]
size = {}
for e in nodes:
    nd = byname.get(e["name"][:-12])
    if nd is None: continue
    shapes = e["args"].get("output_type_shape", [])
    for o, sh in zip(nd.output, shapes):
        dims = list(sh.values())[0]; size[o] = int(np.prod(dims)) * 4 if dims else 4
last = {}
for i, nm in enumerate(order):
    nd = byname.get(nm)
    if nd is None: continue
    for t in nd.input: last[t] = i
for t in [o.name for o in g.output]: last[t] = len(order)
live = {}; peak = (0, None, [])
for i, nm in enumerate(order):
    nd = byname.get(nm)
    if nd is None: continue
    for o in nd.output:
        if o in size: live[o] = size[o]
    tot = sum(live.values())
    if tot > peak[0]: peak = (tot, nm, sorted(((v, k) for k, v in live.items()), reverse=True)[:12])
    for t in list(live):
        if last.get(t, -1) <= i: del live[t]
print(f"peak live (no reuse/in-place) {peak[0]/2**20:.0f} MiB = {peak[0]/1024/n/n:.2f} KiB/px at {peak[1]}")
for v, k in peak[2]: print(f"   {v/2**20:7.1f} MiB {k}")
