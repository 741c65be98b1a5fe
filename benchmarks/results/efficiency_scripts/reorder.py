# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/reorder.py SRC.onnx DST.onnx q|kv (see efficiency_log.md section 7)
# move each WindowAttention's query-only ancestors next to it in the file (ONNX Runtime explores higher node indices first)
import sys, heapq, onnx
from runtime.backends.ort_graph import cpu_model
src, dst, mode = sys.argv[1], sys.argv[2], sys.argv[3]
m = onnx.load(src); g = m.graph; nodes = list(g.node)
prod = {o: i for i, n in enumerate(nodes) for o in n.output}
def anc(names):
    seen, st = set(), [prod[x] for x in names if x in prod]
    while st:
        i = st.pop()
        if i in seen: continue
        seen.add(i); st.extend(prod[x] for x in nodes[i].input if x in prod)
    return seen
key = {i: float(i) for i in range(len(nodes))}
for i, n in enumerate(nodes):
    if n.op_type == "WindowAttention":
        q_only = anc([n.input[0]]) - anc(n.input[1:3])
        kv_only = anc(n.input[1:3]) - anc([n.input[0]])
        moved = q_only if mode == "q" else kv_only
        for j in sorted(moved): key[j] = i - 0.5 + j / 1e7
        print(n.name, "moved", len(moved))
# Kahn topological sort by key
cons = {}
indeg = [0] * len(nodes)
for i, n in enumerate(nodes):
    deps = {prod[x] for x in n.input if x in prod}
    indeg[i] = len(deps)
    for d in deps: cons.setdefault(d, []).append(i)
h = [(key[i], i) for i in range(len(nodes)) if indeg[i] == 0]; heapq.heapify(h); order = []
while h:
    _, i = heapq.heappop(h); order.append(i)
    for c in cons.get(i, []):
        indeg[c] -= 1
        if indeg[c] == 0: heapq.heappush(h, (key[c], c))
assert len(order) == len(nodes)
del g.node[:]; g.node.extend(nodes[i] for i in order)
onnx.save(m, dst)
