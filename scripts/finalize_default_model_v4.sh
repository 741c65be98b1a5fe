#!/usr/bin/env bash
# Ship and measure the fourth default x4 model (issue 13), after scripts/train_default_model_v4_cpu.sh, and
# re-export the x2 model with the current exporter (the gate fold: the same values, fewer nodes). Run from
# the repository root on the otherwise idle machine:
#   slim checkpoint; export (FP32 and FP16, verified) of x4 and x2; held-out quality of the new x4 beside
#   the third release; latency beside the third release (as shipped, and re-exported with the gate fold)
#   and the Compact peer; peak memory of runtime.infer on a 512x512 LR; export time; the figure.
# X4: the chosen checkpoint; PREV: the third release's x4 ONNX and .pt
# (git show 072289f:runtime/models/ugtsr_tiny_x4.{onnx,pt}).
set -euo pipefail
. .venv/bin/activate
M=runtime/models
R=benchmarks/results
X4=${X4:?the chosen checkpoint}
PREV=${PREV:-/tmp/v3_x4.onnx}
[ -f "$PREV" ] || git show 072289f:runtime/models/ugtsr_tiny_x4.onnx > "$PREV"
[ -f "${PREV%.onnx}.pt" ] || git show 072289f:runtime/models/ugtsr_tiny_x4.pt > "${PREV%.onnx}.pt"
PREV_FOLDED=${PREV%.onnx}_folded.onnx
DRAWS=${DRAWS:-2}
CROP=${CROP:-512}
python scripts/slim_checkpoints.py --files "$X4" "$M/ugtsr_tiny_x4.pt" --license \
    "Apache-2.0 for the weights (trained by this project); training photos: public-domain / CC0 / BSD photos shipped in Python packages and the GPL-2+ photographs of Debian's mate-backgrounds (model card)"
scripts/export_shipped_models.sh  # FP32 + FP16 exports of x4 and x2, verified, and export.check
python -m export.onnx "${PREV%.onnx}.pt" -o "$PREV_FOLDED" --overwrite --json /tmp/prev_folded_export.json
for pipe in bsrgan bsrgan_plus realesrgan classic bicubic; do
  d=$DRAWS; [ "$pipe" = bicubic ] && d=1
  python -m benchmarks.quality --model "$M/ugtsr_tiny_x4.onnx" --name "UGTSR tiny x4 (v4)" --model "$PREV" \
      --name "previous default" --data data/photos/val --scale 4 --pipeline "$pipe" --seed 0 --draws "$d" \
      --crop "$CROP" --threads 2 --tag "default_model_${pipe}_x4"
done
python scripts/quality_per_photo.py "$R"/quality_default_model_{bsrgan,bsrgan_plus,realesrgan,classic,bicubic}_x4.json \
    > "$R/quality_default_model_per_photo_x4.md"
python scripts/quality_table.py "$R"/quality_default_model_{bsrgan,bsrgan_plus,realesrgan,classic,bicubic}_x4.json \
    > "$R/quality_default_model_table_x4.md"
python -m benchmarks.latency --peers --ours "$M/ugtsr_tiny_x4.onnx" "$PREV_FOLDED" "$PREV" --sizes 128 \
    --peer-threads 1 2 --rrdb-max-side 1 --no-peak --tag default_model_v4_latency
for model in "$M/ugtsr_tiny_x4.onnx" "$PREV"; do
  python -m benchmarks.latency --peak-memory --onnx "$model" --peak-size 512 --peak-tile 256 --threads 1 \
      --tag "peakmem_512_$(basename "${model%.onnx}")_v4"
done
python -m benchmarks.export_time --checkpoint "$M/ugtsr_tiny_x4.pt" --repeats 2 --out "$R/export_time_v4.json"
python scripts/make_figure.py --hr data/photos/val/chelsea.png --crop 100,20,240 --zoom 1 --seed 1 --out docs/before_after.png
