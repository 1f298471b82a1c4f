#!/usr/bin/env bash
# The real training run of issue 2: binarized MNIST, training split (first 50,000 of the 60,000 training
# images; the last 10,000 are the held-out test split), then its figures on the test split.
# Resumable: run it again after an interruption and it continues from runs/binarized-mnist.acn.ckpt.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-10000}
mkdir -p runs
acncodec train binarized-mnist:train -o runs/binarized-mnist.acn --steps "$STEPS" --quiet "$@"
python bench/evaluate_model.py runs/binarized-mnist.acn binarized-mnist:test --json bench/results/train-binarized-mnist.json
