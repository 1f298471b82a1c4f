#!/usr/bin/env bash
# What a model's codes represent (paper sections 3.1-3.2, Table 3, Figure 14): the linear probe table and the
# four grids, written to bench/results/TAG-{probe.json,samples,reconstructions,daydream,neighbours}.png.
# Usage: bench/representation.sh MODEL TAG TRAIN_DATA TEST_DATA
#   e.g. bench/representation.sh fashion-mnist fashion-mnist fashion-mnist:train fashion-mnist:test
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1 tag=$2 train=$3 test=$4
out=bench/results/$tag
acncodec probe "$model" "$train" "$test" --json "$out-probe.json" --force
acncodec sample "$model" -n 64 -o "$out-samples.png" --force
acncodec reconstruct "$model" "$test" -n 32 -o "$out-reconstructions.png" --force
acncodec daydream "$model" "$test" --rows 4 --steps 16 -o "$out-daydream.png" --force
acncodec neighbours "$model" "$test" --queries 0,1,2,3,4,5 -k 8 -o "$out-neighbours.png" --force
