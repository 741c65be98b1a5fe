# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/variant_export.py OUT.onnx [up] [kv]
# (see efficiency_log.md section 7). Exports the shipped x4 checkpoint with two exact export-time
# formulations that were measured and not kept: "up" = nearest-upsample + 3x3 conv as one conv at the
# input resolution with 4x the output channels + pixel_shuffle; "kv" = Align-Attention's to_kv as two convs.
import sys, torch
import torch.nn.functional as F
from ugtsr import blocks, attention

def upsample_conv(conv, x):
    def phases(w, dim):
        t0, t1, t2 = (w.narrow(dim, i, 1) for i in range(3))
        z = torch.zeros_like(t0)
        return torch.cat([t0, t1 + t2, z], dim), torch.cat([z, t0 + t1, t2], dim)
    c_out, c_in = conv.weight.shape[:2]
    w = torch.stack([torch.stack(phases(r, 3), 1) for r in phases(conv.weight, 2)], 1).reshape(4 * c_out, c_in, 3, 3)
    return F.pixel_shuffle(F.conv2d(x, w, conv.bias.repeat_interleave(4), padding=1), 2)

if "up" in sys.argv[2:]:
    orig = blocks.UpStage.forward
    def fwd(self, x):
        if self.upsample and torch.onnx.is_in_onnx_export():
            return self.res(upsample_conv(self.conv, x))
        return orig(self, x)
    blocks.UpStage.forward = fwd
if "kv" in sys.argv[2:]:
    def attend(self, hq, lq):
        q = self.to_q(self.norm_lq(lq)); h = self.norm_hq(hq); c = self.to_kv.out_channels // 2
        w, b = self.to_kv.weight, self.to_kv.bias
        k, v = F.conv2d(h, w[:c], b[:c]), F.conv2d(h, w[c:], b[c:])
        return attention.windowed_cross_attention(q, k, v, heads=self.heads, window=self.window)
    attention.AlignAttention.attend = attend
from export.onnx import onnx_from_checkpoint
onnx_from_checkpoint("runtime/models/ugtsr_tiny_x4.pt", sys.argv[1], overwrite=True)
