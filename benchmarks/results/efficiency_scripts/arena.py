# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/arena.py ARGS (see efficiency_log.md)
import onnxruntime as ort, numpy as np, json, sys, os
path, n = sys.argv[1], int(sys.argv[2]); outs = sys.argv[3].split(",") if len(sys.argv) > 3 else None
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.enable_profiling = True; so.profile_file_prefix = "/tmp/eff/ar"
for kv in os.environ.get("CFG", "").split(","):
    if kv: k, v = kv.split("="); so.add_session_config_entry(k, v)
if os.environ.get("NOPAT"): so.enable_mem_pattern = False
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
x = np.random.rand(1, 3, n, n).astype(np.float32)
for r in range(int(os.environ.get("RUNS", "1"))): s.run(outs, {"lq": x})
f = s.end_profiling(); ev = json.load(open(f)); os.remove(f)
nodes = [e for e in ev if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
M = 2**20
held = [int(e["args"].get("mem_arena_held", 0)) for e in nodes]; inuse = [int(e["args"].get("mem_bytes_in_use", 0)) for e in nodes]
pk = [int(e["args"].get("mem_in_use_peak", 0)) for e in nodes]
i = int(np.argmax(held))
print(f"{os.path.basename(path)} {n}: arena held max {max(held)/M:.0f} MiB, in-use max {max(inuse)/M:.0f} MiB, in_use_peak {max(pk)/M:.0f} MiB; per px held {max(held)/1024/n/n:.2f} KiB; max held first at node {i} {nodes[i]['name'][:-12]} {nodes[i]['args']['op_name']}")
j = int(np.argmax(inuse)); print("  in-use max at", j, nodes[j]["name"][:-12], nodes[j]["args"]["op_name"], nodes[j]["args"].get("output_type_shape"))
