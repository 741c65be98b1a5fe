#!/usr/bin/env bash
# Fourth default models (issue 13): the third release's networks with the output-resolution decoder stage
# replaced by a sub-pixel, norm-free one (config subpixel_stages 1, plain_stages 1), distilled from the
# third release by python -m ugtsr.train.distill_tail: 2,000 random 256 px patches of the training photos,
# degraded with the third release's gate mixture, the teacher run once on each (the input of its last
# stage, its output before and after the post-filters and its uncertainty map cached), then 6,000 Adam
# steps on random 128 px windows of the new stage, the output convolution and the uncertainty head; the
# rest of the network and the post-filters are the teacher's, frozen. On the 2-core CPU (no GPU lent):
# x4 with two threads, x2 started two minutes later with one, side by side. Run from the repository root after
# python scripts/prepare_photos.py data/photos, on the third release's checkpoints (git show 072289f:runtime/models/ugtsr_tiny_x{4,2}.pt).
set -e
. .venv/bin/activate
MIX=${MIX:-bsrgan=0.25,realesrgan=0.2,classic=0.2,light=0.15,clean=0.2}
X4_INIT=${X4_INIT:-runtime/models/ugtsr_tiny_x4.pt}
X2_INIT=${X2_INIT:-runtime/models/ugtsr_tiny_x2.pt}
COMMON=(--data data/photos/train --mixture "$MIX" --samples 2000 --patch-size 256 --crop 128 --iters 6000
        --batch-size 16 --eval-every 500)
mkdir -p runs/v4
python -m ugtsr.train.distill_tail --init "$X4_INIT" --out runs/v4/x4_subpixel --seed 43 --threads 2 "${COMMON[@]}" \
    > runs/v4/x4_subpixel.log 2>&1 &
python -m ugtsr.train.distill_tail --init "$X2_INIT" --out runs/v4/x2_subpixel --seed 44 --threads 1 "${COMMON[@]}" \
    > runs/v4/x2_subpixel.log 2>&1 &
wait
