#!/usr/bin/env bash
# The x2 model, on this CPU only (2 cores), from the x4 model's HQ prior (runs/gpu/prior.pt, written by
# scripts/gpu_session.sh; the prior is scale-free). Mixed degradation, colour fix sigma 2 (one LR pixel).
set -euo pipefail
. .venv/bin/activate
COMMON=(--preset tiny_x2 --data data/photos/train --pipeline mixed --iters 1000000 --batch-size 4 --patch-size 128
        --lr 2e-4 --perceptual-weight 0 --gan-weight 0 --threads 2 --log-every 25 --quiet --no-tensorboard --color-fix 2)
python -m ugtsr.train --stage uncertainty --out runs/x2_s1 --init runs/gpu/prior.pt --time-limit "${S1_MIN:-12}" \
    --seed 10 --save-every 300 "${COMMON[@]}"
python -m ugtsr.train --stage sr --out runs/x2_s2 --init runs/x2_s1/final.pt --prior runs/gpu/prior.pt \
    --time-limit "${S2_MIN:-28}" --seed 11 --save-every 300 "${COMMON[@]}"
python scripts/average_checkpoints.py runs/x2_s2/ckpt_*.pt --last 5 -o runs/x2_s2/swa.pt
