#!/usr/bin/env bash
# Ship and measure the second default models (issue 14; README model card), after
# scripts/train_default_model_v2_cpu.sh: slim checkpoints, export (FP32 and FP16, verified), quality on
# the held-out photos against bicubic, Lanczos and the previous default model (x4), per photo,
# latency beside the previous default model and the Compact peer, 128x128 LR, interleaved rounds
python -m benchmarks.latency --peers --ours "$M/ugtsr_tiny_x4.onnx" "$PREV" --sizes 128 \
    --peer-threads 1 2 --rrdb-max-side 1 --no-peak --tag default_model_v2_latency
python -m benchmarks.latency --onnx "$M/ugtsr_tiny_x2.onnx" --no-onnx --sizes 128 --backends ort-cpu-fp32 --threads 1 \
    --repeats 5 --tag default_model_x2_cpu
python scripts/make_figure.py --hr data/photos/val/chelsea.png --crop 100,20,240 --zoom 1 --seed 1 --out docs/before_after.png
for s in 4 2; do
  python scripts/quality_table.py "$R"/quality_default_model_{bsrgan,bsrgan_plus,realesrgan,classic,bicubic}_x$s.json \
      > "$R/quality_default_model_table_x$s.md"
done
