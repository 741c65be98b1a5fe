#!/usr/bin/env bash
# (The first release's script; the second default models: scripts/finalize_default_model_v2.sh. Its result files were
# replaced or, for accuracy_default_model.* and tiling_default_model*, kept as the first release's.)
# Ship the default model and measure it (README model card): export, slim checkpoint, quality on
# the held-out photos (the training degradations, an unseen one and the clean bicubic protocol), matching accuracy, tiling,
# latency, the before/after figure. Run from the repository root after the training scripts.
set -euo pipefail
. .venv/bin/activate
CKPT=${CKPT:-runs/cf_gate/swa.pt}
M=runtime/models
python - "$CKPT" "$M/ugtsr_tiny_x4.pt" <<'PY'
import sys
from ugtsr.checkpoint import load_checkpoint, save_checkpoint
ck = load_checkpoint(sys.argv[1])
keep = {k: v for k, v in ck.metadata.items() if isinstance(v, (str, int, float, bool, type(None)))}
keep["license"] = "Apache-2.0 (trained by this project on public-domain / CC0 / BSD photos shipped in Python packages)"
save_checkpoint(sys.argv[2], ck.build_model(), **keep)
PY
python -m export.onnx "$M/ugtsr_tiny_x4.pt" -o "$M/ugtsr_tiny_x4.onnx" --json benchmarks/results/export_default_model.json
python -m export.check "$M/ugtsr_tiny_x4.onnx" > benchmarks/results/export_check_default_model.txt
for pipe in bsrgan bsrgan_plus realesrgan bicubic; do
  python -m benchmarks.quality --model "$M/ugtsr_tiny_x4.onnx" --name "UGTSR tiny x4" --data data/photos/val \
      --scale 4 --pipeline "$pipe" --seed 0 --draws 5 --threads 2 --tag "default_model_${pipe}_x4"
done
python scripts/quality_per_photo.py benchmarks/results/quality_default_model_{bsrgan,bsrgan_plus,realesrgan,bicubic}_x4.json \
    > benchmarks/results/quality_default_model_per_photo.md
python -m benchmarks.accuracy --prior runs/gpu/prior.pt --model runs/cpu_s1/final.pt --name "stage I (nearest)" \
    --model "$CKPT" --name "stage II (top-3 + fusion)" --data data/photos/val --seed 0 --threads 2 --tag default_model
python -m benchmarks.tiling --data data/photos/val --tiles 64 128 --pads 16 32 64 --tag default_model
python scripts/make_figure.py --hr data/photos/val/chelsea.png --crop 100,20,240 --zoom 1 --seed 1 --out docs/before_after.png
python -m benchmarks.tiling --data data/photos/val --as-is --tiles 128 256 --pads 32 64 --tag default_model_photos
