# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/live2.py ARGS (see efficiency_log.md section 7)
# live tensors at the in-use peak: optimized graph + profiler order and shapes
import sys, json, os, numpy as np, onnxruntime as ort, onnx
path, n = sys.argv[1], int(sys.argv[2])
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.enable_profiling = True; so.profile_file_prefix = os.path.join(os.environ.get("TMPDIR", "/tmp"), "lv")
so.enable_mem_pattern = False; so.optimized_model_filepath = os.path.join(os.environ.get("TMPDIR", "/tmp"), "opt_tmp.onnx")
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
x = np.random.rand(1, 3, n, n).astype(np.float32); s.run(["sr"], {"lq": x})
f = s.end_profiling(); ev = json.load(open(f)); os.remove(f)
nodes = [e for e in ev if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
g = onnx.load(os.path.join(os.environ.get("TMPDIR", "/tmp"), "opt_tmp.onnx"), load_external_data=False).graph
byname = {nd.name: nd for nd in g.node}
inits = {i.name for i in g.initializer}
size = {}; prod = {}; last = {}
order = []
for step, e in enumerate(nodes):
    nm = e["name"][:-12]; nd = byname.get(nm)
    if nd is None: continue
    order.append(nm)
    shapes = e["args"].get("output_type_shape", [])
    for o, sh in zip([o for o in nd.output if o], shapes):
        (dt, dims), = sh.items(); el = int(np.prod(dims)) if dims else 1
        size[o] = el * (2 if "16" in dt else 8 if "64" in dt else 4); prod[o] = step
    for i in nd.input:
        if i and i not in inits: last[i] = step
for o in [o.name for o in g.output]: last[o] = len(nodes)
live = np.zeros(len(nodes) + 1)
for t, p in prod.items():
    live[p:last.get(t, p) + 1] += size[t]
pk = int(np.argmax(live)); px = n * n
print(f"peak live {live[pk]/2**20:.0f} MiB = {live[pk]/1024/px:.2f} KiB/px at step {pk} {order[pk] if pk < len(order) else 'end'}")
alive = sorted(((size[t], t, order[prod[t]], order[last.get(t, prod[t])] if last.get(t, prod[t]) < len(order) else "OUT") for t in prod if prod[t] <= pk <= last.get(t, prod[t])), reverse=True)
for sz, t, a, b in alive[:25]: print(f"  {sz/1024/px:5.2f} KiB/px {t[:50]:50s} made {a[:40]:40s} last {b[:40]}")
print("curve (KiB/px) every 40 steps:", [round(v/1024/px, 1) for v in live[::40]])
inuse = [int(e["args"].get("mem_bytes_in_use", 0)) for e in nodes]
missing = [e["name"][:-12] for e in nodes if e["name"][:-12] in byname and len(e["args"].get("output_type_shape", [])) < len([o for o in byname[e["name"][:-12]].output if o])]
print("nodes with missing output shapes:", len(missing), missing[:10])
print("ORT in-use vs mine (KiB/px) every 30 steps:")
for i in range(0, len(nodes), 30): print(f"  {i:4d} {inuse[i]/1024/px:6.2f} {live[i]/1024/px:6.2f} {nodes[i]['args']['op_name']:22s} {nodes[i]['name'][:-12][:50]}")
print("jumps > 0.2 KiB/px in ORT in-use:")
for i in range(1, len(nodes)):
    d = (inuse[i] - inuse[i-1]) / 1024 / px
    if abs(d) > 0.2: print(f"  {i:4d} {d:+6.2f} -> {inuse[i]/1024/px:5.2f} {nodes[i]['args']['op_name']:20s} {nodes[i]['name'][:-12][:45]} {nodes[i]['args'].get('output_type_shape')}")
