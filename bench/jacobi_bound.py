"""How many full passes predictive (Jacobi) decoding would need, against the cost of the incremental decoder.

    python bench/jacobi_bound.py [--data binarized-mnist:test:200] [--model binarized-mnist] [--json OUT]

Predictive decoding guesses every pixel, runs the full pass once on the guesses, and pops pixels in raster
order while each popped value equals its guess: the probabilities of the pixels after the first wrong guess
were computed from a wrong prefix, so another full pass is needed from there. Even with the best guess the model
can make (the most probable value given the true prefix), each pixel whose true value is not that guess costs
one more full pass: an image needs at least (mispredicted pixels + 1) passes. With a round's images decoded in
lockstep on one stack, a pass is needed for every step at which any of them is mispredicted. This script
counts those on real data with the exact model's full pass, and times a full pass and the incremental decoder
per image on this machine, so the bound can be compared with what the incremental decoder costs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import provenance  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="binarized-mnist:test:200")
    ap.add_argument("--model", default="binarized-mnist")
    ap.add_argument("--batch", type=int, default=31, help="images decoded in lockstep (a round)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    import acncodec
    from acncodec import codec, registry
    from acncodec.coding import numerics
    model = registry.by_name(args.model).load()
    pm = numerics.for_model(model)
    x = codec.channels_first(codec.match_model(acncodec.load(args.data), model).images)
    buckets = pm.posterior_probs(pm.encode(x)).argmax(-1)          # each image's likeliest latent bucket
    started = time.perf_counter()
    probs = pm.score(x, buckets)                                   # (N, C, H, W) P(1) or (..., levels)
    full_s = (time.perf_counter() - started) / len(x)
    guess = (probs > 0.5).astype(np.int64) if pm.binary else probs.argmax(-1)
    wrong = (guess != x).reshape(len(x), -1)                       # (N, steps), raster order
    per_image = wrong.sum(1) + 1
    b = min(args.batch, len(x))
    rounds = [wrong[i:i + b].any(0).sum() + 1 for i in range(0, len(x) - b + 1, b)]
    stepper = pm.stepper(buckets[:b])
    started = time.perf_counter()
    from acncodec.coding.raster import raster
    raster(stepper, b, pm.shape, lambda p, i, j, c: x[:b, c, i, j])
    step_s = (time.perf_counter() - started) / b
    record = {
        "data": args.data, "model": args.model, "images": int(len(x)), "batch": b,
        "passes_per_image_alone": {"mean": float(per_image.mean()), "median": float(np.median(per_image)),
                                   "min": int(per_image.min())},
        "passes_per_round_lockstep": {"mean": float(np.mean(rounds)), "min": int(np.min(rounds))},
        "full_pass_ms_per_image": 1000 * full_s, "incremental_ms_per_image": 1000 * step_s,
        "break_even_passes": step_s / full_s,
        "provenance": provenance(sys.argv),
    }
    print(json.dumps({k: v for k, v in record.items() if k != "provenance"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
