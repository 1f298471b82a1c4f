"""Estimate of the associative set mode beside the tour and set estimates (issue 15, point 3).

    python bench/associative_set.py MODEL DATA [--chains B ...] [--neighbours K ...] [--samples S]
                                    [--threads 1] [--json OUT]

The three ways of sending a dataset whose order does not matter, each as the model's estimate of its cost
(continuous latents, nats per image; all three share the reconstruction term E_q[-log r(x|z)]):

- tour: the greedy tour split into B chains, chain heads under the unconditional prior p(z), every other
  latent under p(z | previous code on the tour). The order is a function of the set: nothing to refund.
- set: every latent under p(z), minus the order's information log N! - sum_i log m_i! (multiset order codec).
- associative set: a multiset order (Alice draws each datum by decoding from the stack), rounds of B data as in
  the codec. A latent of round r is coded under a mixture with equal weights over H + 1 components, the
  unconditional prior and p(z | c_j) for each of the H data decoded in earlier rounds, with bits back on the
  component from a posterior restricted to p(z) and the K held data whose codes are nearest the datum's own code
  (Bob knows that code once he has decoded the datum, before he pushes the component back). Per datum:
      reconstruction + E_q[log q(z) - log(p(z) + sum_{j in NN_K} p(z | c_j))] + log(H + 1)
  and the order's information is refunded as in set. Pointing at a component costs log(H + 1), the refund
  gives back log n for the n-th datum decoded, so the net latent cost approaches the KL to a mixture of the
  nearest decoded neighbours' priors. Data of the first round have nothing to point at: p(z) alone.
  The cross-entropy is a Monte-Carlo average over S draws z = c + eps (the same eps for every datum, fixed
  seed); the decode order is a fixed-seed random permutation (Alice's draws are as good as random).

Also written: the Table 2 figures (one tour through the whole set, as `acncodec estimate`), the mean KL to the
nearest held neighbour alone, the command, the git commit and the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402

import acncodec  # noqa: E402
from acncodec.codec import chain_layout, default_chains, match_model  # noqa: E402
from acncodec.coding.multiset import image_keys, order_information_nats  # noqa: E402
from acncodec.evaluate import associative_set_kl, encode_all, kl_along, reconstruction  # noqa: E402
from acncodec.kl import kl_to_unconditional  # noqa: E402
from acncodec.tour import greedy_tour  # noqa: E402
from acncodec.train import to_tensor  # noqa: E402

def git_commit() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict:
    return {"cpu": cpu_model(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "faiss": faiss.__version__, "platform": platform.platform(),
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def tour_chains_kl(net, kl_uncond: torch.Tensor, codes: torch.Tensor, tour: np.ndarray, lengths: list[int]) -> float:
    """KL along the tour split into chains, heads under p(z): what the codec's tour mode is estimated at."""
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    head = np.zeros(len(tour), dtype=bool)
    head[starts] = True
    seq = torch.from_numpy(tour)
    rest = np.flatnonzero(~head)
    total = kl_uncond[seq[head]].sum().item()
    if len(rest):
        total += kl_along(net, codes[seq[rest]], codes[seq[rest - 1]]).sum().item()
    return total / len(tour)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="model file or shipped model name")
    ap.add_argument("data", help="acncodec.load input, e.g. binarized-mnist:test")
    ap.add_argument("--chains", type=int, nargs="+", help="round sizes B (default: the codec's default, and 1)")
    ap.add_argument("--neighbours", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    started = time.perf_counter()
    commit = git_commit()   # now: the code that runs is the code at start

    model = acncodec.load_model(args.model)
    images = match_model(acncodec.load(args.data, levels=model.spec.levels), model)
    n = len(images)
    net = model.net.eval()
    x = to_tensor(images.images)
    codes = encode_all(net, x)
    recon = reconstruction(net, x, codes).mean().item()
    kl_uncond = kl_to_unconditional(codes, model.unconditional)
    order_info = order_information_nats(image_keys(images.images))
    tour = greedy_tour(codes.numpy())
    kl_one_tour = (kl_uncond[tour[0]].item() +
                   (kl_along(net, codes[tour[1:]], codes[tour[:-1]]).sum().item() if n > 1 else 0.0)) / n
    decode_order = np.random.default_rng(args.seed).permutation(n)
    dims = images.spec.height * images.spec.width * images.spec.channels
    record = {"command": "python bench/associative_set.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "git_commit": commit, "machine": machine(), "model": args.model, "model_hash": model.hash,
              "data": args.data, "n": n, "dims_per_image": dims, "samples": args.samples, "seed": args.seed,
              "neighbours": args.neighbours, "units": "nats per image",
              "reconstruction": recon, "kl_unconditional": kl_uncond.mean().item(),
              "order_information": order_info / n, "log_n_factorial": math.lgamma(n + 1) / n,
              "table2": {"ordered (one tour)": recon + kl_one_tour, "kl_tour": kl_one_tour,
                         "unordered": recon + kl_uncond.mean().item(),
                         "set": recon + kl_uncond.mean().item() - order_info / n},
              "layouts": {}}
    for b in args.chains or sorted({default_chains(n), 1}, reverse=True):
        lengths = chain_layout(n, b)
        tour_kl = tour_chains_kl(net, kl_uncond, codes, tour, lengths)
        assoc = associative_set_kl(net, model.unconditional, codes, lengths, decode_order, args.neighbours,
                                args.samples, args.seed)
        row = {"chains": len(lengths), "rounds": assoc["rounds"],
               "tour": recon + tour_kl, "set": recon + kl_uncond.mean().item() - order_info / n,
               "associative_set": {k: recon + v + assoc["pointer"] - order_info / n
                                   for k, v in assoc["kl_held_mixture"].items()},
               "parts": {"kl_tour_chains": tour_kl, "kl_held_mixture": assoc["kl_held_mixture"],
                         "pointer": assoc["pointer"], "kl_nearest_held": assoc["kl_nearest_held"]}}
        best = min(row["associative_set"].values())
        row["associative_gain_over_best_of_tour_and_set"] = min(row["tour"], row["set"]) - best
        record["layouts"][str(len(lengths))] = row
        print(f"B={len(lengths)}: tour {row['tour']:.3f}, set {row['set']:.3f}, associative set "
              + ", ".join(f"K={k} {v:.3f}" for k, v in row["associative_set"].items())
              + f" (gain {row['associative_gain_over_best_of_tour_and_set']:+.3f}) nats/image", flush=True)
    record["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps({k: v for k, v in record.items() if k != "layouts"}, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(args.json)
    return record


if __name__ == "__main__":
    main()
