"""The image-level estimate of the gate fitted in logit space (smooth L1 on logit(w*), w* clamped to
[0.005, 0.995]) from a fresh start, on the x4 cache of scripts/train_default_model_v3_cpu.sh; prints the
held-back gain over bicubic per component and the mean blend weight (model card, "Limits").

    python scripts/experiments/gate_logit_fit.py
"""
import time

import torch
import torch.nn.functional as F

from ugtsr.checkpoint import load_checkpoint
from ugtsr.train.gate_cache import GateCache, _dihedral, evaluate, optimal_global_weights

torch.set_num_threads(2)
torch.manual_seed(0)
d = torch.load("runs/v3b/x4_cache.pt", weights_only=True)
c = GateCache(d["lq"], d["sr"], d["hr"], d["component"])
m = load_checkpoint("runs/v3c/x4_global/final.pt").build_model().eval()
g = m.fidelity_gate
# fresh estimate, logit-space regression with targets clamped to [0.005, 0.995]
for mod in list(g.global_features) + list(g.global_head):
    if hasattr(mod, "reset_parameters"):
        mod.reset_parameters()
torch.nn.init.zeros_(g.global_head[-1].weight)
torch.nn.init.zeros_(g.global_head[-1].bias)
tgt = torch.logit(optimal_global_weights(c, 4, lo=0.005, hi=0.995))
idx = torch.arange(len(c))
tr, va = idx[:-160], idx[-160:]
opt = torch.optim.Adam(list(g.global_features.parameters()) + list(g.global_head.parameters()), lr=2e-3)
gen = torch.Generator().manual_seed(42)
t = time.time()
for _ in range(3000):
    ids = tr[torch.randint(len(tr), (32,), generator=gen)]
    lq = _dihedral(c.lq[ids], int(torch.randint(8, (1,), generator=gen)))
    loss = F.smooth_l1_loss(g.global_estimate(lq)[:, 0], tgt[ids])
    opt.zero_grad()
    loss.backward()
    opt.step()
r = evaluate(m, c, va)
print(f"{time.time()-t:.0f}s", {k: round(v["gate"] - v["bicubic"], 2) for k, v in r.items()}, {k: round(v.get("weight", 0), 2) for k, v in r.items()})
