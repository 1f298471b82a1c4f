#!/usr/bin/env bash
# Grey (8-bit) MNIST reference model: trained on mnist:train (the first 50,000 MNIST training images; the last
# 10,000 are the held-out test split). One thread, so the other core stays free for other work.
# Resumable: run again after an interruption and training continues from its checkpoint. STEPS=N ends the
# run at step N and writes the model; the checkpoint is kept, so a later run with more steps continues it.
# RUNS (default ~/.cache/acncodec-runs) holds the model and its checkpoint, outside the work tree.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-$HOME/.cache/acncodec-runs}
mkdir -p "$RUNS"
acncodec train mnist:train -o "$RUNS/grey-mnist.acn" --steps "${STEPS:-8000}" --kl-warmup 1500 \
    --decoder-channels 48 --decoder-layers 5 --decoder-kernel 5 --prior-hidden 256 --encoder-hidden 128 \
    --threads "${THREADS:-1}" --keep-checkpoint --quiet
