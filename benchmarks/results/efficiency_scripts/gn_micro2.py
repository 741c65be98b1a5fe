# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/gn_micro2.py ARGS (see efficiency_log.md)
import numpy as np, onnx, onnxruntime as ort, time, statistics, sys
from onnx import helper as h, TensorProto as T, numpy_helper as nh
C, G, H, N = int(sys.argv[1]), 16, int(sys.argv[2]), 1
rng = np.random.default_rng(0)
w = rng.standard_normal(C).astype(np.float32); b = rng.standard_normal(C).astype(np.float32)
def I(name, arr): return nh.from_array(np.asarray(arr), name)
def model(kind):
    inits = [I("w", w), I("b", b), I("w3", w.reshape(C, 1, 1)), I("b3", b.reshape(C, 1, 1)), I("s1", np.array([0, G, -1], np.int64)),
             I("one", np.ones(G, np.float32)), I("zero", np.zeros(G, np.float32)), I("ax2", np.array([2], np.int64)),
             I("eps", np.array(1e-6, np.float32)), I("sflat", np.array([1, -1, 0, 0], np.int64)), I("m1", np.array([-1], np.int64)),
             I("cg", np.array([1, 1, C // G], np.int64))]
    nodes = [h.make_node("Shape", ["x"], ["sh"])]
    if kind == "gn21":
        nodes += [h.make_node("GroupNormalization", ["x", "w", "b"], ["y0"], num_groups=G, epsilon=1e-6)]
    elif kind == "in":
        nodes += [h.make_node("Reshape", ["x", "s1"], ["r"]), h.make_node("InstanceNormalization", ["r", "one", "zero"], ["n"], epsilon=1e-6),
                  h.make_node("Reshape", ["n", "sh"], ["n4"]), h.make_node("Mul", ["n4", "w3"], ["m"]), h.make_node("Add", ["m", "b3"], ["y0"])]
    else:  # bn variants: stats per group -> per (n, c) -> BatchNormalization on (1, N*C, H, W)
        nodes += [h.make_node("Reshape", ["x", "s1"], ["r"]), h.make_node("ReduceMean", ["r", "ax2"], ["mu"], keepdims=1)]
        if kind == "bn_e2":
            nodes += [h.make_node("Mul", ["r", "r"], ["rr"]), h.make_node("ReduceMean", ["rr", "ax2"], ["m2"], keepdims=1),
                      h.make_node("Mul", ["mu", "mu"], ["mu2"]), h.make_node("Sub", ["m2", "mu2"], ["var"])]
        else:  # two-pass
            nodes += [h.make_node("Sub", ["r", "mu"], ["d"]), h.make_node("Mul", ["d", "d"], ["dd"]), h.make_node("ReduceMean", ["dd", "ax2"], ["var"], keepdims=1)]
        nodes += [h.make_node("Tile", ["mu", "cg"], ["muc"]), h.make_node("Tile", ["var", "cg"], ["varc"]),
                  h.make_node("Reshape", ["muc", "m1"], ["muf"]), h.make_node("Reshape", ["varc", "m1"], ["varf"]),
                  h.make_node("Reshape", ["x", "sflat"], ["x1"]),
                  h.make_node("BatchNormalization", ["x1", "w", "b", "muf", "varf"], ["bn"], epsilon=1e-6),
                  h.make_node("Reshape", ["bn", "sh"], ["y0"])]
    nodes += [h.make_node("Sigmoid", ["y0"], ["sg"]), h.make_node("Mul", ["y0", "sg"], ["y"])]
    g = h.make_graph(nodes, kind, [h.make_tensor_value_info("x", T.FLOAT, [N, C, "H", "W"])], [h.make_tensor_value_info("y", T.FLOAT, None)], inits)
    return h.make_model(g, opset_imports=[h.make_opsetid("", 21)]).SerializeToString()
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.log_severity_level = 3
kinds = ["gn21", "in", "bn_e2", "bn_2p"]
S = {k: ort.InferenceSession(model(k), so, providers=["CPUExecutionProvider"]) for k in kinds}
x = (rng.standard_normal((N, C, H, H)) * 0.5 + 1.0).astype(np.float32)
import torch
xt = torch.from_numpy(x).double()
ref = torch.nn.functional.silu(torch.nn.functional.group_norm(xt, G, torch.from_numpy(w).double(), torch.from_numpy(b).double(), 1e-6)).numpy()
ref32 = torch.nn.functional.silu(torch.nn.functional.group_norm(torch.from_numpy(x), G, torch.from_numpy(w), torch.from_numpy(b), 1e-6)).numpy()
print("torch fp32 err vs f64", np.abs(ref32 - ref).max())
for k in kinds: print(k, "err vs f64", np.abs(S[k].run(None, {"x": x})[0] - ref).max())
t = {k: [] for k in kinds}
for r in range(11):
    for k in kinds:
        t0 = time.perf_counter(); S[k].run(None, {"x": x}); t[k].append((time.perf_counter() - t0) * 1e3)
print({k: (round(statistics.median(v), 1), round(min(v), 1)) for k, v in t.items()})
