#!/usr/bin/env bash
# Sixth default models (issue 14): the fifth x4 release (and the fourth x2) with the output path
# retrained as a residual on bicubic(LR), the raw LR into the last decoder stage
# (UGTSRConfig.bicubic_residual; `python -m ugtsr.train.distill_tail --student residual`). Everything
# before the last decoder stage, the colour fix and the gate are the teacher's, frozen; the last
# stage, the output convolution, the new LR convolution, the uncertainty head (and at x4 the
# sub-pixel last skip's convolution) train on the HR alone (no teacher term: the teacher is what
# falls below bicubic on a clean LR). Run from the repository root on the 2-core CPU (no GPU lent).
# WHICH=x4, x2 or both (default x4).
set -euo pipefail
. .venv/bin/activate
MIX=${MIX:-bsrgan=0.25,realesrgan=0.2,classic=0.2,light=0.15,clean=0.2}
WHICH=${WHICH:-x4}
mkdir -p runs/v6
if [ "$WHICH" != x2 ]; then
  python -m ugtsr.train.distill_tail --student residual --init "${X4_INIT:-runtime/models/ugtsr_tiny_x4.pt}" \
      --out runs/v6/x4_residual --seed 61 --threads 2 --data data/photos/train --mixture "$MIX" --samples 2000 \
      --patch-size 256 --crop 128 --iters 4000 --batch-size 16 --eval-every 500 --hr-weight 1 --teacher-weight 0 \
      --time-limit 45 > runs/v6/x4_residual.log 2>&1
fi
if [ "$WHICH" != x4 ]; then
  python -m ugtsr.train.distill_tail --student residual --init "${X2_INIT:-runtime/models/ugtsr_tiny_x2.pt}" \
      --out runs/v6/x2_residual --seed 62 --threads 2 --data data/photos/train --mixture "$MIX" --samples 2000 \
      --patch-size 256 --crop 128 --iters 4000 --batch-size 16 --eval-every 500 --hr-weight 1 --teacher-weight 0 \
      --time-limit 45 > runs/v6/x2_residual.log 2>&1
fi
