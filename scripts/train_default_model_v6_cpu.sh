#!/usr/bin/env bash
# Sixth x4 release (issue 13): the fifth release's decoder made norm-free in every stage
# (UGTSRConfig.plain_stages = 3; `python -m ugtsr.train.distill_tail --student plain`): the two decoder
# stages that still had GroupNorm residual blocks (at the LR and at twice the LR) get norm-free ones,
# which start as identities; every decoder stage, the output convolution and the uncertainty head
# train on the cached decoder inputs and skips of the fifth release (its encoder, matching,
# Align-Attention, colour fix and gate frozen), L1 to the HR (1) and to the teacher (0.5).
# Run from the repository root on the 2-core CPU (no GPU lent).
# RESIDUAL=1 also runs the attempt of docs/default_model/attempts/residual_x4.md (not shipped).
set -euo pipefail
. .venv/bin/activate
MIX=${MIX:-bsrgan=0.25,realesrgan=0.2,classic=0.2,light=0.15,clean=0.2}
X4_INIT=${X4_INIT:-runtime/models/ugtsr_tiny_x4.pt}
mkdir -p runs/v6
python -m ugtsr.train.distill_tail --student plain --init "$X4_INIT" --out runs/v6/x4_plain --seed 63 --threads 2 \
    --data data/photos/train --mixture "$MIX" --samples 1600 --patch-size 256 --crop 128 --iters 3000 \
    --batch-size 16 --eval-every 500 --hr-weight 1 --teacher-weight 0.5 --time-limit 35 \
    --cache runs/v6/x4_plain_cache.pt > runs/v6/x4_plain.log 2>&1
if [ "${RESIDUAL:-0}" = 1 ]; then
  python -m ugtsr.train.distill_tail --student residual --init "$X4_INIT" --out runs/v6/x4_residual --seed 61 \
      --threads 2 --data data/photos/train --mixture "$MIX" --samples 2000 --patch-size 256 --crop 128 --iters 4000 \
      --batch-size 16 --eval-every 500 --hr-weight 1 --teacher-weight 0 --time-limit 45 > runs/v6/x4_residual.log 2>&1
fi
