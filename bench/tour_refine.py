"""What refining the tour under each step's KL is worth (`tour_refine.refine`), against the distance tour.

    python bench/tour_refine.py [--model binarized-mnist] [--data binarized-mnist:test] [--candidates 16,32,48]
                                [--without-criterion 16]

For the greedy tour, greedy + 2-opt (the distance tour) and the distance tour refined with each number of
candidates (and, for --without-criterion, without the gain criterion: every move through the candidates
tried): the KL along it per image (Gauss-Hermite with 64 points, `evaluate.kl_along`, the chain head left out),
the seconds it took (one process, the threads torch was given) and the moves made. Two figures no path reaches
are shown beside them, over the steps to each code's 30 nearest codes either way: each image under its cheapest
predecessor, and the assignment bound (each image given a predecessor, each used once, cycles allowed: scipy's
min_weight_full_bipartite_matching). Writes bench/results/tour-refine-<data>-<model hash>.{json,md}.
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
from acncodec.kl import step_costs  # noqa: E402
from acncodec.knn import nearest_others  # noqa: E402
from acncodec.tour import greedy_tour, two_opt  # noqa: E402
from acncodec.tour_refine import refine  # noqa: E402
from machine import provenance  # noqa: E402
from tour_codes import setup  # noqa: E402

BOUND_NEIGHBOURS = 30


def bounds(model, codes: torch.Tensor) -> dict:
    """Cheapest predecessor and assignment bound over the steps to each code's nearest codes, nats/image."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching
    n = len(codes)
    near = nearest_others(codes.numpy(), np.arange(n), codes.numpy(), BOUND_NEIGHBOURS)
    succ = np.repeat(np.arange(n), BOUND_NEIGHBOURS)
    pred = near.reshape(-1)
    prev = np.concatenate([pred, succ])          # steps nearest -> i and i -> nearest
    nxt = np.concatenate([succ, pred])
    cost = np.concatenate([kl_along(model.net, codes[torch.from_numpy(nxt[i:i + 65536])],
                                    codes[torch.from_numpy(prev[i:i + 65536])]).numpy()
                           for i in range(0, len(prev), 65536)])
    key = nxt * n + prev
    order = np.lexsort((cost, key))
    first = np.r_[True, key[order][1:] != key[order][:-1]]
    keep = order[first]
    # rows: the image; columns: its predecessor. A tiny shift keeps zero costs as stored entries.
    graph = sp.csr_matrix((cost[keep] + 1e-9, (nxt[keep], prev[keep])), shape=(n, n))
    rows, cols = min_weight_full_bipartite_matching(graph)
    best = np.full(n, np.inf)
    np.minimum.at(best, nxt[keep], cost[keep])
    return {"cheapest_predecessor": float(best.mean()),
            "assignment": float(np.asarray(graph[rows, cols]).sum() / n - 1e-9)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="binarized-mnist")
    ap.add_argument("--data", default="binarized-mnist:test")
    ap.add_argument("--candidates", default="16,32,48")
    ap.add_argument("--without-criterion", default="16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    model, data, codes, x, kl = setup(args)
    n = len(x)

    t0 = time.perf_counter()
    greedy = greedy_tour(x)
    greedy_seconds = time.perf_counter() - t0
    distance = two_opt(x, greedy)
    distance_seconds = time.perf_counter() - t0
    rows = [{"tour": "greedy", "candidates": None, "kl_nats": kl(greedy), "seconds": round(greedy_seconds, 2)},
            {"tour": "greedy + 2-opt (distance tour)", "candidates": None, "kl_nats": kl(distance),
             "seconds": round(distance_seconds, 2)}]
    runs = [(int(v), True) for v in args.candidates.split(",") if v]
    runs += [(int(v), False) for v in args.without_criterion.split(",") if v]
    for k, prune in runs:
        stats = {}
        t0 = time.perf_counter()
        better = refine(x, distance, step_costs(model.net.prior, codes), candidates=k, prune=prune, stats=stats)
        seconds = time.perf_counter() - t0
        rows.append({"tour": "distance tour refined" + ("" if prune else ", without the gain criterion"),
                     "candidates": k, "gain_criterion": prune, "kl_nats": kl(better), "seconds": round(seconds, 2),
                     **stats})
        print(rows[-1], flush=True)
    limits = bounds(model, codes)
    record = {**provenance(), "model": args.model, "model_hash": model.hash, "data": data.source, "n": n,
              "threads": args.threads, "bounds_nats": limits, "bound_neighbours": BOUND_NEIGHBOURS, "rows": rows}
    stem = args.out / f"tour-refine-{args.data.replace(':', '-')}-{model.hash[:12]}"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["| tour | candidates | KL along it, nats/image | seconds | moves: relocations, reversals, exchanges "
             "(rounds) | steps priced |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "rounds" in r:
            lines.append(f"| {r['tour']} | {r['candidates']} | {r['kl_nats']:.4f} | {r['seconds']} | "
                         f"{r['relocations']}, {r['reversals']}, {r['exchanges']} ({r['rounds']}) | "
                         f"{r['steps_computed']:,} |")
        else:
            lines.append(f"| {r['tour']} | | {r['kl_nats']:.4f} | {r['seconds']} | | |")
    stem.with_suffix(".md").write_text(
        f"# The tour refined under each step's KL: {args.model} ({model.hash[:12]}) on {data.source}\n\n"
        f"`{record['command']}` at {record['git_commit']} on {record['machine_provenance']}, "
        f"{args.threads} torch threads.\n\n"
        f"{n:,} codes of the float network (as the estimate's); the chain head is left out of the KL. The refined "
        f"rows' seconds are the refinement's alone (the distance tour's are on its row). Over the steps to each "
        f"code's {BOUND_NEIGHBOURS} nearest codes either way, no path reaches: each image under its cheapest "
        f"predecessor {limits['cheapest_predecessor']:.4f}, the assignment bound {limits['assignment']:.4f} "
        f"nats/image.\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
