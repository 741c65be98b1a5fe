#!/usr/bin/env bash
# Second default models (issue 14), trained on this project's 2-core CPU (no GPU was lent): the x4
# model continues the shipped one; the x2 model starts from it (scripts/rescale_checkpoint.py: every
# tensor but the LQ encoder's stride-2 stages). Both with --train-decoder (the decoder half learns to
# use the encoder's skips; the uncertainty head is refitted with ESU), the mate-backgrounds photos
# added to the training set (scripts/prepare_photos.py) and the mixed_wide degradation. One thread
# each, both at once. x2 has no stage-I model of its own, so it trains with plain L1 (UDL needs s).
# Phase 2 (GATE_MINUTES): the averaged weights, only the fidelity gate trainable (--train-gate-only,
# plain L1, gate lr 2e-3): the choice between restoration and bicubic settles at ~4x the steps per minute.
set -e
. .venv/bin/activate
MINUTES=${MINUTES:-75}
GATE_MINUTES=${GATE_MINUTES:-12}
COMMON=(--stage sr --data data/photos/train --pipeline mixed_wide --iters 1000000 --batch-size 4 --patch-size 128
        --lr 1e-4 --perceptual-weight 0 --gan-weight 0 --threads 1 --log-every 25 --quiet --no-tensorboard
        --no-prior --train-decoder --fidelity-gate --fidelity-gate-context --time-limit "$MINUTES" --save-every 200)
PHASE=${PHASE:-1,2}   # PHASE=2: only the gate phase, on runs/v2/x*/swa.pt
mkdir -p runs/v2
if [[ $PHASE == *1* ]]; then
python scripts/rescale_checkpoint.py runtime/models/ugtsr_tiny_x4.pt --scale 2 -o runs/v2/x2_init.pt
python -m ugtsr.train --preset tiny_x4 --init runtime/models/ugtsr_tiny_x4.pt --color-fix 4 --out runs/v2/x4 \
    --seed 21 "${COMMON[@]}" > runs/v2/x4.log 2>&1 &
python -m ugtsr.train --preset tiny_x2 --init runs/v2/x2_init.pt --color-fix 2 --pixel-loss l1 --out runs/v2/x2 \
    --seed 22 "${COMMON[@]}" > runs/v2/x2.log 2>&1 &
wait
python scripts/average_checkpoints.py runs/v2/x4/ckpt_*.pt --last 5 -o runs/v2/x4/swa.pt
python scripts/average_checkpoints.py runs/v2/x2/ckpt_*.pt --last 5 -o runs/v2/x2/swa.pt
fi
[[ $PHASE == *2* ]] || exit 0
GATE=(--stage sr --data data/photos/train --pipeline mixed_wide --iters 1000000 --batch-size 4 --patch-size 128
      --lr 2e-4 --perceptual-weight 0 --gan-weight 0 --threads 1 --log-every 25 --quiet --no-tensorboard
      --no-prior --train-gate-only --pixel-loss l1 --fidelity-gate --fidelity-gate-context --time-limit "$GATE_MINUTES"
      --save-every 200)
python -m ugtsr.train --preset tiny_x4 --init runs/v2/x4/swa.pt --color-fix 4 --out runs/v2/x4_gate --seed 31 \
    "${GATE[@]}" > runs/v2/x4_gate.log 2>&1 &
python -m ugtsr.train --preset tiny_x2 --init runs/v2/x2/swa.pt --color-fix 2 --out runs/v2/x2_gate --seed 32 \
    "${GATE[@]}" > runs/v2/x2_gate.log 2>&1 &
wait
python scripts/average_checkpoints.py runs/v2/x4_gate/ckpt_*.pt --last 5 -o runs/v2/x4_gate/swa.pt
python scripts/average_checkpoints.py runs/v2/x2_gate/ckpt_*.pt --last 5 -o runs/v2/x2_gate/swa.pt
