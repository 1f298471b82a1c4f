"""What the compiled per-pixel step (acncodec/coding/kernels.py) gives: decompress with it and with the numpy step,
alternating in one process, on archives of the shipped models.

    python bench/compiled_step.py [--data binarized-mnist:test:1000,fashion-mnist:test:1000] [--repeats 2]
                                  [--json bench/results/compiled-step.json]

Each data set is compressed once (tour order, default chains); the archive is then decompressed `repeats` times
each way, the two ways alternating, every decoded image compared with the input. The numpy step is what a
machine without numba runs (`intnet._kernels` returning None). Reported: the best time each way and the ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "bench"))
from machine import provenance  # noqa: E402


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="binarized-mnist:test:1000,fashion-mnist:test:1000")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path, default=HERE / "bench" / "results" / "compiled-step.json")
    args = ap.parse_args(argv)
    import acncodec
    from acncodec import codec, registry
    from acncodec.coding import intnet
    compiled_kernels = intnet._kernels
    rows = []
    for data in args.data.split(","):
        images = acncodec.load(data)
        model = registry.by_name(data.split(":")[0]).load()
        blob, report = codec.compress(images, model, order="tour", progress=False)
        want = sorted(im.tobytes() for im in images.images)
        best = {}
        for _ in range(args.repeats):
            for way, kernels in (("compiled", compiled_kernels), ("numpy", lambda: None)):
                intnet._kernels = kernels
                started = time.perf_counter()
                out, _ = codec.decompress(blob, model, progress=False)
                seconds = time.perf_counter() - started
                if sorted(im.tobytes() for im in out.images) != want:
                    raise SystemExit(f"{data}: the {way} step did not decode to the input")
                best[way] = min(best.get(way, np.inf), seconds)
        intnet._kernels = compiled_kernels
        row = {"data": data, "model_hash": model.hash, "numerics": model.numerics, "chains": report["chains"],
               "seconds": best, "speedup": best["numpy"] / best["compiled"]}
        print(f"[{data}] decompress: compiled step {best['compiled']:.2f} s, numpy step {best['numpy']:.2f} s, "
              f"{row['speedup']:.2f}x", flush=True)
        rows.append(row)
    record = {**provenance([sys.argv[0], *argv]), "repeats": args.repeats, "results": rows}
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    lines = ["# The compiled per-pixel step against the numpy step", "",
             f"Made by `{record['command']}` at {record['git_commit'][:12]} on {record['machine_provenance']}: "
             f"decompress of one archive per data set (tour order, default chains), best of {args.repeats} each "
             "way, alternating in one process; every decoded image checked.", "",
             "| data | model | chains | compiled s | numpy s | speed-up |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['data']} | {r['model_hash'][:12]} ({r['numerics']}) | {r['chains']} | "
                     f"{r['seconds']['compiled']:.2f} | {r['seconds']['numpy']:.2f} | {r['speedup']:.2f}x |")
    args.json.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
