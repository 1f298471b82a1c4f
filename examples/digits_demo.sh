#!/usr/bin/env bash
# The embedded default, end to end: scikit-learn's digits as a folder of PNG files, compressed with an ACN
# and restored exactly. Outputs go to demo/ (safe to delete); run again to redo them.
set -euo pipefail
cd "$(dirname "$0")/.."
out=demo
mkdir -p "$out"

# 1. The data, as a user would have it: a folder of 1,797 PNG files (8x8, 17 grey levels).
[ -d "$out/digits" ] || acncodec export digits "$out/digits"

# 2. A model for it: about a minute on two CPU cores (reused if present).
[ -f "$out/digits.acn" ] || acncodec train "$out/digits" --levels 17 -o "$out/digits.acn" \
    --steps 600 --kl-warmup 200 --decoder-layers 3 --decoder-kernel 3 --quiet

# 3. Compress in tour order (the ACN protocol), then restore into a new folder.
acncodec compress "$out/digits" "$out/digits.acnz" --model "$out/digits.acn" --force --quiet --json "$out/report.json"
acncodec decompress "$out/digits.acnz" "$out/restored" --model "$out/digits.acn" --force --quiet

# 4. Check every pixel of every file against the input.
acncodec compare "$out/digits" "$out/restored"
