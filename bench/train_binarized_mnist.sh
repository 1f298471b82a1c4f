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

# The model shipped now (f00428504252): that one trained further with its neighbours sought among a random pool
# of 10,000 training codes each step (as far apart as in the 10,000-image sets it codes), first 4,000 steps
# from 5e-4, kept as a float model, then 3,000 steps from 3e-4; then its conditional prior fitted to the
# tours through 10,000 training codes at a time, p(z) fitted with full covariances, and quantised.
acncodec train binarized-mnist:train -o runs/bmnist-pool.acn --init runs/bmnist-cos.acn --steps 4000 \
    --lr 5e-4 --lr-schedule cosine --neighbour-pool 10000 --threads 1 --keep-checkpoint --no-quantize --quiet
acncodec train binarized-mnist:train -o runs/bmnist-pool2.acn --init runs/bmnist-pool.acn --steps 3000 \
    --lr 3e-4 --lr-schedule cosine --neighbour-pool 10000 --tour-prior 10000 --threads 1 --keep-checkpoint --quiet
