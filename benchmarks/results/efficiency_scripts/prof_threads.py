# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/prof_threads.py MODEL SIDE RUNS (see efficiency_log.md section 7)
# per-op-type sum of per-node minima at 1 and 2 intra-op threads (fused model as the runtime runs it)
import onnxruntime as ort, numpy as np, json, sys, collections, os
from runtime.backends.ort_graph import cpu_model
path = sys.argv[1]; n = int(sys.argv[2]); R = int(sys.argv[3])
res = {}
for th in (1, 2):
    so = ort.SessionOptions(); so.intra_op_num_threads = th; so.enable_mem_pattern = False
    so.enable_profiling = True; so.profile_file_prefix = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"pt{th}")
    s = ort.InferenceSession(cpu_model(path), so, providers=["CPUExecutionProvider"])
    x = np.random.rand(1, 3, n, n).astype(np.float32)
    for _ in range(R): s.run(None, {"lq": x})
    f = s.end_profiling(); ev = json.load(open(f)); os.remove(f)
    per = collections.defaultdict(list); op = {}
    for e in ev:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per[e["name"]].append(e["dur"]); op[e["name"]] = e["args"]["op_name"]
    by = collections.defaultdict(float)
    for k, v in per.items(): by[op[k]] += min(v)
    res[th] = by
t1, t2 = sum(res[1].values()), sum(res[2].values())
print(f"total {t1/1e3:.0f} ms -> {t2/1e3:.0f} ms ({t1/t2:.2f}x)")
for o in sorted(res[1], key=lambda k: -res[1][k])[:20]:
    a, b = res[1][o], res[2].get(o, 0)
    print(f"  {o:22s} {a/1e3:7.1f} -> {b/1e3:7.1f} ms  x{a/max(b,1):.2f}  (2-thr share {100*b/t2:4.1f}%)")
