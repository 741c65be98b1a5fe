# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/gn_forms.py C SIDE (GroupNorm 16 + affine + SiLU forms; see efficiency_log.md section 10)
import numpy as np, onnx, onnxruntime as ort, time, sys
from onnx import helper as H, TensorProto as T, numpy_helper as nh
C, S, G = int(sys.argv[1]), int(sys.argv[2]), 16
def model(kind):
    x = H.make_tensor_value_info("x", T.FLOAT, [1, C, "h", "w"]); y = H.make_tensor_value_info("y", T.FLOAT, None)
    rng = np.random.default_rng(0)
    inits = [nh.from_array(rng.standard_normal((1, C, 1, 1)).astype(np.float32), "g"),
             nh.from_array(rng.standard_normal((1, C, 1, 1)).astype(np.float32), "b"),
             nh.from_array(np.array([0, G, -1], np.int64), "s3"),
             nh.from_array(np.ones(G, np.float32), "o"), nh.from_array(np.zeros(G, np.float32), "z"),
             nh.from_array(np.ones(1, np.float32), "o1"), nh.from_array(np.zeros(1, np.float32), "z1")]
    nodes = [H.make_node("Shape", ["x"], ["sh"]), H.make_node("Reshape", ["x", "s3"], ["r"])]
    if kind == "in":
        nodes.append(H.make_node("InstanceNormalization", ["r", "o", "z"], ["n"], epsilon=1e-6))
    elif kind == "ln1":
        nodes.append(H.make_node("LayerNormalization", ["r", "o1", "z1"], ["n"], axis=-1, epsilon=1e-6))
    elif kind == "lnd":
        nodes += [H.make_node("Shape", ["r"], ["rs"], start=2), H.make_node("ConstantOfShape", ["rs"], ["ones"], value=nh.from_array(np.ones(1, np.float32)))]
        nodes.append(H.make_node("LayerNormalization", ["r", "ones"], ["n"], axis=-1, epsilon=1e-6))
    nodes += [H.make_node("Reshape", ["n", "sh"], ["u"]), H.make_node("Mul", ["u", "g"], ["m"]), H.make_node("Add", ["m", "b"], ["a"]),
              H.make_node("Sigmoid", ["a"], ["sg"]), H.make_node("Mul", ["a", "sg"], ["y"])]
    g = H.make_graph(nodes, "g", [x], [y], inits)
    return H.make_model(g, opset_imports=[H.make_opsetid("", 21)]).SerializeToString()
x = np.random.default_rng(1).standard_normal((1, C, S, S)).astype(np.float32) * 3 + 1
ref = x.reshape(1, G, -1).astype(np.float64); ref = (ref - ref.mean(-1, keepdims=True)) / np.sqrt(ref.var(-1, keepdims=True) + 1e-6)
rng = np.random.default_rng(0); g = rng.standard_normal((1, C, 1, 1)); b = rng.standard_normal((1, C, 1, 1))
ref = ref.reshape(x.shape) * g + b; ref = ref / (1 + np.exp(-ref))
S_ = {}
for k in ("in", "ln1", "lnd"):
    for th in (1, 2):
        so = ort.SessionOptions(); so.intra_op_num_threads = th
        try:
            s = ort.InferenceSession(model(k), so, providers=["CPUExecutionProvider"]); out = s.run(None, {"x": x})[0]
            S_[(k, th)] = s; print(k, th, "err", float(np.abs(out - ref).max()))
        except Exception as e: print(k, "fails", str(e)[:200]); break
T_ = {k: [] for k in S_}
for r in range(15):
    for k, s in S_.items():
        t0 = time.perf_counter(); s.run(None, {"x": x}); T_[k].append(time.perf_counter() - t0)
for k in T_: print(k, f"{1e3*np.median(T_[k]):.2f} ms")
