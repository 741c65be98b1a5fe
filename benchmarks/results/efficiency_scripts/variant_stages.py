# issue-13 experiment script, run as: python benchmarks/results/efficiency_scripts/variant_stages.py OUT.onnx enc|dec (see efficiency_log.md section 7; reads variant_export.py)
import sys, torch
import torch.nn.functional as F
sys.argv = [sys.argv[0]] + sys.argv[1:]
from ugtsr import blocks
exec(open("benchmarks/results/efficiency_scripts/variant_export.py").read().split("if \"up\" in sys.argv")[0].split("from ugtsr import blocks, attention")[1])
which = sys.argv[2]
import ugtsr
net = ugtsr.load_model("runtime/models/ugtsr_tiny_x4.pt")
stages = list(net.encoder.up) if which == "enc" else list(net.decoder.stages) if which == "dec" else []
for st in stages:
    if st.upsample:
        def fwd(x, st=st):
            if torch.onnx.is_in_onnx_export():
                return st.res(upsample_conv(st.conv, x))
            return st.res(st.conv(blocks.upsample2x(x)))
        st.forward = fwd
from export.onnx import onnx_from_checkpoint
onnx_from_checkpoint("runtime/models/ugtsr_tiny_x4.pt", sys.argv[1], model=net, overwrite=True)
