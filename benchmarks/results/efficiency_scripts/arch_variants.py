import sys, torch, json
import ugtsr
from ugtsr.config import PRESETS
from export.onnx import onnx_from_checkpoint, ExportOptions
from benchmarks.latency_peers import count_gflop
from pathlib import Path
out = Path("/tmp/eff"); res = {}
t = PRESETS["tiny_x4"]; t4 = PRESETS["tiny4_x4"]
variants = {
 "plain1": t.replace(plain_stages=1),
 "plain2": t.replace(plain_stages=2),
 "plain3n": t.replace(plain_stages=3, channels=(64, 64, 32, 16)),
 "t4plain2": t4.replace(plain_stages=2),
}
for k in sys.argv[1:] or variants:
    cfg = variants[k]
    torch.manual_seed(0)
    m = ugtsr.build_model(cfg).eval()
    with torch.no_grad(): m.codebook.embedding.normal_(0, 0.5)
    ck = out / f"{k}.pt"; ugtsr.save_checkpoint(ck, m)
    onnx_from_checkpoint(ck, out / f"{k}.onnx", overwrite=True, options=ExportOptions(verify=False))
    res[k] = count_gflop(m, 128, 128)[0]
    print(k, ugtsr.count_parameters(m), round(res[k], 2), flush=True)
