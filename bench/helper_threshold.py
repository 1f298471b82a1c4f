"""Where the decoder's helper thread pays: decompress with it and without it, at several chain counts, alternating
in one process (the measurements behind `intnet.HELPER_MIN_MACS`).

    python bench/helper_threshold.py [--data digits:4,16,56;binarized-mnist:test:256:4,8,16]
                                     [--repeats 3] [--json bench/results/speed-helper.json]

`--data` is a list of `DATA:CHAINS` separated by ';' (CHAINS a comma list). Each data set is compressed once per
chain count (tour order, its shipped model of the same name); each archive is then decompressed `repeats` times
each way, the two ways alternating: with a helper (HELPER_MIN_MACS 0) and without (HELPER_MIN_MACS beyond any
row). Every decoded image is compared with the input. Reported: the best time each way, the row's multiply-adds
(the threshold's measure) and whether the default threshold gives the helper.
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

DEFAULT = "digits:4,16,56;binarized-mnist:test:256:4,8,16"


def row_macs(model, chains: int) -> int:
    """The threshold's measure for a round of `chains` images (`intnet.Stepper`)."""
    from acncodec.coding.exact_numerics import ExactModel
    d = ExactModel(model).nets.decoder
    return chains * d.W * sum(l.maps["vconv"].weight.size + l.maps["v2h"].weight.size for l in d.layers)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=DEFAULT)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=HERE / "bench" / "results" / "speed-helper.json")
    args = ap.parse_args(argv)
    import acncodec
    from acncodec import codec, registry
    from acncodec.coding import intnet
    threshold = intnet.HELPER_MIN_MACS
    rows = []
    for item in args.data.split(";"):
        data, chain_list = item.rsplit(":", 1)
        images = acncodec.load(data)
        model = registry.by_name(data.split(":")[0]).load()
        want = sorted(im.tobytes() for im in images.images)
        for chains in (int(c) for c in chain_list.split(",")):
            blob, _ = codec.compress(images, model, order="tour", chains=chains, progress=False)
            best = {}
            for _ in range(args.repeats):
                for way, macs in (("helper", 0), ("alone", 1 << 62)):
                    intnet.HELPER_MIN_MACS = macs
                    started = time.perf_counter()
                    out, _ = codec.decompress(blob, model, progress=False)
                    seconds = time.perf_counter() - started
                    if sorted(im.tobytes() for im in out.images) != want:
                        raise SystemExit(f"{data}: decompress ({way}) did not give the input back")
                    best[way] = min(best.get(way, np.inf), seconds)
            intnet.HELPER_MIN_MACS = threshold
            macs = row_macs(model, chains)
            row = {"data": data, "model_hash": model.hash, "chains": chains, "row_multiply_adds": macs,
                   "seconds": best, "helper_speedup": best["alone"] / best["helper"],
                   "default_gives_helper": macs >= threshold}
            print(f"[{data}] {chains} chains ({macs / 1e6:.1f} M a row): helper {best['helper']:.2f} s, "
                  f"alone {best['alone']:.2f} s, {row['helper_speedup']:.2f}x", flush=True)
            rows.append(row)
    record = {**provenance([sys.argv[0], *argv]), "repeats": args.repeats, "threshold": threshold,
              "results": rows}
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    lines = ["# Decompress with the helper thread against without it", "",
             f"Made by `{record['command']}` at {record['git_commit'][:12]} on {record['machine_provenance']}: "
             f"one archive per data set and chain count (tour order), best of {args.repeats} each way, alternating "
             f"in one process; every decoded image checked. The default threshold is {threshold / 1e6:.1f} million "
             "multiply-adds a row (`intnet.HELPER_MIN_MACS`).", "",
             "| data | chains | M multiply-adds a row | helper s | alone s | helper speed-up | default |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['data']} | {r['chains']} | {r['row_multiply_adds'] / 1e6:.1f} | "
                     f"{r['seconds']['helper']:.2f} | {r['seconds']['alone']:.2f} | {r['helper_speedup']:.2f}x | "
                     f"{'helper' if r['default_gives_helper'] else 'alone'} |")
    args.json.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
