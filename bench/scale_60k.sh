#!/usr/bin/env bash
# Scale: compress and decompress all 60,000 binarized MNIST images, recording wall time and peak resident
# memory (GNU time's "Maximum resident set size"). Usage: bench/scale_60k.sh MODEL [TAG]
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1; tag=${2:-$(basename "$model" .acn)}
out=bench/results; mkdir -p "$out"
work=$(mktemp -d)
/usr/bin/time -v acncodec compress binarized-mnist:all "$work/all.acnz" --model "$model" --quiet \
    --json "$out/$tag-scale-60k-compress.json" 2> "$work/compress.time"
/usr/bin/time -v acncodec decompress "$work/all.acnz" "$work/all.npy" --model "$model" --quiet \
    2> "$work/decompress.time"
python - "$work" "$out/$tag-scale-60k.json" <<'PY'
import json, re, sys
from pathlib import Path
work, out = Path(sys.argv[1]), sys.argv[2]
def parse(text):
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
    return {"peak_rss_mib": round(rss / 1024, 1), "wall": wall}
record = {step: parse((work / f"{step}.time").read_text()) for step in ("compress", "decompress")}
record["archive_bytes"] = (work / "all.acnz").stat().st_size
import numpy as np, acncodec
expected = acncodec.load("binarized-mnist:all").images[..., 0]
restored = np.load(work / "all.npy")
# tour order: the same images, each exactly once
record["verified"] = bool(restored.shape == expected.shape and
                          sorted(map(bytes, restored)) == sorted(map(bytes, expected)))
print(json.dumps(record, indent=2))
Path(out).write_text(json.dumps(record, indent=2))
PY
rm -rf "$work"
