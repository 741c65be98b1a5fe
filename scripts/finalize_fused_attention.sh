#!/usr/bin/env bash
# Re-export the shipped x4 and x2 models with Align-Attention as WindowAttention nodes (export.attention;
# ONNX Runtime CPU runs them as its fused MultiHeadAttention kernel) and measure them beside the previous
# files (the fourth release as committed before this change) and the Real-ESRGAN-shaped peers (issue 13).
# Run from the repository root on the otherwise idle machine. The weights are unchanged.
# PREV4 / PREV2: the previous x4 / x2 ONNX (git show <rev>:runtime/models/ugtsr_tiny_x{4,2}.onnx).
set -euo pipefail
. .venv/bin/activate
M=runtime/models
R=benchmarks/results
PREV4=${PREV4:?previous x4 onnx}
PREV2=${PREV2:?previous x2 onnx}
scripts/export_shipped_models.sh  # FP32 + FP16 exports of x4 and x2, verified, and export.check
# latency side by side: the new file, the previous one, the peers (64/128/256 LR, one and two threads)
python -m benchmarks.latency --peers --ours "$M/ugtsr_tiny_x4.onnx" "$PREV4" --sizes 64 128 256 \
    --peer-threads 1 2 --tag fused_attention_latency
python -m benchmarks.latency --peers --ours "$M/ugtsr_tiny_x2.onnx" "$PREV2" --checkpoint "$M/ugtsr_tiny_x2.pt" \
    --sizes 128 --peer-threads 1 2 --rrdb-max-side 1 --no-peak --no-plot --tag fused_attention_latency_x2
# peak RSS of runtime.infer on a 512x512 LR without tiling
for model in "$M/ugtsr_tiny_x4.onnx" "$PREV4" "$M/ugtsr_tiny_x2.onnx" "$PREV2"; do
  python -m benchmarks.latency --peak-memory --onnx "$model" --peak-size 512 --peak-tile 256 --threads 1 \
      --tag "peakmem_512_$(basename "${model%.onnx}")_fused"
done
python -m benchmarks.export_time --checkpoint "$M/ugtsr_tiny_x4.pt" --repeats 3 --out "$R/export_time_fused_attention.json"
