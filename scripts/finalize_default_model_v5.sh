#!/usr/bin/env bash
# Ship and measure the fifth default x4 model (issue 13), after scripts/train_default_model_v5_cpu.sh. Run
# from the repository root on the otherwise idle machine:
#   slim checkpoint; export (FP32 and FP16, verified) of x4; held-out quality of the new x4 beside the
#   fourth release; latency beside the fourth release and the Compact peer (one and two threads, 128
#   256 LR); peak memory of runtime.infer on a 512x512 LR; export time; the figure.
# X4: the chosen checkpoint; PREV: the fourth release's x4 ONNX, with its .pt beside it
# (git show 89f2bce:runtime/models/ugtsr_tiny_x4.{onnx,pt}).
set -euo pipefail
. .venv/bin/activate
M=runtime/models
R=benchmarks/results
X4=${X4:?the chosen checkpoint}
PREV=${PREV:-/tmp/v4_x4.onnx}
[ -f "$PREV" ] || git show 89f2bce:runtime/models/ugtsr_tiny_x4.onnx > "$PREV"
DRAWS=${DRAWS:-2}
CROP=${CROP:-512}
python scripts/slim_checkpoints.py --files "$X4" "$M/ugtsr_tiny_x4.pt" --license \
    "Apache-2.0 for the weights (trained by this project); training photos: public-domain / CC0 / BSD photos shipped in Python packages and the GPL-2+ photographs of Debian's mate-backgrounds (model card)"
scripts/export_shipped_models.sh 4  # FP32 + FP16 exports of x4, verified, and export.check
python -m benchmarks.latency --peers --ours "$M/ugtsr_tiny_x4.onnx" "$PREV" --sizes 128 256 \
    --peer-threads 1 2 --rrdb-max-side 1 --tag default_model_v5_latency
for model in "$M/ugtsr_tiny_x4.onnx" "$PREV"; do
  python -m benchmarks.latency --peak-memory --onnx "$model" --peak-size 512 --peak-tile 256 --threads 1 \
      --tag "peakmem_512_$(basename "${model%.onnx}")_v5"
done
python -m benchmarks.export_time --checkpoint "$M/ugtsr_tiny_x4.pt" --repeats 2 --out "$R/export_time_v5.json"
for pipe in bsrgan bsrgan_plus realesrgan classic bicubic; do
  d=$DRAWS; [ "$pipe" = bicubic ] && d=1
  python -m benchmarks.quality --model "$M/ugtsr_tiny_x4.onnx" --name "UGTSR tiny x4 (v5)" --model "$PREV" \
      --name "previous default" --data data/photos/val --scale 4 --pipeline "$pipe" --seed 0 --draws "$d" \
      --crop "$CROP" --threads 2 --tag "default_model_${pipe}_x4"
done
python scripts/quality_per_photo.py "$R"/quality_default_model_{bsrgan,bsrgan_plus,realesrgan,classic,bicubic}_x4.json \
    > "$R/quality_default_model_per_photo_x4.md"
python scripts/quality_table.py "$R"/quality_default_model_{bsrgan,bsrgan_plus,realesrgan,classic,bicubic}_x4.json \
    > "$R/quality_default_model_table_x4.md"
python scripts/make_figure.py --hr data/photos/val/chelsea.png --crop 100,20,240 --zoom 1 --seed 1 --out docs/before_after.png
