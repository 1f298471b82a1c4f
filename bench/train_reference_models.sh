#!/usr/bin/env bash
# The shipped reference models, each trained by `acncodec train` (the exact commands are below and are also
# recorded inside each model file's metadata). Usage: bench/train_reference_models.sh [digits|fashion|all]
# Models go to runs/ref/; resumable (run again after an interruption and training continues from its
# checkpoint). bench/ship_models.py copies finished models into acncodec/models/.
#
# binarized MNIST is not retrained here: its reference model is bench/train_binarized_mnist.sh's L4K5 run.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs/ref
which=${1:-all}

# digits: all 1,797 images of the embedded default, 8x8 with 17 grey levels.
if [ "$which" = digits ] || [ "$which" = all ]; then
    acncodec train digits -o runs/ref/digits.acn --levels 17 --steps 3000 --kl-warmup 500 \
        --decoder-layers 3 --decoder-kernel 3 --prior-hidden 256 --encoder-hidden 128 --threads 1 --quiet
fi

# Fashion-MNIST 8-bit: the 60,000 training images of Debian's dataset-fashion-mnist.
if [ "$which" = fashion ] || [ "$which" = all ]; then
    acncodec train fashion-mnist:train -o runs/ref/fashion-mnist.acn --steps "${FASHION_STEPS:-3000}" \
        --kl-warmup 1500 --decoder-channels 48 --decoder-layers 5 --decoder-kernel 5 \
        --prior-hidden 256 --encoder-hidden 128 --threads 2 --quiet
fi
