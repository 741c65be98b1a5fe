#!/usr/bin/env bash
# Model selection without the held-out photos: PSNR-Y / SSIM-Y of checkpoints on the TRAINING photos,
# degraded with seeds 100-101 (training draws its degradations from its own generator; these exact
# LR images were never seen), 384-pixel centre crops, four pipelines. In-sample content, so the
# absolute numbers flatter the models; only the comparison between models is used.
#
#   TAG=name scripts/experiments/dev_quality.sh A.pt B.pt ...     -> runs/dev/quality_dev_<pipeline>_<TAG>.md
set -euo pipefail
. .venv/bin/activate
args=()
for m in "$@"; do args+=(--model "$m"); done
for P in bsrgan bsrgan_plus realesrgan bicubic; do
  python -m benchmarks.quality "${args[@]}" --data data/photos/train --pipeline "$P" --seed 100 --draws 2 \
      --crop 384 --no-niqe --threads "${THREADS:-1}" --tag "dev_${P}_${TAG:-dev}" --out-dir runs/dev
done
