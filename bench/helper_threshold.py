"""Where the decoder's helper thread pays: decompress with it and without it, at several chain counts, alternating
in one process (the measurements behind `intnet.HELPER_MIN_MACS` and `intnet.SHARE_MIN_IMAGES`).

    python bench/helper_threshold.py [--data "digits:4,16,56;binarized-mnist:test:256:4,8,16;..."]
                                     [--repeats 3] [--json bench/results/speed-helper.json]

`--data` is a list of `DATA:CHAINS` separated by ';' (CHAINS a comma list). Each data set is compressed once per
chain count (tour order, its shipped model of the same name); each archive is then decompressed `repeats` times
each way, the ways alternating: alone (HELPER_MIN_MACS beyond any row); with the helper finishing each row's
held-back columns (SHARE_MIN_IMAGES beyond any round); shared, the decoding thread making a share of the images'
whole rows (`intnet.MAIN_SHARE`; SHARE_MIN_IMAGES 1). Every decoded image is compared with the input. Reported: every time each way, the row's
multiply-adds (the threshold's measure) and what the defaults choose.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "bench"))
from machine import provenance  # noqa: E402

DEFAULT = "digits:4,16,56;binarized-mnist:test:256:4,8,16;binarized-mnist:test:1000:31;binarized-mnist:test:128"
WAYS = {"alone": (1 << 62, 1 << 62), "helper": (0, 1 << 62), "shared": (0, 1)}  # HELPER_MIN_MACS, SHARE_MIN_IMAGES


def row_macs(model, chains: int) -> int:
    """The threshold's measure for a round of `chains` images (`intnet.Stepper`)."""
    from acncodec.coding.exact_numerics import ExactModel
    d = ExactModel(model).nets.decoder
    return chains * d.W * sum(l.maps["vconv"].weight.size + l.maps["v2h"].weight.size for l in d.layers)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=DEFAULT)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path, default=HERE / "bench" / "results" / "speed-helper.json")
    args = ap.parse_args(argv)
    import acncodec
    from acncodec import codec, registry
    from acncodec.coding import intnet
    threshold, share = intnet.HELPER_MIN_MACS, intnet.SHARE_MIN_IMAGES
    rows = []
    for item in args.data.split(";"):
        data, chain_list = item.rsplit(":", 1)
        images = acncodec.load(data)
        model = registry.by_name(data.split(":")[0]).load()
        want = sorted(im.tobytes() for im in images.images)
        for chains in (int(c) for c in chain_list.split(",")):
            blob, _ = codec.compress(images, model, order="tour", chains=chains, progress=False)
            times = {way: [] for way in WAYS}
            for _ in range(args.repeats):
                for way, (macs, share_at) in WAYS.items():
                    intnet.HELPER_MIN_MACS, intnet.SHARE_MIN_IMAGES = macs, share_at
                    started = time.perf_counter()
                    out, _ = codec.decompress(blob, model, progress=False)
                    times[way].append(round(time.perf_counter() - started, 2))
                    if sorted(im.tobytes() for im in out.images) != want:
                        raise SystemExit(f"{data}: decompress ({way}) did not give the input back")
            intnet.HELPER_MIN_MACS, intnet.SHARE_MIN_IMAGES = threshold, share
            macs = row_macs(model, chains)
            best = {way: min(t) for way, t in times.items()}
            default = "alone" if macs < threshold else "shared" if chains >= share else "helper"
            row = {"data": data, "model_hash": model.hash, "chains": chains, "row_multiply_adds": macs,
                   "seconds": times, "best": best, "default": default}
            print(f"[{data}] {chains} chains ({macs / 1e6:.1f} M a row): "
                  + ", ".join(f"{way} {t}" for way, t in times.items()) + f"; default {default}", flush=True)
            rows.append(row)
    record = {**provenance([sys.argv[0], *argv]), "repeats": args.repeats, "helper_min_macs": threshold,
              "share_min_images": share, "results": rows}
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    lines = ["# Decompress with the helper thread against without it", "",
             f"Made by `{record['command']}` at {record['git_commit'][:12]} on {record['machine_provenance']}: "
             f"one archive per data set and chain count (tour order), decompressed {args.repeats} times each way, "
             "the ways alternating in one process (every time listed); every decoded image checked. Alone: one "
             "thread; helper: the helper thread makes the "
             "next row's vertical stack and finishes each row's held-back columns; shared: the decoding thread "
             "makes a share of the images' whole rows (`intnet.MAIN_SHARE`). The defaults: the helper from "
             f"{threshold / 1e6:.1f} million multiply-adds a row "
             f"(`intnet.HELPER_MIN_MACS`), sharing from {share} images a round (`intnet.SHARE_MIN_IMAGES`).", "",
             "| data | chains | M multiply-adds a row | alone s | helper s | shared s | default |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        cell = lambda way: ", ".join(f"{t:.2f}" for t in r["seconds"][way])
        lines.append(f"| {r['data']} | {r['chains']} | {r['row_multiply_adds'] / 1e6:.1f} | {cell('alone')} | "
                     f"{cell('helper')} | {cell('shared')} | {r['default']} |")
    args.json.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
