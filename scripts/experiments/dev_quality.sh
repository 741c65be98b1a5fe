#!/usr/bin/env bash
# Model selection without the held-out photos: PSNR-Y / SSIM-Y of checkpoints on the TRAINING photos,
# degraded with seeds 100-101 (training draws its degradations from its own generator; these exact
# LR images were never seen), four pipelines. In-sample content, so the absolute numbers flatter the
# models; only the comparison between models is used.
#
#   TAG=name scripts/experiments/dev_quality.sh A.pt B.pt ...            384-px centre crops of the photos
#   HALF=1 TAG=name scripts/experiments/dev_quality.sh A.pt B.pt ...     the photos at half size (cv2 INTER_AREA),
#                                                                         i.e. their textures at a scale not trained on
# -> runs/dev/quality_dev[half]_<pipeline>_<TAG>.md
set -euo pipefail
. .venv/bin/activate
args=()
for m in "$@"; do args+=(--model "$m"); done
data=data/photos/train; extra=(--crop 384); kind=dev
if [ -n "${HALF:-}" ]; then
  python - <<'PY'
import pathlib, cv2
out = pathlib.Path("data/dev_half"); out.mkdir(parents=True, exist_ok=True)
for p in sorted(pathlib.Path("data/photos/train").glob("*.png")):
    im = cv2.imread(str(p))
    cv2.imwrite(str(out / p.name), cv2.resize(im, (im.shape[1] // 2, im.shape[0] // 2), interpolation=cv2.INTER_AREA))
PY
  data=data/dev_half; extra=(); kind=devhalf
fi
for P in bsrgan bsrgan_plus realesrgan bicubic; do
  python -m benchmarks.quality "${args[@]}" --data "$data" --pipeline "$P" --seed 100 --draws 2 \
      "${extra[@]}" --no-niqe --threads "${THREADS:-1}" --tag "${kind}_${P}_${TAG:-dev}" --out-dir runs/dev
done
