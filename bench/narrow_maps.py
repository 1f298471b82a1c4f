"""What narrow decoder maps (numerics exact2) cost and give: the shipped exact2 model of each data set against the
exact1 model it superseded (NAME-exact1), both compressing and decompressing the same images, side by side.

    python bench/narrow_maps.py [--data binarized-mnist:test:1000,fashion-mnist:test:1000]
                                [--json bench/results/narrow-maps.json]

The exact2 model was made from the exact1 one with `acncodec quantize NAME-exact1 --numerics exact2 --data
NAME:train` (calibrated on 256 training images, its tables kept; the index records the command). Both models
compress (`codec.compress`, the estimate included) and
decompress the images in fresh processes, alternating (bench/coding_speed.py's children), every decoded image
checked. Reported: the archive's bytes and nats/image (the rate narrow maps cost), each phase's seconds and
peak memory, and exact2's speed over exact1's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "bench"))
from coding_speed import coded  # noqa: E402
from machine import provenance  # noqa: E402

def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="binarized-mnist:test:1000,fashion-mnist:test:1000")
    ap.add_argument("--order", default="tour")
    ap.add_argument("--json", type=Path, default=HERE / "bench" / "results" / "narrow-maps.json")
    args = ap.parse_args(argv)
    rows = []
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"narrow-maps-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    for data in args.data.split(","):
        name = data.split(":")[0]
        models = {"exact1": f"{name}-exact1", "exact2": name}
        row = {"data": data, "model": name, "numerics": {}}
        for numerics, model in models.items():
            c, d = coded(HERE, data, model, str(tmp / f"{numerics}.acnz"), args.order, numerics)
            c["nats_per_image"] = c["bytes"] * 8 * math.log(2) / c["n"]
            row["numerics"][numerics] = {"compress": c, "decompress": d}
            print(f"[{data}] {numerics}: {c['bytes']:,} B ({c['nats_per_image']:.2f} nats/image), compress "
                  f"{c['seconds']:.1f} s, decompress {d['seconds']:.1f} s ({d['peak_mib']:.0f} MiB), exact",
                  flush=True)
        one, two = row["numerics"]["exact1"], row["numerics"]["exact2"]
        row["speedup"] = {p: one[p]["seconds"] / two[p]["seconds"] for p in ("compress", "decompress")}
        row["rate_change"] = two["compress"]["bytes"] / one["compress"]["bytes"] - 1
        print(f"[{data}] exact2: compress {row['speedup']['compress']:.2f}x, decompress "
              f"{row['speedup']['decompress']:.2f}x, bytes {100 * row['rate_change']:+.2f}%", flush=True)
        rows.append(row)
    record = {**provenance([sys.argv[0], *argv]), "order": args.order, "results": rows}
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    args.json.with_suffix(".md").write_text(markdown(record))
    return 0


def markdown(r: dict) -> str:
    lines = ["# Narrow decoder maps (exact2) against exact1", "",
             f"Made by `{r['command']}` at {r['git_commit'][:12]} on {r['machine_provenance']}. Order "
             f"{r['order']}, default chains and threads, compress with its estimate; every decoded image checked. "
             "exact1: the shipped NAME-exact1; exact2: the shipped NAME, requantised from it.", "",
             "| data | numerics | bytes | nats/image | compress s | decompress s | decompress peak MiB |",
             "|---|---|---|---|---|---|---|"]
    for row in r["results"]:
        for numerics, t in row["numerics"].items():
            c, d = t["compress"], t["decompress"]
            lines.append(f"| {row['data']} | {numerics} | {c['bytes']:,} | {c['nats_per_image']:.2f} | "
                         f"{c['seconds']:.1f} | {d['seconds']:.1f} | {d['peak_mib']:.0f} |")
    lines += ["", "| data | exact2 compress speed-up | exact2 decompress speed-up | bytes |", "|---|---|---|---|"]
    for row in r["results"]:
        lines.append(f"| {row['data']} | {row['speedup']['compress']:.2f}x | {row['speedup']['decompress']:.2f}x | "
                     f"{100 * row['rate_change']:+.2f}% |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
