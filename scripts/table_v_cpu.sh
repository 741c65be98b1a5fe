#!/usr/bin/env bash
# Table V at this project's scale on the 2-core CPU (issue 14; no GPU was lent): one HQ prior of
# tiny_x4, one stage-I (ESU) model from it, then the five stage-II variants from that one stage-I
# model with the same data (seed 0), degradation (mixed_wide), batch, patch and number of iterations:
# baseline (nearest matching, additive skips, plain L1), + UDL, + Top-k (k = 3, fusion), +
# Align-Attention, all three (the tiny_x4 preset). One thread per run; PAR=2 runs two variants at a
# time (PAR=1, one after the other, leaves the other core free). Then
# scripts/table_v.py evaluates them on the held-out photos (benchmarks.quality + benchmarks.accuracy).
#   PRIOR_MIN=12 S1_MIN=4 S2_ITERS=300 bash scripts/table_v_cpu.sh      # from the repository root
#   PAR=1 THREADS=1 PRIOR_MIN=15 S1_MIN=4 S2_ITERS=250 bash scripts/table_v_cpu.sh   # what ran here (model card)
# scripts/gpu_train_v2.sh is the same protocol at GPU scale.
set -eu
. .venv/bin/activate
RUNS=${RUNS:-runs/table_v_cpu}
PRIOR_MIN=${PRIOR_MIN:-12}; S1_MIN=${S1_MIN:-4}; S2_ITERS=${S2_ITERS:-300}
BS=${BS:-4}; PS=${PS:-128}; PAR=${PAR:-2}; THREADS=${THREADS:-2}
mkdir -p "$RUNS"
COMMON=(--data data/photos/train --batch-size "$BS" --patch-size "$PS" --pipeline mixed_wide --perceptual-weight 0
        --gan-weight 0 --device cpu --seed 0 --log-every 25 --quiet --no-tensorboard)
t0=$(date +%s)
python -m ugtsr.train --stage prior --preset tiny_x4 --out "$RUNS/prior" --iters 1000000 --time-limit "$PRIOR_MIN" \
    --threads "$THREADS" --save-every 1000000 "${COMMON[@]}" > "$RUNS/prior.log" 2>&1
python -m ugtsr.train --stage uncertainty --preset tiny_x4 --init "$RUNS/prior/final.pt" --out "$RUNS/s1" --iters 1000000 \
    --time-limit "$S1_MIN" --threads "$THREADS" --save-every 1000000 "${COMMON[@]}" > "$RUNS/s1.log" 2>&1
echo "prior + stage I: $(( $(date +%s) - t0 )) s" | tee "$RUNS/times.txt"
S2=(--stage sr --preset tiny_x4 --init "$RUNS/s1/final.pt" --iters "$S2_ITERS" --threads 1 --save-every 1000000 "${COMMON[@]}")
run() {  # name, extra args
  local name=$1 t; shift; t=$(date +%s)
  python -m ugtsr.train --out "$RUNS/$name" "${S2[@]}" "$@" > "$RUNS/$name.log" 2>&1
  echo "$name: $(( $(date +%s) - t )) s" | tee -a "$RUNS/times.txt"
}
VARIANTS=("t5_baseline --matching nearest --skip-fusion add --pixel-loss l1"
          "t5_udl --matching nearest --skip-fusion add --pixel-loss udl"
          "t5_topk --matching topk --skip-fusion add --pixel-loss l1"
          "t5_align --matching nearest --skip-fusion align_attention --pixel-loss l1"
          "s2_x4 --matching topk --skip-fusion align_attention --pixel-loss udl")
n=0
for v in "${VARIANTS[@]}"; do
  # shellcheck disable=SC2086  # the variant's words are its name and flags
  run $v &
  n=$((n + 1)); if [ $((n % PAR)) -eq 0 ]; then wait; fi
done
wait
python scripts/slim_checkpoints.py "$RUNS" "$RUNS/slim" >> "$RUNS/times.txt" 2>&1
echo "total: $(( $(date +%s) - t0 )) s" | tee -a "$RUNS/times.txt"
