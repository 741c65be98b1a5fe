#!/usr/bin/env bash
# Ship and measure the fourth x2 model (issue 13): the third release's x2 network with a sub-pixel last
# stage, distilled like the x4 (scripts/train_default_model_v4_cpu.sh). Slim checkpoint, export (FP32 and
# FP16, verified), held-out quality beside the third release's x2, latency side by side (128x128 LR, one
# and two threads, median of 7 interleaved rounds), peak memory of runtime.infer on a 512x512 LR.
# X2: the chosen checkpoint; PREV2: the third release's x2 ONNX (git show 072289f:runtime/models/ugtsr_tiny_x2.onnx).
set -euo pipefail
. .venv/bin/activate
M=runtime/models
R=benchmarks/results
X2=${X2:?the chosen checkpoint}
PREV2=${PREV2:-/tmp/v3_x2.onnx}
[ -f "$PREV2" ] || git show 072289f:runtime/models/ugtsr_tiny_x2.onnx > "$PREV2"
python scripts/slim_checkpoints.py --files "$X2" "$M/ugtsr_tiny_x2.pt" --license \
    "Apache-2.0 for the weights (trained by this project); training photos: public-domain / CC0 / BSD photos shipped in Python packages and the GPL-2+ photographs of Debian's mate-backgrounds (model card)"
scripts/export_shipped_models.sh 2  # FP32 + FP16 exports of x2, verified, and export.check
for pipe in bsrgan bsrgan_plus realesrgan classic bicubic; do
  d=2; [ "$pipe" = bicubic ] && d=1
  python -m benchmarks.quality --model "$M/ugtsr_tiny_x2.onnx" --name "UGTSR tiny x2 (v4)" --model "$PREV2" \
      --name "previous x2" --data data/photos/val --scale 2 --pipeline "$pipe" --seed 0 --draws "$d" --crop 512 \
      --threads 2 --tag "default_model_${pipe}_x2"
done
python scripts/quality_per_photo.py "$R"/quality_default_model_{bsrgan,bsrgan_plus,realesrgan,classic,bicubic}_x2.json \
    > "$R/quality_default_model_per_photo_x2.md"
python scripts/quality_table.py "$R"/quality_default_model_{bsrgan,bsrgan_plus,realesrgan,classic,bicubic}_x2.json \
    > "$R/quality_default_model_table_x2.md"
for t in 1 2; do
  python benchmarks/results/efficiency_scripts/steps.py 128 7 $t "$R/latency_default_model_x2_v4_t$t.json" \
      "x2_v4=$M/ugtsr_tiny_x2.onnx:0" "x2_previous=$PREV2:0" \
      "compact=${COMPACT:-/tmp/eff/peers/realesr-general-x4v3_seed0.onnx}:39.62"
done
python -m benchmarks.latency --peak-memory --onnx "$M/ugtsr_tiny_x2.onnx" --peak-size 512 --peak-tile 256 --threads 1 \
    --tag peakmem_512_ugtsr_tiny_x2_v4
python -m benchmarks.latency --peak-memory --onnx "$PREV2" --peak-size 512 --peak-tile 256 --threads 1 \
    --tag peakmem_512_v3_x2_v4
