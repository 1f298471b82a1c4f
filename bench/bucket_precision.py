"""What the latent discretisation costs, per bucket precision b, on a trained model.

For each b: the bucket table from p(z)'s marginals (as the model file stores it), then per image
  - the discretised KL(Q || P) between bucket distributions, against the continuous KL(q || p), with p the
    conditional prior given the nearest other code (K = 1);
  - the reconstruction -log r(x | bucket value) with a bucket drawn from Q, against -log r(x | z), z ~ q;
and the time to compute one round's prior bucket probabilities (100 data), which grows as 2^b.
The cost of discretising is (disc KL + disc reconstruction) - (continuous KL + continuous reconstruction).

Usage: python bench/bucket_precision.py MODEL DATA [--bits 6,8,10,12] [--json OUT]
"""

import sys
from pathlib import Path
import argparse
import json
import platform
import time

import numpy as np
import torch

import acncodec
from acncodec import modelfile
from acncodec.buckets import discretised_kl, posterior_probabilities, prior_probabilities
from acncodec.evaluate import encode_all, reconstruction
from acncodec.kl import kl_to_mixture
from acncodec.knn import nearest_others
from acncodec.train import to_tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import provenance  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--bits", default="6,8,10,12")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = acncodec.load_model(args.model)
    images = acncodec.load(args.data, levels=model.spec.levels)
    x = to_tensor(images.images)
    codes = encode_all(model.net, x)
    neighbour = torch.from_numpy(nearest_others(codes.numpy(), np.arange(len(codes)), codes.numpy(), 1)[:, 0])
    with torch.no_grad():
        mix = model.net.prior(codes[neighbour])
    cont_kl = kl_to_mixture(codes, mix).mean().item()
    cont_rec = reconstruction(model.net, x, codes).mean().item()
    rows = []
    rng = np.random.default_rng(0)
    for bits in [int(b) for b in args.bits.split(",")]:
        table = modelfile.with_buckets(model, bits).buckets
        q = posterior_probabilities(table, codes.numpy())
        t0 = time.perf_counter()
        p = prior_probabilities(table, mix)
        seconds_per_round = (time.perf_counter() - t0) * 100 / len(codes)
        u = rng.random(q.shape[:2] + (1,))
        buckets = np.minimum((q.cumsum(-1) < u).sum(-1), table.buckets - 1)
        z = torch.from_numpy(table.values(buckets)).float()
        with torch.no_grad():
            disc_rec = -model.net.decoder.log_prob(x.long(), z).double().mean().item()
        disc_kl = float(discretised_kl(q, p).mean())
        rows.append({"bits": bits, "kl_discrete": disc_kl, "kl_continuous": cont_kl,
                     "reconstruction_discrete": disc_rec, "reconstruction_continuous": cont_rec,
                     "cost_nats_per_image": disc_kl + disc_rec - cont_kl - cont_rec,
                     "prior_table_seconds_per_100": seconds_per_round})
        print(json.dumps(rows[-1]))
    record = {"model": args.model, "model_hash": model.hash, "data": args.data, "n": len(images), "rows": rows,
              "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, 1 torch thread"}
    record.update(provenance())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    main()
