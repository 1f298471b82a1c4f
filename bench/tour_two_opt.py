"""What 2-opt after the greedy tour is worth: the tour's KL and length, greedy against greedy + `tour.two_opt`.

    python bench/tour_two_opt.py [--model binarized-mnist] [--data binarized-mnist:test] [--neighbours 10,16]

The tour's KL is the sum of KL(q(z|x_t) || p(z|c_{t-1})) along it (Gauss-Hermite, `evaluate.kl_along`) per
image, the chain head left out; KL(K=1), each image under its nearest other code, is shown beside it as a
reference no path reaches (a path uses each code as a predecessor once). Writes
bench/results/tour-two-opt-<data>-<model hash>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from acncodec.evaluate import kl_along  # noqa: E402
from acncodec.knn import nearest_others  # noqa: E402
from acncodec.tour import greedy_tour, path_length, two_opt  # noqa: E402
from machine import provenance  # noqa: E402
from tour_codes import setup  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="binarized-mnist")
    ap.add_argument("--data", default="binarized-mnist:test")
    ap.add_argument("--neighbours", default="10,16")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    model, data, codes, x, kl = setup(args)
    n = len(x)

    nearest = nearest_others(x, np.arange(n), x, 1)[:, 0]
    t0 = time.perf_counter()
    greedy = greedy_tour(x)
    greedy_seconds = time.perf_counter() - t0
    rows = [{"tour": "greedy", "neighbours": None, "kl_nats": kl(greedy), "length": path_length(x, greedy),
             "seconds": round(greedy_seconds, 2), "moves": 0, "passes": 0}]
    for k in (int(v) for v in args.neighbours.split(",") if v):
        stats = {}
        t0 = time.perf_counter()
        better = two_opt(x, greedy, neighbours=k, stats=stats)
        seconds = time.perf_counter() - t0
        rows.append({"tour": "greedy + 2-opt", "neighbours": k, "kl_nats": kl(better),
                     "length": path_length(x, better), "seconds": round(greedy_seconds + seconds, 2),
                     "moves": stats["two_opt_moves"], "passes": stats["two_opt_passes"]})
    k1 = float(kl_along(model.net, codes, codes[torch.from_numpy(nearest)]).mean())
    record = {**provenance(), "model": args.model, "model_hash": model.hash, "data": data.source, "n": n,
              "kl_k1_nats": k1, "rows": rows}
    stem = args.out / f"tour-two-opt-{args.data.replace(':', '-')}-{model.hash[:12]}"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["| tour | neighbours | KL along it, nats/image | Euclidean length | seconds | moves (passes) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['tour']} | {r['neighbours'] or ''} | {r['kl_nats']:.4f} | {r['length']:.1f} | "
                     f"{r['seconds']} | {r['moves']} ({r['passes']}) |")
    stem.with_suffix(".md").write_text(
        f"# 2-opt after the greedy tour: {args.model} ({model.hash[:12]}) on {data.source}\n\n"
        f"`{record['command']}` at {record['git_commit']} on {record['machine_provenance']}.\n\n"
        f"{n:,} codes of the float network (as the estimate's). KL(K=1), each image under its nearest other "
        f"code, is {k1:.4f} nats/image: a bound no path reaches. The chain head is left out of the KL.\n\n"
        + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
