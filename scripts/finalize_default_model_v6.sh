#!/usr/bin/env bash
# Ship and measure the sixth default x4 model (issue 13: every decoder stage norm-free), after
# scripts/train_default_model_v6_cpu.sh. Run from the repository root on the otherwise idle machine.
# Per scale in SCALES (default "4"; the x2 model is the fourth release's):
#   slim checkpoint; export (FP32 and FP16, verified) and export.check; held-out quality beside the
#   previous release; latency beside the previous release and the Compact peer (one and two threads,
#   128x128 and 256x256 LR, median and paired ratio of interleaved rounds); peak memory of runtime.infer on a 512x512 LR; x4 also
#   the export time and the figure.
# X4 / X2: the chosen checkpoints; PREV4 / PREV2: the previous releases' ONNX files (default: those of
# git 254069b, the fifth x4 and the fourth x2 release).
set -euo pipefail
. .venv/bin/activate
M=runtime/models
R=benchmarks/results
SCALES=${SCALES:-4}
DRAWS=${DRAWS:-2}
CROP=${CROP:-512}
LICENSE="Apache-2.0 for the weights (trained by this project); training photos: public-domain / CC0 / BSD photos shipped in Python packages and the GPL-2+ photographs of Debian's mate-backgrounds (model card)"
for s in $SCALES; do
  ckpt_var=X$s; prev_var=PREV$s
  CKPT=${!ckpt_var:?the chosen x$s checkpoint}
  PREV=${!prev_var:-/tmp/v6_prev_x$s.onnx}
  [ -f "$PREV" ] || git show "254069b:$M/ugtsr_tiny_x$s.onnx" > "$PREV"
  python scripts/slim_checkpoints.py --files "$CKPT" "$M/ugtsr_tiny_x$s.pt" --license "$LICENSE"
  scripts/export_shipped_models.sh "$s"
  for pipe in bsrgan bsrgan_plus realesrgan classic bicubic; do
    d=$DRAWS; [ "$pipe" = bicubic ] && d=1
    python -m benchmarks.quality --model "$M/ugtsr_tiny_x$s.onnx" --name "UGTSR tiny x$s (v6)" --model "$PREV" \
        --name "previous default" --data data/photos/val --scale "$s" --pipeline "$pipe" --seed 0 --draws "$d" \
        --crop "$CROP" --threads 2 --tag "default_model_${pipe}_x$s"
  done
  python scripts/quality_per_photo.py "$R"/quality_default_model_{bsrgan,bsrgan_plus,realesrgan,classic,bicubic}_x$s.json \
      > "$R/quality_default_model_per_photo_x$s.md"
  python scripts/quality_table.py "$R"/quality_default_model_{bsrgan,bsrgan_plus,realesrgan,classic,bicubic}_x$s.json \
      > "$R/quality_default_model_table_x$s.md"
  python scripts/experiments/gate_weights.py --model "$M/ugtsr_tiny_x$s.pt" --data data/photos/val \
      > "$R/gate_weights_x${s}_v6.md"
  python -m benchmarks.latency --peers --ours "$M/ugtsr_tiny_x$s.onnx" "$PREV" --sizes 128 256 --repeats 7 \
      --peer-threads 1 2 --rrdb-max-side 1 --peer-cache /tmp/peers_cache --tag "default_model_v6_latency_x$s"
  for model in "$M/ugtsr_tiny_x$s.onnx" "$PREV"; do
    python -m benchmarks.latency --peak-memory --onnx "$model" --peak-size 512 --peak-tile 256 --threads 1 \
        --tag "peakmem_512_$(basename "${model%.onnx}")_v6"
  done
done
if [[ " $SCALES " == *" 4 "* ]]; then
  python -m benchmarks.export_time --checkpoint "$M/ugtsr_tiny_x4.pt" --repeats 2 --out "$R/export_time_v6.json"
  python scripts/make_figure.py --hr data/photos/val/chelsea.png --crop 100,20,240 --zoom 1 --seed 1 --out docs/before_after.png
fi
