#!/usr/bin/env bash
# The embedded default, end to end: scikit-learn's digits as a folder of PNG files, compressed with the
# shipped digits model and restored exactly. Outputs go to demo/ (safe to delete); run again to redo them.
set -euo pipefail
cd "$(dirname "$0")/.."
out=demo
mkdir -p "$out"

# 1. The data, as a user would have it: a folder of 1,797 PNG files (8x8, 17 grey levels).
[ -d "$out/digits" ] || acncodec export digits "$out/digits"

# 2. Compress. No --model: acncodec picks the shipped model that fits the data (`acncodec models` lists them);
#    no --order: it picks the order mode with the smallest estimated archive, names included, and prints the
#    report: which mode and why, sizes, actual against estimated bits.
acncodec compress "$out/digits" "$out/digits.acnz" --force -v --json "$out/report.json"

# 3. Restore into a new folder; the archive names its model by content hash.
acncodec decompress "$out/digits.acnz" "$out/restored" --force

# 4. Check every pixel of every file against the input.
acncodec compare "$out/digits" "$out/restored"
