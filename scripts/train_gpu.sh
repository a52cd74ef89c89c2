#!/usr/bin/env bash
# One GPU session: several training runs at once on one GPU, each stopped by a time limit with a
# snapshot (`--time-limit`), so that the session ends on time and every run can go on with --resume.
#
#   1. the paper's MNIST model (assets/mnist-paper): its prior (raw-index input, the paper's 64-128-256-
#      512-256 denoiser) trained on from the shipped weights, then at a lower learning rate;
#   2. CIFAR-10: the paper's T=16 VQ-SVAE from scratch, then a compact prior on its tokens;
#   3. the bundled MNIST prior (assets/mnist) trained on, then at a lower learning rate.
#
# usage: bash scripts/train_gpu.sh [--data-root DIR] [--runs DIR] [--minutes M] [--device cuda|cpu]
#                                  [--threads N] [--limit N]
#   --minutes M  the session's training time (default 6); each run gets its share of it, and loading,
#                tokenising and starting the processes come on top (about 10% more)
#   --limit N    train on the first N images only: a smoke test of the whole script (on the CPU)
# Each run writes RUNS/NAME (checkpoint, training_state.safetensors, log.jsonl) and RUNS/NAME.log.
set -euo pipefail
DATA=data RUNS=runs-gpu MINUTES=6 DEVICE=cuda THREADS=3 LIMIT=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data-root) DATA=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --minutes) MINUTES=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --limit) LIMIT=(--limit "$2"); shift 2 ;;
    *) echo "unknown argument: $1 (see the usage at the top of $0)" >&2; exit 2 ;;
  esac
done
if ! python3 -c "import math, sys; m = float(sys.argv[1]); sys.exit(not (math.isfinite(m) and m >= 0.1))" "$MINUTES" 2>/dev/null; then
  echo "--minutes must be a number of minutes, at least 0.1 (got: $MINUTES)" >&2; exit 2
fi
if compgen -G "$RUNS/*/training_state.safetensors" > /dev/null; then  # each run would refuse to start over it
  echo "$RUNS already holds runs: choose another --runs, or go on with each run's --resume (docs/training.md)" >&2
  exit 2
fi
mkdir -p "$RUNS"
trap 'trap - INT TERM; kill 0' INT TERM  # Ctrl-C stops the runs too, not only this script

share() { python3 -c "import sys; print(round(float(sys.argv[1]) * $1, 3))" "$MINUTES"; }  # minutes: a share

train() {  # train NAME ARGS...: one run into RUNS/NAME, its output appended to RUNS/NAME.log
  local name=$1; shift
  echo "$(date +%T) $name: $*" | tee -a "$RUNS/$name.log"
  python3 -m spiking_diffusion "$@" --device "$DEVICE" --data-root "$DATA" --no-download --threads "$THREADS" \
    --no-progress --log-every 50 --save-every 500 --epochs 1000 "${LIMIT[@]}" --out "$RUNS/$name" \
    >> "$RUNS/$name.log" 2>&1
  echo "$(date +%T) $name: done" | tee -a "$RUNS/$name.log"
}

paper_prior() {  # same tokens as assets/mnist-paper, so --init-from takes its weights as they are
  local run=(train-prior --vqsvae assets/mnist-paper --preset paper --input-mode index --batch-size 128 --ema 0.999)
  train mnist-paper-prior "${run[@]}" --init-from assets/mnist-paper --lr 1e-3 --time-limit "$(share 0.68)"
  train mnist-paper-prior "${run[@]}" --resume --lr 2e-4 --time-limit "$(share 0.24)"
}

cifar10() {  # the VQ-SVAE first: the prior learns its tokens. No weight average for the VQ-SVAE: on
             # CIFAR-10 an --ema 0.999 average reconstructed far worse than the raw weights (test MSE
             # 0.0122 against 0.0070 at 7.4 epochs; docs/experiments.md)
  train cifar10-vq train-vqsvae --dataset cifar10-folder --preset paper --codebook-init data --batch-size 64 \
    --lr 1e-3 --time-limit "$(share 0.5)"
  train cifar10-prior train-prior --vqsvae "$RUNS/cifar10-vq" --preset small --input-mode embedding \
    --batch-size 128 --lr 1e-3 --ema 0.999 --time-limit "$(share 0.4)"
}

mnist_prior() {
  local run=(train-prior --vqsvae assets/mnist --preset small --input-mode embedding --batch-size 128 --ema 0.9995)
  train mnist-prior "${run[@]}" --init-from assets/mnist --lr 5e-4 --time-limit "$(share 0.68)"
  train mnist-prior "${run[@]}" --resume --lr 1e-4 --time-limit "$(share 0.24)"
}

paper_prior & a=$!
cifar10 & b=$!
mnist_prior & c=$!
failed=0
for p in $a $b $c; do wait "$p" || failed=$((failed + 1)); done
for log in "$RUNS"/*.log; do echo "== $log"; grep -iE "time limit|prior:|vq-svae:|error" "$log" | tail -4 || true; done
echo "$failed of 3 chains failed"
exit "$failed"
