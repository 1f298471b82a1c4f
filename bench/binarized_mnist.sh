#!/usr/bin/env bash
# Every binarized-MNIST figure of a trained model: test-split estimates, the codec on the 10,000-image test
# split in both order modes (decoded in a separate process and checked), names cost on a folder, decoding
# speed (cached vs naive), latent bucket precision, tour scaling on real codes.
# Usage: bench/binarized_mnist.sh MODEL [TAG]
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1; tag=${2:-$(basename "$model" .acn)}
out=bench/results; mkdir -p "$out"
python bench/evaluate_model.py "$model" binarized-mnist:test --json "$out/$tag-estimate.json"
python bench/codec_roundtrip.py "$model" binarized-mnist:test --json "$out/$tag-codec.json"
folder=$(mktemp -d)/bmnist-1000
acncodec export binarized-mnist:test:1000 "$folder"
python bench/codec_roundtrip.py "$model" "$folder" --json "$out/$tag-codec-folder-1000.json"
python bench/decoding_speed.py --model "$model" --data binarized-mnist:test --batch 16 --json "$out/$tag-decoding-speed.json"
python bench/bucket_precision.py "$model" binarized-mnist:test:2000 --bits 6,8,10,12 --json "$out/$tag-bucket-precision.json"
python bench/tour_scaling.py --kinds model --model "$model" --data binarized-mnist:all --sizes 1000 2000 5000 10000 20000 60000 --json "$out/$tag-tour-scaling.json"
