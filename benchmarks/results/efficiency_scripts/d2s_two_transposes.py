# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/d2s_two_transposes.py C SIDE BLOCK (DepthToSpace as two single-axis transposes; see efficiency_log.md section 10)
import numpy as np, onnxruntime as ort, time, sys
from onnx import helper as H, TensorProto as T, numpy_helper as nh
C, S, b = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c = C // (b * b)
def model(kind):
    x = H.make_tensor_value_info("x", T.FLOAT, [1, C, "h", "w"]); y = H.make_tensor_value_info("y", T.FLOAT, None)
    inits = []
    if kind == "CRD":
        nodes = [H.make_node("DepthToSpace", ["x"], ["y"], blocksize=b, mode="CRD")]
    elif kind == "two":  # [1,c*b,b,h,w] -> [1,c*b,h,w,b] -> [1,c,b,h,w*b] -> [1,c,h,b,w*b] -> [1,c,h*b,w*b]
        inits = [nh.from_array(np.array([1, c * b, b, S, S], np.int64), "s1"), nh.from_array(np.array([1, c, b, S, S * b], np.int64), "s2"),
                 nh.from_array(np.array([1, c, S * b, S * b], np.int64), "s3")]
        nodes = [H.make_node("Reshape", ["x", "s1"], ["r1"]), H.make_node("Transpose", ["r1"], ["t1"], perm=[0, 1, 3, 4, 2]),
                 H.make_node("Reshape", ["t1", "s2"], ["r2"]), H.make_node("Transpose", ["r2"], ["t2"], perm=[0, 1, 3, 2, 4]),
                 H.make_node("Reshape", ["t2", "s3"], ["y"])]
    g = H.make_graph(nodes, "g", [x], [y], inits)
    return H.make_model(g, opset_imports=[H.make_opsetid("", 21)]).SerializeToString()
x = np.random.rand(1, C, S, S).astype(np.float32)
S_ = {}
for k in ("CRD", "two"):
    for th in (1, 2):
        so = ort.SessionOptions(); so.intra_op_num_threads = th
        S_[(k, th)] = ort.InferenceSession(model(k), so, providers=["CPUExecutionProvider"])
ref = S_[("CRD", 1)].run(None, {"x": x})[0]; print("two==CRD", np.array_equal(ref, S_[("two", 1)].run(None, {"x": x})[0]))
T_ = {k: [] for k in S_}
for r in range(21):
    for k, s in S_.items():
        t0 = time.perf_counter(); s.run(None, {"x": x}); T_[k].append(time.perf_counter() - t0)
for k in T_: print(k, f"{1e3*np.median(T_[k]):.2f} ms")
