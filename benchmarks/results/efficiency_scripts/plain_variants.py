# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/plain_variants.py p2 p3 (the shipped weights with norm-free decoder stages, /tmp/eff; see efficiency_log.md section 10)
import sys, torch, ugtsr
from ugtsr.config import UGTSRConfig
from export.onnx import onnx_from_checkpoint, ExportOptions
from benchmarks.latency_peers import count_gflop
from pathlib import Path
ck0 = torch.load("runtime/models/ugtsr_tiny_x4.pt", weights_only=True)
base = UGTSRConfig.from_dict(ck0["config"])
kw = {"p2": dict(plain_stages=2), "p3": dict(plain_stages=3)}
for k in sys.argv[1:]:
    torch.manual_seed(0); m = ugtsr.build_model(base.replace(**kw[k])).eval()
    sd = m.state_dict(); src = ck0["ema_state_dict"] or ck0["state_dict"]
    n = 0
    for a, v in src.items():
        if a in sd and sd[a].shape == v.shape: sd[a] = v; n += 1
    m.load_state_dict(sd)
    p = Path(f"/tmp/eff/{k}.pt"); ugtsr.save_checkpoint(p, m)
    onnx_from_checkpoint(p, f"/tmp/eff/{k}.onnx", overwrite=True, options=ExportOptions(verify=False))
    g, h = count_gflop(m, 128, 128, module="uncertainty_head")
    print(k, "copied", n, "of", len(sd), "gflop sr", round(g - h, 3), flush=True)
