"""Per-component PSNR gain over bicubic and the mean blend weight on the 160 held-back cache samples
(the last tenth of runs/v3b/x{4,2}_cache.pt, written by scripts/train_default_model_v3_cpu.sh) for the
second release's gate and the third release's (model card, "Training of this release").

    python scripts/experiments/gate_heldback.py PREV_X4.pt PREV_X2.pt > docs/default_model/v3/heldback.txt
"""
import sys

import torch

from ugtsr.checkpoint import load_checkpoint
from ugtsr.train.gate_cache import GateCache, evaluate

torch.set_num_threads(1)
for name, ck, cache in (("x4", sys.argv[1], "runs/v3b/x4_cache.pt"), ("x2", sys.argv[2], "runs/v3b/x2_cache.pt")):
    d = torch.load(cache, weights_only=True)
    c = GateCache(d["lq"], d["sr"], d["hr"], d["component"])
    val = torch.arange(len(c))[-160:]
    for label, path in (("previous", ck), ("this", f"runs/v3c/{name}_global/final.pt")):
        m = load_checkpoint(path).build_model().eval()
        t = evaluate(m, c, val)
        print(name, label, {k: round(v["gate"] - v["bicubic"], 2) for k, v in t.items()}, {k: round(v.get("weight", 0), 2) for k, v in t.items()}, flush=True)
