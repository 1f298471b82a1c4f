"""How to cut a dataset into shards for the tour order: consecutive pieces of one global tour, or k-means
clusters of the codes? Compares the estimated latent cost of both, per image, against S.

    python bench/shard_plan.py [--data binarized-mnist:test] [--shards 1,2,4,10,20] [--json OUT] [--md OUT]

For each plan, every shard is toured on its own (what compress does inside a shard) and costs, per the model's
estimate: its chain heads' KL to the unconditional prior, and each other datum's KL to its predecessor's
conditional prior, with the chains compress would use for the shard (coding.order). The reconstruction term is
the same whatever the plan, so it is left out. k-means is faiss' (25 iterations, fixed seed) with S centroids;
its clusters have unequal sizes, which the table reports. Records the command, commit and machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import provenance  # noqa: E402
from acncodec import api, registry  # noqa: E402
from acncodec.coding.order import chain_layout, chain_starts, default_chains  # noqa: E402
from acncodec.evaluate import encode_all, kl_along  # noqa: E402
from acncodec.kl import kl_to_unconditional  # noqa: E402
from acncodec.shards import split_evenly  # noqa: E402
from acncodec.tour import greedy_tour  # noqa: E402
from acncodec.train import to_tensor  # noqa: E402


def shard_kl(net, codes: torch.Tensor, kl_head: torch.Tensor, members: np.ndarray) -> float:
    """Latent KL (nats, summed) of one shard coded in tour order with compress's default chains."""
    local = members[greedy_tour(codes[members].numpy())]
    lengths = chain_layout(len(local), default_chains(len(local)))
    starts = chain_starts(lengths)
    rest = np.setdiff1d(np.arange(len(local)), starts)
    kl = kl_head[local[starts]].sum().item()
    if len(rest):
        kl += kl_along(net, codes[local[rest]], codes[local[rest - 1]]).sum().item()
    return kl


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="binarized-mnist:test")
    p.add_argument("--shards", default="1,2,4,10,20")
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    images = api.as_images(args.data)
    entry = registry.pick_for(images)
    model = entry.load()
    images = api.for_model(images, model)
    net = model.net
    with torch.no_grad():
        codes = encode_all(net, to_tensor(images.images))
        kl_head = kl_to_unconditional(codes, model.unconditional)
        tour = greedy_tour(codes.numpy())
        n = len(codes)
        rows = []
        for count in [int(s) for s in args.shards.split(",")]:
            started = time.perf_counter()
            pieces = [tour[piece] for piece in split_evenly(n, count)]
            row = {"shards": count, "tour_pieces_kl": sum(shard_kl(net, codes, kl_head, m) for m in pieces) / n}
            if count > 1:
                km = faiss.Kmeans(codes.shape[1], count, niter=25, seed=1234)
                km.train(np.ascontiguousarray(codes.numpy()))
                _, label = km.index.search(np.ascontiguousarray(codes.numpy()), 1)
                clusters = [np.flatnonzero(label[:, 0] == c) for c in range(count)]
                clusters = [c for c in clusters if len(c)]
                row["kmeans_kl"] = sum(shard_kl(net, codes, kl_head, m) for m in clusters) / n
                row["kmeans_sizes"] = sorted(len(c) for c in clusters)
            row["seconds"] = round(time.perf_counter() - started, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    record = {"data": args.data, "n": n, "model": entry.name, "model_hash": model.hash,
              "unit": "nats/image, latent KL only (the reconstruction is the same for every plan)", "rows": rows,
              **provenance(sys.argv)}
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    if args.md:
        lines = [f"# Cutting {args.data} ({n:,} images) into shards: tour pieces or k-means", "",
                 f"`{record['command']}` at {record['git_commit'][:12]} on {record['machine_provenance']}", "",
                 "Estimated latent KL, nats/image, tour order inside each shard (model "
                 f"{entry.name}); the reconstruction is the same for every plan.", "",
                 "| shards | pieces of one tour | k-means clusters | k-means cluster sizes |", "|---|---|---|---|"]
        for r in rows:
            sizes = r.get("kmeans_sizes")
            lines.append(f"| {r['shards']} | {r['tour_pieces_kl']:.3f} | "
                         f"{r['kmeans_kl']:.3f} | {min(sizes):,} to {max(sizes):,} |" if sizes else
                         f"| {r['shards']} | {r['tour_pieces_kl']:.3f} | - | - |")
        Path(args.md).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
