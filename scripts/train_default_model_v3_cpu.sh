#!/usr/bin/env bash
# Third default models (issue 14): the shipped v2 networks, frozen, with a fidelity gate that also reads
# an image-level estimate of the degradation (config fidelity_gate_global), trained on cached network
# outputs (python -m ugtsr.train.gate_cache). The mixture gives clean and light LR 35 % (mixed_wide: 25 %)
# because the gate must learn to tell them from degraded LR. One thread each, both at once, on the
# 2-core CPU (no GPU lent). Run from the repository root after scripts/prepare_photos.py data/photos.
set -e
. .venv/bin/activate
SAMPLES=${SAMPLES:-1600}
ITERS=${ITERS:-3000}
MIX=${MIX:-bsrgan=0.25,realesrgan=0.2,classic=0.2,light=0.15,clean=0.2}
COMMON=(--data data/photos/train --global-context --mixture "$MIX" --samples "$SAMPLES" --patch-size 256 --crop 160
        --iters "$ITERS" --batch-size 8 --lr 1e-3 --eval-every 250 --average 4 --threads 1)
mkdir -p runs/v3
python -m ugtsr.train.gate_cache --init runtime/models/ugtsr_tiny_x4.pt --out runs/v3/x4_gate --seed 41 "${COMMON[@]}" \
    > runs/v3/x4_gate.log 2>&1 &
python -m ugtsr.train.gate_cache --init runtime/models/ugtsr_tiny_x2.pt --out runs/v3/x2_gate --seed 42 "${COMMON[@]}" \
    > runs/v3/x2_gate.log 2>&1 &
wait
