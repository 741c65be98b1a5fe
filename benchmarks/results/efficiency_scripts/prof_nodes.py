# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/prof_nodes.py MODEL.onnx SIDE RUNS OP,OP (per-node minima with shapes, 1 and 2 threads; see efficiency_log.md section 10)
import onnxruntime as ort, numpy as np, json, sys, collections, os
from runtime.backends.ort_graph import cpu_model
path = sys.argv[1]; n = int(sys.argv[2]); R = int(sys.argv[3]); ops = sys.argv[4].split(",")
for th in (1, 2):
    so = ort.SessionOptions(); so.intra_op_num_threads = th
    so.enable_profiling = True; so.profile_file_prefix = f"/tmp/exp/pn{th}"
    s = ort.InferenceSession(cpu_model(path), so, providers=["CPUExecutionProvider"])
    x = np.random.rand(1, 3, n, n).astype(np.float32)
    for _ in range(R): s.run(["sr"], {"lq": x})
    f = s.end_profiling(); ev = json.load(open(f)); os.remove(f)
    per = collections.defaultdict(list); info = {}
    for e in ev:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["args"]["op_name"] in ops:
            per[e["name"]].append(e["dur"]); info[e["name"]] = (e["args"]["op_name"], e["args"].get("input_type_shape"), e["args"].get("output_type_shape"))
    for k in sorted(per, key=lambda k: -min(per[k])):
        print(th, f"{min(per[k])/1e3:6.2f} ms", info[k][0], k[:60], info[k][1], info[k][2])
