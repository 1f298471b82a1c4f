"""The exact coder's parts compiled (numba, `acncodec/coding/kernels.py`) against their numpy paths, alternating in
one process on one thread, each result checked equal:

    python bench/coding_parts.py [--model binarized-mnist] [--images 4,128] [--repeats 5]
                                 [--json bench/results/coding-parts.json]

The parts: the decoder's full pass (`Decoder.logits`, the sender's scoring, on a block of the first --images
count), and per round of the second count, what the receiver computes once per round: the encoder, the
conditioning map, the prior's and the posterior's latent masses. Random inputs of the model's shape; the best of
--repeats alternating timings each way. Writes bench/results/coding-parts.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "bench"))
from machine import provenance  # noqa: E402


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="binarized-mnist")
    ap.add_argument("--images", default="4,128")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, default=HERE / "bench" / "results" / "coding-parts.json")
    args = ap.parse_args(argv)
    from acncodec import registry
    from acncodec.coding import exact_numerics
    block, batch = (int(v) for v in args.images.split(","))
    model = registry.by_name(args.model).load()
    pm = exact_numerics.ExactModel(model)
    nets, latent = pm.nets, pm.latent
    d = nets.decoder
    rng = np.random.default_rng(0)
    levels = 2 if d.outputs == 1 else d.outputs

    def images(n):
        return rng.integers(0, levels, (n, d.C, d.H, d.W))
    x_block, x_round = images(block), images(batch)
    z_block = pm.latent_values(rng.integers(0, latent.buckets, (block, latent.dim)))
    z_round = pm.latent_values(rng.integers(0, latent.buckets, (batch, latent.dim)))
    codes = nets.encoder(x_round)
    no_kernels = lambda: None      # noqa: E731

    def masses(fn, numpy_fn):
        def run(compiled):
            if compiled:
                return fn()
            real = exact_numerics._kernels
            exact_numerics._kernels = no_kernels
            try:
                return numpy_fn()
            finally:
                exact_numerics._kernels = real
        return run

    parts = {
        f"full pass, {block} images": lambda c: d.logits(x_block, z_block, compiled=c),
        f"encoder, {batch} images": lambda c: nets.encoder(x_round, compiled=c),
        f"conditioning map, {batch} images": lambda c: d.condition(z_round, compiled=c),
        f"prior network and masses, {batch} images": masses(lambda: pm.prior_probs(codes),
                                                            lambda: pm.prior_probs(codes)),
        f"posterior masses, {batch} images": masses(lambda: pm.posterior_probs(codes),
                                                    lambda: pm.posterior_probs(codes)),
    }
    rows = []
    with exact_numerics._blas_pool().limit(limits=1):
        for name, run in parts.items():
            if not np.array_equal(run(True), run(False)):
                raise SystemExit(f"{name}: the compiled part differs from numpy's")
            times = {True: [], False: []}
            for _ in range(args.repeats):
                for compiled in (True, False):
                    started = time.perf_counter()
                    run(compiled)
                    times[compiled].append(time.perf_counter() - started)
            best = {k: min(v) * 1e3 for k, v in times.items()}
            rows.append({"part": name, "compiled_ms": round(best[True], 2), "numpy_ms": round(best[False], 2),
                         "speedup": round(best[False] / best[True], 2)})
            print(rows[-1], flush=True)
    record = {**provenance([sys.argv[0], *argv]), "model": args.model, "model_hash": model.hash,
              "repeats": args.repeats, "threads": 1, "results": rows}
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    lines = [f"# The exact coder's parts, compiled against numpy: {args.model} ({model.hash[:12]})", "",
             f"Made by `{record['command']}` at {record['git_commit'][:12]} on {record['machine_provenance']}; BLAS: "
             f"{record['blas']}, one thread. Random inputs of the model's shape; best of {args.repeats} timings "
             "each way, the ways alternating in one process; every compiled result equal to numpy's.", "",
             "| part | compiled ms | numpy ms | speed-up |", "|---|---|---|---|"]
    lines += [f"| {r['part']} | {r['compiled_ms']} | {r['numpy_ms']} | {r['speedup']}x |" for r in rows]
    args.json.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
