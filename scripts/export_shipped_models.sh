#!/usr/bin/env bash
# Export the shipped x4 and x2 checkpoints (runtime/models/ugtsr_tiny_x{4,2}.pt) to the shipped ONNX files
# (arguments: the scales to export, default "4 2"),
# FP32 verified (report benchmarks/results/export_default_model_x{4,2}.json), FP16 with FP32 islands to
# /tmp (report ..._fp16.json), and the TensorRT parser check (export_check_default_model_x{4,2}.txt).
# Called by the scripts/finalize_*.sh release records, from the repository root with the dev venv active.
set -euo pipefail
M=runtime/models
R=benchmarks/results
scales=("$@")
[ ${#scales[@]} -gt 0 ] || scales=(4 2)
for s in "${scales[@]}"; do
  python -m export.onnx "$M/ugtsr_tiny_x$s.pt" -o "$M/ugtsr_tiny_x$s.onnx" --overwrite --json "$R/export_default_model_x$s.json"
  python -m export.onnx "$M/ugtsr_tiny_x$s.pt" -o "/tmp/ugtsr_tiny_x${s}_fp16.onnx" --overwrite --precision fp16 \
      --json "$R/export_default_model_x${s}_fp16.json"
  python -m export.check "$M/ugtsr_tiny_x$s.onnx" > "$R/export_check_default_model_x$s.txt"
done
