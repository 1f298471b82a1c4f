#!/usr/bin/env bash
# The binarized-MNIST training runs: training split (first 50,000 of the 60,000 MNIST training images; the
# last 10,000 are the held-out test split), one thread each so two configurations train side by side on two
# cores. Resumable: run again after an interruption and each continues from its checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-6000}
mkdir -p runs
acncodec train binarized-mnist:train -o runs/bmnist-L3K3.acn --steps "$STEPS" --kl-warmup 1500 \
    --decoder-layers 3 --decoder-kernel 3 --threads 1 --quiet &
acncodec train binarized-mnist:train -o runs/bmnist-L4K5.acn --steps "$STEPS" --kl-warmup 1500 \
    --decoder-layers 4 --decoder-kernel 5 --threads 1 --quiet &
wait

# The shipped model: the exact L4K5 model above (shipped before as binarized-mnist, hash d3244bbb340a; the
# recorded command names it so) trained further from its weights, Adam afresh, the learning rate annealed
# from 1e-3 to 0 (cosine), then p(z) fitted with full covariances.
acncodec train binarized-mnist:train -o runs/bmnist-cos.acn --init runs/bmnist-L4K5.acn --steps 10500 \
    --lr 1e-3 --lr-schedule cosine --threads 1 --keep-checkpoint --quiet
