"""Export candidate architectures with random weights (codebook spread like a trained one)."""
import sys, torch, json
import ugtsr
from ugtsr.config import PRESETS
from benchmarks.latency_peers import _peer_onnx, COMPACT, count_gflop
from export.onnx import onnx_from_checkpoint, ExportOptions
from pathlib import Path
out = Path("/tmp/eff"); res = {}
_, cp, _ = _peer_onnx(COMPACT, out, 0)
from benchmarks.latency_peers import build_peer
res["compact"] = [str(cp), count_gflop(build_peer(COMPACT), 128, 128)[0]]
base = PRESETS["tiny_x4"]
variants = {
 "lite_64_48_16": base.replace(name="lite_x4", latent_scale=4, channels=(64, 48, 16), codebook_size=1024),
 "lite_64_32_16": base.replace(name="lite_x4", latent_scale=4, channels=(64, 32, 16), codebook_size=1024),
}
for k, cfg in variants.items():
    torch.manual_seed(0)
    m = ugtsr.build_model(cfg).eval()
    with torch.no_grad(): m.codebook.embedding.normal_(0, 0.5)
    ck = out / f"{k}.pt"; ugtsr.save_checkpoint(ck, m)
    r = onnx_from_checkpoint(ck, out / f"{k}.onnx", overwrite=True, options=ExportOptions(verify=False))
    res[k] = [str(out / f"{k}.onnx"), count_gflop(m, 128, 128)[0]]
    print(k, ugtsr.count_parameters(m), res[k][1])
res["tiny_x4_shipped"] = ["runtime/models/ugtsr_tiny_x4.onnx", 64.1]
json.dump(res, open(out / "models.json", "w"), indent=1)
