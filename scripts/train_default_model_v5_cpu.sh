#!/usr/bin/env bash
# Fifth x4 release (issue 13): the fourth release's encoder up stage at twice the LR and the
# Align-Attention that fuses its skip, replaced by a sub-pixel convolution of the LR skip that is
# added to the decoder's feature (UGTSRConfig.subpixel_skips), distilled from the fourth release
# with `python -m ugtsr.train.distill_tail --student skip`. Everything else is the fourth release's,
# frozen; the new convolution, the last decoder stage, the output convolution and the uncertainty
# head train. Run from the repository root on the 2-core CPU (no GPU lent).
set -euo pipefail
. .venv/bin/activate
MIX=${MIX:-bsrgan=0.25,realesrgan=0.2,classic=0.2,light=0.15,clean=0.2}
X4_INIT=${X4_INIT:-runtime/models/ugtsr_tiny_x4.pt}
mkdir -p runs/v5
python -m ugtsr.train.distill_tail --student skip --init "$X4_INIT" --out runs/v5/x4_skip --seed 53 --threads 2 \
    --data data/photos/train --mixture "$MIX" --samples 2000 --patch-size 256 --crop 128 --iters 4000 \
    --batch-size 16 --eval-every 500 --hr-weight 1 --teacher-weight 0.5 --time-limit 45 > runs/v5/x4_skip.log 2>&1
