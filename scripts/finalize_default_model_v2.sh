#!/usr/bin/env bash
# Ship and measure the second default models (issue 14; README model card), after
# scripts/train_default_model_v2_cpu.sh: slim checkpoints, export (FP32 and FP16, verified), quality on
# the held-out photos against bicubic, Lanczos and the previous default model (x4), per photo,
# side-by-side latency, the figure. Run from the repository root.
#   PREV: the previous default model's ONNX (default: taken from git, commit 0f641fa); PREV2: the
#   previous x2 model's ONNX (default: none); NAME4 / NAME2: the new models' names in the tables.
#   The third release ran it as
#   X4=runs/v3c/x4_global/final.pt X2=runs/v3c/x2_global/final.pt PREV=/tmp/v2_x4.onnx PREV2=/tmp/v2_x2.onnx \
#     NAME4="UGTSR tiny x4 (v3)" NAME2="UGTSR tiny x2 (v3)" bash scripts/finalize_default_model_v2.sh
set -euo pipefail
. .venv/bin/activate
M=runtime/models
R=benchmarks/results
PREV=${PREV:-/tmp/prev_ugtsr_tiny_x4.onnx}
[ -f "$PREV" ] || git show 0f641fa:runtime/models/ugtsr_tiny_x4.onnx > "$PREV"
[ -f "${PREV%.onnx}.pt" ] || git show 0f641fa:runtime/models/ugtsr_tiny_x4.pt > "${PREV%.onnx}.pt"
DRAWS=${DRAWS:-2}
CROP=${CROP:-512}
X4=${X4:-runs/v2/x4/swa.pt}        # chosen on the training photos (scripts/train_default_model_v2_cpu.sh, model card)
X2=${X2:-runs/v2/x2_gate/swa.pt}
NAME4=${NAME4:-UGTSR tiny x4 (v2)}
NAME2=${NAME2:-UGTSR tiny x2}
PREV2=${PREV2:-}
PREV2_ARGS=(); [ -n "$PREV2" ] && PREV2_ARGS=(--model "$PREV2" --name "previous x2")
python scripts/slim_checkpoints.py --files "$X4" "$M/ugtsr_tiny_x4.pt" "$X2" "$M/ugtsr_tiny_x2.pt" --license \
    "Apache-2.0 for the weights (trained by this project); training photos: public-domain / CC0 / BSD photos shipped in Python packages and the GPL-2+ photographs of Debian's mate-backgrounds (model card)"
scripts/export_shipped_models.sh  # FP32 + FP16 exports of x4 and x2, verified, and export.check
# held-out quality: x4 (new and previous model) and x2, one thread per job, both at once
q() {  # scale tag models...
  local s=$1 tag=$2; shift 2
  for pipe in bsrgan bsrgan_plus realesrgan classic bicubic; do
    d=$DRAWS; [ "$pipe" = bicubic ] && d=1
    python -m benchmarks.quality "$@" --data data/photos/val --scale "$s" --pipeline "$pipe" --seed 0 \
        --draws "$d" --crop "$CROP" --threads 1 --tag "${tag}_${pipe}_x$s"
  done
}
q 4 default_model --model "$M/ugtsr_tiny_x4.onnx" --name "$NAME4" --model "$PREV" --name "previous default" \
    > /tmp/q4.log 2>&1 &
q 2 default_model --model "$M/ugtsr_tiny_x2.onnx" --name "$NAME2" "${PREV2_ARGS[@]}" > /tmp/q2.log 2>&1 &
wait
for s in 4 2; do
  python scripts/quality_per_photo.py "$R"/quality_default_model_{bsrgan,bsrgan_plus,realesrgan,classic,bicubic}_x$s.json \
      > "$R/quality_default_model_per_photo_x$s.md"
  python scripts/quality_table.py "$R"/quality_default_model_{bsrgan,bsrgan_plus,realesrgan,classic,bicubic}_x$s.json \
      > "$R/quality_default_model_table_x$s.md"
done
# latency beside the previous default model and the Compact peer, 128x128 LR, interleaved rounds
python -m benchmarks.latency --peers --ours "$M/ugtsr_tiny_x4.onnx" "$PREV" --sizes 128 \
    --peer-threads 1 2 --rrdb-max-side 1 --no-peak --tag "${LAT_TAG:-default_model_v2_latency}"
python -m benchmarks.latency --onnx "$M/ugtsr_tiny_x2.onnx" --no-onnx --sizes 128 --backends ort-cpu-fp32 --threads 1 \
    --repeats 5 --tag default_model_x2_cpu
python scripts/make_figure.py --hr data/photos/val/chelsea.png --crop 100,20,240 --zoom 1 --seed 1 --out docs/before_after.png
