#!/usr/bin/env bash
# Re-export the shipped x4 and x2 models without torch.onnx's symbolic intermediate shapes
# (export.value_info; ONNX Runtime's planner held buffers for far-off reuse because of them) and
# measure them beside the previous files (issue 13, efficiency log section 8). Run from the
# repository root on the otherwise idle machine; the weights are unchanged.
# PREV4 / PREV2: the previous x4 / x2 ONNX (git show 9371625:runtime/models/ugtsr_tiny_x{4,2}.onnx).
set -euo pipefail
. .venv/bin/activate
M=runtime/models
R=benchmarks/results
PREV4=${PREV4:?previous x4 onnx}
PREV2=${PREV2:?previous x2 onnx}
scripts/export_shipped_models.sh  # FP32 + FP16 exports of x4 and x2, verified, and export.check
# the x4 graph with Align-Attention as inline ops (what ONNX Runtime runs without the fused kernel)
python -m export.onnx "$M/ugtsr_tiny_x4.pt" -o /tmp/ugtsr_tiny_x4_plain.onnx --overwrite --plain-attention -q
# peak RSS of runtime.infer on a 512x512 LR without tiling (and with 256 tiles)
for model in "$M/ugtsr_tiny_x4.onnx" "$PREV4" "$M/ugtsr_tiny_x2.onnx" "$PREV2" /tmp/ugtsr_tiny_x4_plain.onnx; do
  python -m benchmarks.latency --peak-memory --onnx "$model" --peak-size 512 --peak-tile 256 --threads 1 \
      --tag "peakmem_512_$(basename "${model%.onnx}")_value_info"
done
# latency side by side: the new file, the previous one, the peers (64/128/256 LR, one and two threads)
python -m benchmarks.latency --peers --ours "$M/ugtsr_tiny_x4.onnx" "$PREV4" --sizes 64 128 256 \
    --peer-threads 1 2 --tag value_info_latency
python -m benchmarks.export_time --checkpoint "$M/ugtsr_tiny_x4.pt" --repeats 3 --out "$R/export_time_value_info.json"
