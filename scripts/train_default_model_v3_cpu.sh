#!/usr/bin/env bash
# Third default models (issue 14): the shipped v2 networks, frozen, with a fidelity gate that also reads
# an image-level estimate of the degradation (config fidelity_gate_global), trained by
# python -m ugtsr.train.gate_cache on cached network outputs: 1,600 random 256 px patches of the training
# photos, degraded with a mixture that gives clean and light LR 35 % (mixed_wide: 25 %), the network run
# once on each; then 3,000 steps of a regression of the image-level blend weight on each sample's
# least-squares optimal weight (--pretrain-global), with the local gate's last layers set to zero
# (--iters 0: a joint training of the whole gate afterwards made the held-back samples worse, see the
# model card). One thread each, on the 2-core CPU (no GPU lent). Run from the repository root after
# python scripts/prepare_photos.py data/photos. The caches (1.0 / 1.3 GB) go to runs/v3b/.
set -e
. .venv/bin/activate
MIX=${MIX:-bsrgan=0.25,realesrgan=0.2,classic=0.2,light=0.15,clean=0.2}
COMMON=(--data data/photos/train --global-context --mixture "$MIX" --samples 1600 --patch-size 256
        --iters 0 --pretrain-global 3000 --threads 1)
mkdir -p runs/v3b runs/v3c
python -m ugtsr.train.gate_cache --init runtime/models/ugtsr_tiny_x4.pt --out runs/v3c/x4_global --seed 41 \
    --cache runs/v3b/x4_cache.pt "${COMMON[@]}" > runs/v3c/x4_global.log 2>&1 &
python -m ugtsr.train.gate_cache --init runtime/models/ugtsr_tiny_x2.pt --out runs/v3c/x2_global --seed 42 \
    --cache runs/v3b/x2_cache.pt "${COMMON[@]}" > runs/v3c/x2_global.log 2>&1 &
wait
