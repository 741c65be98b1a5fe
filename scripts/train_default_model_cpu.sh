#!/usr/bin/env bash
# Ran after scripts/gpu_session.sh (GPU: prior, stage I, stage II) had written runs/gpu/{prior,s1,s2}.pt.
# CPU continuation of the GPU-trained default model (see README model card).
set -e
. .venv/bin/activate
COMMON=(--preset tiny_x4 --data data/photos/train --iters 1000000 --batch-size 4 --patch-size 128 --lr 2e-4
        --perceptual-weight 0 --gan-weight 0 --threads 2 --log-every 25 --quiet --no-tensorboard)
python -m ugtsr.train --stage uncertainty --out runs/cpu_s1 --init runs/gpu/s2.pt --prior runs/gpu/prior.pt \
    --time-limit 12 --seed 2 --save-every 200 "${COMMON[@]}"
python -m ugtsr.train --stage sr --out runs/cpu_s2 --init runs/gpu/s2.pt --uncertainty-ckpt runs/cpu_s1/final.pt \
    --prior runs/gpu/prior.pt --val data/photos/val --val-every 300 --time-limit 50 --seed 3 --save-every 300 "${COMMON[@]}"
python scripts/average_checkpoints.py runs/cpu_s2/ckpt_*.pt --last 5 -o runs/cpu_s2/swa.pt
# low learning-rate fine-tune of the averaged weights (stage II rules, same frozen parts)
python -m ugtsr.train --stage sr --out runs/cpu_s2_ft --init runs/cpu_s2/swa.pt --uncertainty-ckpt runs/cpu_s1/final.pt \
    --prior runs/gpu/prior.pt --preset tiny_x4 --data data/photos/train --iters 1000000 --batch-size 4 --patch-size 128 \
    --lr 5e-5 --perceptual-weight 0 --gan-weight 0 --threads 2 --log-every 25 --quiet --no-tensorboard \
    --time-limit 14 --seed 4 --save-every 300
python scripts/average_checkpoints.py runs/cpu_s2_ft/ckpt_*.pt --last 5 -o runs/cpu_s2_ft/swa.pt
