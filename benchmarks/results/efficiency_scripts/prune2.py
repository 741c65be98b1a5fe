# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/prune2.py ARGS (see efficiency_log.md)
import onnxruntime as ort, numpy as np, json, os, collections, sys
path = sys.argv[1]
for outs in (None, ["sr"]):
    so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.enable_profiling = True; so.profile_file_prefix = "/tmp/eff/pp"
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    x = np.random.rand(1, 3, 32, 32).astype(np.float32)
    s.run(outs, {"lq": x})
    f = s.end_profiling(); ev = json.load(open(f)); os.remove(f)
    c = collections.Counter(e["args"]["op_name"] for e in ev if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"))
    print(outs, sum(c.values()), c["Conv"], c["Tanh"])
