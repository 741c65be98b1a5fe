#!/usr/bin/env bash
# Issue 14's training protocol in one bounded run (prepared for a lent GPU; smoke-tested on the CPU
# with SMOKE=1). Called by scripts/gpu_session.sh with TRAIN=v2 after the efficiency checks, or alone:
#
#   OUT=out bash scripts/gpu_train_v2.sh              # on the GPU (device tool), data/photos carried
#   SMOKE=1 OUT=/tmp/v2 bash scripts/gpu_train_v2.sh  # the same steps, 2 iterations each, on the CPU
#
# Data: data/photos as `python scripts/prepare_photos.py data/photos` writes it (package photos and
# Debian's mate-backgrounds, 16 train / 6 held out); the GPU machine has no network, so prepare it
# here and carry it (38 MB). Degradations: the `mixed` pipeline (BSRGAN, Real-ESRGAN second order and
# light/nearly clean cases). No perceptual or GAN loss (no VGG weights can be downloaded here).
#
# Steps (minutes are wall-clock limits per step; iterations are fixed where runs are compared):
#   1. HQ prior of PRESET (default tiny4_x4: 1/4 code map, 1024 codes)            PRIOR_MIN
#   2. stage I (ESU) x4 and x2, from the one prior, in parallel                    S1_MIN
#   3. stage II x4 (top-k + Align-Attention + UDL: the shipped candidate) and x2,   S2_MIN
#      and the Table V variants from the same prior and stage-I model, all with
#      S2_ITERS iterations, in parallel: baseline (nearest, add, L1), +UDL, +top-k, +Align-Attention
# Every step is bounded by `timeout` and its failure does not stop the others; results (slim
# checkpoints, logs, settings, wall times) land in $OUT/v2/. Evaluation happens on the CPU afterwards
# (benchmarks.quality / benchmarks.accuracy on the held-out photos; see docs/TRAINING.md).
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
DATA="${DATA:-data/photos}"
OUT="${OUT:-./out}/v2"; mkdir -p "$OUT"
PY="${PY:-python3}"
PRESET="${PRESET:-tiny4_x4}"; PRESET_X2="${PRESET_X2:-${PRESET%_x4}_x2}"
DEV="${DEV:-cuda}"; WORKERS="${WORKERS:-14}"; BS="${BS:-16}"; PS="${PS:-128}"
PRIOR_MIN="${PRIOR_MIN:-2.5}"; S1_MIN="${S1_MIN:-1.2}"; S2_MIN="${S2_MIN:-3.5}"; S2_ITERS="${S2_ITERS:-3000}"
RUNS="${RUNS:-runs/v2}"
ITERS=1000000
if [ "${SMOKE:-0}" = "1" ]; then  # the same commands, tiny, on the CPU
  DEV=cpu; WORKERS=0; BS=2; PS=64; ITERS=2; S2_ITERS=2; PRIOR_MIN=1; S1_MIN=1; S2_MIN=1
fi
LOG="$OUT/session.log"
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | head -3
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  git -C "$ROOT" rev-parse HEAD 2>/dev/null; ls "$DATA/train" "$DATA/val" 2>&1 | tr '\n' ' '; echo; } > "$LOG" 2>&1
if [ ! -d "$DATA/train" ]; then echo "$DATA/train missing: run scripts/prepare_photos.py data/photos and carry it" | tee -a "$LOG"; exit 1; fi
COMMON=(--data "$DATA/train" --batch-size "$BS" --patch-size "$PS" --pipeline mixed
        --perceptual-weight 0 --gan-weight 0 --device "$DEV" --seed 0 --save-every 1000000 --log-every 50
        --quiet --no-tensorboard)
stage() {  # name, minutes, workers, extra args... (runs in the foreground; use & to overlap)
  local name=$1 minutes=$2 workers=$3; shift 3
  local t0; t0=$(date +%s)
  timeout "$(python3 -c "print(int(float('$minutes') * 60 + 150))")" \
    $PY -m ugtsr.train --out "$RUNS/$name" --time-limit "$minutes" --num-workers "$workers" "${COMMON[@]}" "$@" \
    > "$OUT/$name.log" 2>&1
  echo "step $name rc=$? seconds=$(( $(date +%s) - t0 ))" >> "$LOG"
}
W2=$(( WORKERS / 2 )); W6=$(( WORKERS / 6 )); [ "$W6" -lt 1 ] && W6=$WORKERS  # 2 and 6 runs at once
# 1. prior
stage prior "$PRIOR_MIN" "$WORKERS" --stage prior --preset "$PRESET" --iters "$ITERS"
# 2. stage I, x4 and x2 in parallel
stage s1_x4 "$S1_MIN" "$W2" --stage uncertainty --preset "$PRESET" --init "$RUNS/prior/final.pt" --iters "$ITERS" &
stage s1_x2 "$S1_MIN" "$W2" --stage uncertainty --preset "$PRESET_X2" --init "$RUNS/prior/final.pt" --iters "$ITERS" &
wait
# 3. stage II: the x4 candidate (= Table V "all three"), x2, and the four Table V variants, same iterations
S2=(--stage sr --init "$RUNS/s1_x4/final.pt" --preset "$PRESET" --iters "$S2_ITERS")
stage s2_x4 "$S2_MIN" "$W6" "${S2[@]}" &
stage s2_x2 "$S2_MIN" "$W6" --stage sr --init "$RUNS/s1_x2/final.pt" --preset "$PRESET_X2" --iters "$S2_ITERS" &
stage t5_baseline "$S2_MIN" "$W6" "${S2[@]}" --matching nearest --skip-fusion add --pixel-loss l1 &
stage t5_udl "$S2_MIN" "$W6" "${S2[@]}" --matching nearest --skip-fusion add --pixel-loss udl &
stage t5_topk "$S2_MIN" "$W6" "${S2[@]}" --matching topk --skip-fusion add --pixel-loss l1 &
stage t5_align "$S2_MIN" "$W6" "${S2[@]}" --matching nearest --skip-fusion align_attention --pixel-loss l1 &
wait
# slim, model-only checkpoints and the logs
$PY "$ROOT/scripts/slim_checkpoints.py" "$RUNS" "$OUT" >> "$LOG" 2>&1
tar czf "$OUT/runs_logs.tgz" "$RUNS"/*/log.csv "$RUNS"/*/settings.json "$RUNS"/*/train.log 2>/dev/null
tail -n 20 "$LOG"
