"""How much KL(unconditional) a richer p(z) would save: held-out E_q[log p(z)] of mixtures fitted like the
model's own (`acncodec.unconditional`: the same codes, split, samples and EM), with more diagonal components
than the model may choose from and with full covariances.

    python bench/unconditional_fit.py [--model binarized-mnist] [--data binarized-mnist:train]
                                      [--diag 64,128,256,512] [--full 16,32,64]

KL(q || p) = E_q[log q] - E_q[log p], and E_q[log q] does not depend on p, so a gain of g nats in held-out
log-likelihood of latent samples is a fall of about g nats/image in KL(unconditional), the part of the
unordered cost that p(z) decides. The chain heads are coded per dimension under each diagonal component
(`buckets.HeadTables`); a full-covariance mixture would need a head codec of its own. Writes
bench/results/unconditional-fit-<data>.{json,md}.
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

from acncodec.data import load  # noqa: E402
from acncodec.evaluate import encode_all  # noqa: E402
from acncodec.registry import load_model  # noqa: E402
from acncodec.unconditional import split_samples  # noqa: E402
from machine import provenance  # noqa: E402


def held_out(fit: np.ndarray, val: np.ndarray, k: int, covariance: str, seed: int) -> dict:
    from sklearn.mixture import GaussianMixture
    t0 = time.perf_counter()
    gm = GaussianMixture(k, covariance_type=covariance, random_state=seed, reg_covar=1e-4).fit(fit)
    return {"components": k, "covariance": covariance, "validation_loglik": float(gm.score(val)),
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="binarized-mnist")
    ap.add_argument("--data", default="binarized-mnist:train")
    ap.add_argument("--diag", default="64,128,256,512")
    ap.add_argument("--full", default="16,32,64")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    data = load(args.data)
    seed = model.meta.get("train_config", {}).get("seed", 0)
    images = torch.from_numpy(np.ascontiguousarray(data.images.transpose(0, 3, 1, 2))).long()
    codes = encode_all(model.net, images).numpy().astype(np.float64)
    fit, val, n_val, _ = split_samples(codes, seed)
    rows = [held_out(fit, val, int(k), "diag", seed) for k in args.diag.split(",") if k]
    rows += [held_out(fit, val, int(k), "full", seed) for k in args.full.split(",") if k]
    chosen = model.meta.get("unconditional_selection", {})
    base = next((r["validation_loglik"] for r in rows
                 if r["covariance"] == "diag" and r["components"] == chosen.get("components")), None)
    for r in rows:
        r["gain_nats"] = None if base is None else r["validation_loglik"] - base
    record = {**provenance(), "model": args.model, "model_hash": model.hash, "data": data.source,
              "codes": len(codes), "validation_codes": n_val, "model_selection": chosen, "rows": rows}
    stem = args.out / f"unconditional-fit-{args.data.split(':')[0]}"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["| p(z) | components | held-out E[log p(z)] nats | against the model's | EM seconds |",
             "|---|---|---|---|---|"]
    for r in rows:
        gain = "" if r["gain_nats"] is None else f"{r['gain_nats']:+.2f}"
        lines.append(f"| {r['covariance']} | {r['components']} | {r['validation_loglik']:.2f} | {gain} | "
                     f"{r['seconds']} |")
    stem.with_suffix(".md").write_text(
        f"# A richer p(z): {args.model} ({model.hash[:12]}) on {data.source}\n\n`{record['command']}` at "
        f"{record['git_commit']} on {record['machine_provenance']}.\n\nThe model chose "
        f"{chosen.get('components')} diagonal components (of at most 64). {len(codes):,} codes, {n_val:,} held "
        "out before sampling; a gain of g nats is a fall of about g nats/image in KL(unconditional).\n\n"
        + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
