"""What sharding costs: archive size against the number of shards S, per order mode, with a shipped model.

    python bench/shard_overhead.py [--data binarized-mnist:test] [--shards 1,2,4] [--orders tour,associative]
                                   [--workers 2] [--json OUT] [--md OUT] [--verify] [--one-shard-record JSON]

Every archive is a real one (`acncodec.api.compress`, no estimate); the overhead is its size against the
one-shard archive of the same data and order, measured in the same run, or, with --one-shard-record, read
from a benchmark record (bench/benchmark.py) of the same data and model: a one-shard archive is the one-stream
archive, whose bytes depend only on the data, the model and the order (the record's commit is kept). With --verify the largest S of each
order is decoded and compared, pixel by pixel, with the input (as a set of images in the set orders and in
tour order; the original order keeps its order). Records the command, commit and machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import provenance  # noqa: E402
from acncodec import api, registry  # noqa: E402
from acncodec.coding.multiset import image_keys  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="binarized-mnist:test")
    p.add_argument("--shards", default="1,2,4")
    p.add_argument("--orders", default="tour,original,set,associative")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--verify", action="store_true")
    p.add_argument("--one-shard-record", default=None,
                   help="take the one-shard sizes from this bench/benchmark.py record instead of compressing")
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None)
    args = p.parse_args(argv)
    images = api.as_images(args.data)
    entry = registry.pick_for(images)
    model = entry.load()
    images = api.for_model(images, model)
    n = len(images)
    recorded = None
    if args.one_shard_record:
        recorded = json.loads(Path(args.one_shard_record).read_text())
        if (recorded["data"], recorded["n"], recorded["model"]["hash"]) != (args.data, n, model.hash):
            raise SystemExit(f"{args.one_shard_record} is not a record of {args.data} with model {entry.name}")
    rows = []
    for order in args.orders.split(","):
        base = None
        counts = [int(s) for s in args.shards.split(",")]
        for count in counts:
            if count == 1 and recorded is not None:
                one = recorded["acncodec"][order]
                base = one["bytes"]
                rows.append({"order": order, "shards": 1, "images_per_shard": n, "bytes": base,
                             "nats_per_image": one["nats_per_image"], "bits_per_dim": one["bits_per_dim"],
                             "overhead_percent": 0.0, "from": f"{args.one_shard_record} at "
                             f"{recorded['git_commit'][:12]}"})
                print(json.dumps(rows[-1]), flush=True)
                continue
            started = time.perf_counter()
            blob, report = api.compress(images, model, order=order, shards=count, workers=args.workers,
                                        estimate=False, baseline=False)
            seconds = time.perf_counter() - started
            base = len(blob) if count == 1 else base
            row = {"order": order, "shards": count, "images_per_shard": -(-n // count), "bytes": len(blob),
                   "nats_per_image": report["nats_per_image"], "bits_per_dim": report["bits_per_dim"],
                   "overhead_percent": None if base is None else 100 * (len(blob) / base - 1),
                   "compress_seconds": round(seconds, 1), "workers": args.workers}
            if args.verify and count == max(counts):
                back, _ = api.decompress(blob, model, workers=args.workers)
                same = (np.array_equal(back.images, images.images) if order == "original" else
                        sorted(image_keys(back.images)) == sorted(image_keys(images.images)))
                row["verified"] = bool(same)
                assert same, f"{order} with {count} shards did not round-trip"
            rows.append(row)
            print(json.dumps(row), flush=True)
    record = {"data": args.data, "n": n, "model": entry.name, "model_hash": model.hash, "rows": rows,
              **provenance(sys.argv)}
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    if args.md:
        lines = [f"# Sharding overhead: {args.data} ({n:,} images, shipped model {entry.name})", "",
                 f"`{record['command']}` at {record['git_commit'][:12]} on {record['machine_provenance']}", "",
                 "| order | shards | images per shard | archive bytes | nats/image | overhead vs one shard |",
                 "|---|---|---|---|---|---|"]
        for r in rows:
            over = "-" if r["overhead_percent"] is None or r["shards"] == 1 else f"{r['overhead_percent']:+.3f}%"
            lines.append(f"| {r['order']} | {r['shards']}{' *' if r.get('from') else ''} | "
                         f"{r['images_per_shard']:,} | {r['bytes']:,} | "
                         f"{r['nats_per_image']:.3f} | {over} |")
        if recorded is not None:
            lines += ["", f"\\* from {args.one_shard_record} (made at {recorded['git_commit'][:12]} by "
                      f"`{recorded['command']}`): the one-stream archive, whose bytes depend only on the data, "
                      "the model and the order."]
        Path(args.md).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
