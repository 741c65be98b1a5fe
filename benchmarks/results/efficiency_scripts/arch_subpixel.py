# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/arch_subpixel.py (see efficiency_log.md section 6)
import sys, torch
import ugtsr
from ugtsr.config import UGTSRConfig
from export.onnx import onnx_from_checkpoint, ExportOptions
from benchmarks.latency_peers import count_gflop
from pathlib import Path
out = Path("/tmp/eff")
base = UGTSRConfig.from_dict(torch.load("runtime/models/ugtsr_tiny_x4.pt", weights_only=True)["config"])
variants = {
 "ship_rand": base,
 "sp": base.replace(subpixel_stages=1),
 "sp_p1": base.replace(subpixel_stages=1, plain_stages=1),
 "sp_p2": base.replace(subpixel_stages=1, plain_stages=2),
 "p2": base.replace(plain_stages=2),
}
for k in sys.argv[1:] or variants:
    cfg = variants[k]
    torch.manual_seed(0)
    m = ugtsr.build_model(cfg).eval()
    with torch.no_grad(): m.codebook.embedding.normal_(0, 0.5)
    ck = out / f"{k}.pt"; ugtsr.save_checkpoint(ck, m)
    onnx_from_checkpoint(ck, out / f"{k}.onnx", overwrite=True, options=ExportOptions(verify=False))
    print(k, ugtsr.count_parameters(m), round(count_gflop(m, 128, 128)[0], 2), flush=True)
