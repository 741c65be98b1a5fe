#!/usr/bin/env bash
# One lent-GPU session. First (issue 13, at most 4 minutes of GPU time): scripts/gpu_kernels.py --
# the fused Triton top-k against the reference on the GPU, the device's measured FP32/TF32/bandwidth
# peaks, the kernel timed against the standard-op search and torch.cdist + topk at N in {4k, 16k,
# 64k}, K in {1024, 4096}, d = 512 (FLOP/s and bytes/s as shares of the peaks), and tiny_x4 /
# ugtsr_x4 end to end in PyTorch CUDA FP32 / FP16 / FP16 CUDA graph at 256^2 and 512^2 LR with peak
# memory -> $OUT/efficiency/fused_topk.json (commit it as benchmarks/results/efficiency_gpu_<gpu>.json).
# Then, with TRAIN=v2: issue 14's protocol (scripts/gpu_train_v2.sh: prior, stage I/II x4 and x2, Table V
# variants); with TRAIN=1 (the shipped model's recipe): train the default model's three stages on the shipped photos and run the
# matching benchmark on CUDA. Every step is bounded in time and its failure does not stop the rest.
# Usage (device tool): bash scripts/gpu_session.sh   [TRAIN=1 ...]   (results land in $OUT)
# TRAIN=v2 needs the prepared photos: run `python scripts/prepare_photos.py data/photos` here first and
# pass carry=["data/photos"] (38 MB); the GPU machine has no network for apt-get.
# Training times are minutes per stage: PRIOR_MIN, S1_MIN, S2_MIN.
set -u
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
OUT="${OUT:-./out}"; mkdir -p "$OUT"
PY=python3
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1; } > "$OUT/efficiency.log" 2>&1
t0=$(date +%s)
OUT="$OUT/efficiency" timeout 240 $PY scripts/gpu_kernels.py >> "$OUT/efficiency.log" 2>&1
echo "gpu_kernels rc=$? seconds=$(( $(date +%s) - t0 ))" >> "$OUT/efficiency.log"
tail -n 40 "$OUT/efficiency.log"
if [ "${TRAIN:-0}" = "v2" ]; then bash scripts/gpu_train_v2.sh; exit $?; fi  # issue 14's protocol
if [ "${TRAIN:-0}" != "1" ]; then exit 0; fi
DEV="${DEV:-cuda}"; WORKERS="${WORKERS:-12}"; BS="${BS:-16}"; PS="${PS:-128}"
PRIOR_MIN="${PRIOR_MIN:-1.8}"; S1_MIN="${S1_MIN:-0.8}"; S2_MIN="${S2_MIN:-1.2}"
LOG="$OUT/session.log"
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1; $PY -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"; } > "$LOG" 2>&1
$PY scripts/prepare_photos.py data/photos --no-mate >> "$LOG" 2>&1  # the shipped recipe: Python-package photos only
COMMON=(--preset tiny_x4 --data data/photos/train --iters 1000000 --batch-size "$BS" --patch-size "$PS"
        --perceptual-weight 0 --gan-weight 0 --device "$DEV" --num-workers "$WORKERS" --seed 0
        --save-every 1000000 --log-every 50 --quiet --no-tensorboard)
run_stage() {  # name, minutes, extra args...
  local name=$1 minutes=$2; shift 2
  local t0=$(date +%s)
  timeout $(( ${minutes%.*} * 60 + 120 )) $PY -m ugtsr.train --out "runs/$name" --time-limit "$minutes" "${COMMON[@]}" "$@" >> "$LOG" 2>&1
  echo "stage $name rc=$? seconds=$(( $(date +%s) - t0 ))" >> "$LOG"
}
run_stage prior "$PRIOR_MIN" --stage prior
run_stage s1 "$S1_MIN" --stage uncertainty --init runs/prior/final.pt
run_stage s2 "$S2_MIN" --stage sr --init runs/s1/final.pt
# model-only checkpoints (the discriminator/optimizer state is not needed downstream)
$PY scripts/slim_checkpoints.py runs "$OUT" prior s1 s2 >> "$LOG" 2>&1
tar czf "$OUT/runs_logs.tgz" runs/*/log.csv runs/*/settings.json runs/*/train.log 2>/dev/null
# Fig. 8 on the GPU (bounded)
timeout 45 $PY -m benchmarks.matching --device "$DEV" --out-dir "$OUT" >> "$LOG" 2>&1; echo "matching rc=$?" >> "$LOG"
tail -n 30 "$LOG"
