# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/prof3.py ARGS (see efficiency_log.md)
"""per-node min over runs; top non-conv nodes with shapes: prof3.py model.onnx SIDE R"""
import onnxruntime as ort, numpy as np, json, sys, collections, os
path = sys.argv[1]; n = int(sys.argv[2]); R = int(sys.argv[3])
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.enable_profiling = True; so.profile_file_prefix = "/tmp/eff/prof"
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
x = np.random.rand(1,3,n,n).astype(np.float32)
for _ in range(R): s.run(None, {"lq": x})
f = s.end_profiling(); ev = json.load(open(f)); os.remove(f)
per = collections.defaultdict(list); info = {}
for e in ev:
    if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
        per[e["name"]].append(e["dur"]); info[e["name"]] = (e["args"]["op_name"], [list(d.values())[0] for d in e["args"].get("output_type_shape", [])])
mins = {k: min(v) for k, v in per.items()}
by_op = collections.defaultdict(float)
for k, v in mins.items(): by_op[info[k][0]] += v
tot = sum(mins.values())
print(f"sum of per-node minima {tot/1e3:.0f} ms (runs {R})")
for op, d in sorted(by_op.items(), key=lambda kv: -kv[1])[:22]: print(f"  {op:22s} {d/1e3:8.1f} ms {100*d/tot:5.1f}%")
print("top non-conv nodes:")
for k, v in sorted(((k, v) for k, v in mins.items() if info[k][0] != "Conv"), key=lambda kv: -kv[1])[:30]:
    print(f"  {info[k][0]:18s} {v/1e3:7.1f} ms {k[:-12][:60]:60s} {info[k][1]}")
