"""What fitting the conditional prior to the tour is worth: the tour's KL through sets of several sizes, under
each model's prior.

    python bench/tour_prior.py MODEL [MODEL ...] [--data binarized-mnist:test] [--sizes 300,1000,3000,10000]

Each set is the first n images of DATA; its tour is the codec's (`tour.tour_for`), and the KL is the sum of
KL(q(z|x_t) || p(z|c_{t-1})) along it per image (Gauss-Hermite, `tour_prior.tour_kl`), the chain head left out,
with each model's float network (as the estimate's). Models that share an encoder (one refitted from the other
with `--tour-prior`) tour the same codes, so their rows differ by the prior alone. Writes
bench/results/tour-prior-<data>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from acncodec.data import load  # noqa: E402
from acncodec.evaluate import encode_all  # noqa: E402
from acncodec.registry import load_model  # noqa: E402
from acncodec.tour_prior import tour_kl, tour_steps  # noqa: E402
from machine import provenance  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model files or shipped names")
    ap.add_argument("--data", default="binarized-mnist:test")
    ap.add_argument("--sizes", default="300,1000,3000,10000")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load(args.data)
    images = torch.from_numpy(np.ascontiguousarray(data.images.transpose(0, 3, 1, 2))).long()
    sizes = [min(int(v), len(images)) for v in args.sizes.split(",") if v]
    rows = []
    for name in args.models:
        model = load_model(name)
        codes = encode_all(model.net, images)
        fit = model.meta.get("tour_prior")
        row = {"model": name, "hash": model.hash, "tour_prior": fit, "kl_nats": {}}
        for n in sizes:
            row["kl_nats"][str(n)] = tour_kl(model.net.prior, codes, *tour_steps(codes.numpy(), np.arange(n)))
        rows.append(row)
        print(name, model.hash[:12], {k: round(v, 4) for k, v in row["kl_nats"].items()}, flush=True)
    record = {**provenance(), "data": data.source, "sizes": sizes, "rows": rows}
    stem = args.out / f"tour-prior-{args.data.replace(':', '-')}"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    head = "| model | prior fitted to tours | " + " | ".join(f"{n:,} images" for n in sizes) + " |"
    lines = [head, "|" + "---|" * (2 + len(sizes))]
    for r in rows:
        fit = r["tour_prior"]
        how = (f"sets of {fit['set_size']:,}, {fit['steps']:,} steps" + ("" if fit["kept"] else " (not kept)")
               if fit else "no")
        lines.append(f"| {r['model']} ({r['hash'][:12]}) | {how} | "
                     + " | ".join(f"{r['kl_nats'][str(n)]:.3f}" for n in sizes) + " |")
    stem.with_suffix(".md").write_text(
        f"# The tour's KL under each model's conditional prior, on {data.source}\n\n"
        f"`{record['command']}` at {record['git_commit']} on {record['machine_provenance']}.\n\n"
        "Nats per image along the codec's tour through the first n images (the chain head left out); lower is "
        "better.\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
