"""How `greedy_tour` scales with N, and a check against the O(N^2) reference in the same run.

    python bench/tour_scaling.py [--sizes 1000 2000 ...] [--dim 16] [--threads 1] [--json OUT]
                                 [--model MODEL --data DATA --kinds model]

Times the tour on random codes, standard normal (fixed seed), and on clustered codes that look more like a
trained encoder's (a 10-component Gaussian mixture with unequal spreads), for each N; prints seconds per N
and the growth exponent (least-squares slope of log time against log N, overall and over the larger half of
the sizes), with the machine. Kind `model` uses the codes of a trained model on real data (the first N images
of DATA, e.g. mnist:all for 60,000). At N = 2,000 it also runs `greedy_tour_reference` and checks the tours are
equal, reporting the speed ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import cpu_model, provenance  # noqa: E402
from acncodec.tour import CANDIDATES, greedy_tour, greedy_tour_reference  # noqa: E402

SIZES = (1_000, 2_000, 5_000, 10_000, 20_000, 60_000)


def make_codes(kind: str, n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.standard_normal((n, dim)).astype(np.float32)
    if kind == "clustered":
        centres = rng.standard_normal((10, dim)) * 2.0
        spreads = rng.uniform(0.2, 1.0, size=10)
        label = rng.integers(0, 10, size=n)
        return (centres[label] + spreads[label, None] * rng.standard_normal((n, dim))).astype(np.float32)
    raise ValueError(kind)


def machine() -> dict:
    cpu = cpu_model()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "faiss": faiss.__version__, "torch": torch.__version__, "platform": platform.platform(),
            "faiss_threads": faiss.omp_get_max_threads(), "load_average_1min": load}


def slope(sizes, seconds) -> float:
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--kinds", nargs="+", default=["normal", "clustered"],
                    choices=["normal", "clustered", "model"])
    ap.add_argument("--model", help="model file for kind 'model'")
    ap.add_argument("--data", help="images for kind 'model'")
    ap.add_argument("--threads", type=int, default=1, help="faiss/OpenMP threads (default 1: shared machine)")
    ap.add_argument("--check-n", type=int, default=2_000, help="N for the brute-force comparison")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    result = {"machine": machine(), "dim": args.dim, "candidates": CANDIDATES, "series": {}}
    print(f"machine: {result['machine']['cpu']} ({result['machine']['cpus']} cpus, "
          f"faiss threads {args.threads}, load {result['machine']['load_average_1min']})")

    if "model" in args.kinds:
        import acncodec
        from acncodec.evaluate import encode_all
        from acncodec.train import to_tensor
        model = acncodec.load_model(args.model)
        images = acncodec.load(args.data, levels=model.spec.levels)
        real = encode_all(model.net, to_tensor(images.images)).numpy()
        result["model"], result["data"] = args.model, args.data

    def codes(kind, n):
        return real[:n] if kind == "model" else make_codes(kind, n, args.dim)

    for kind in args.kinds:
        x = codes(kind, args.check_n)
        t0 = time.perf_counter()
        fast = greedy_tour(x)
        t_fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        slow = greedy_tour_reference(x)
        t_slow = time.perf_counter() - t0
        equal = bool(np.array_equal(fast, slow))
        print(f"[{kind}] N={args.check_n}: greedy_tour {t_fast:.3f} s, reference {t_slow:.3f} s, "
              f"speed-up {t_slow / t_fast:.1f}x, tours equal: {equal}")

        rows = []
        for n in args.sizes:
            x = codes(kind, n)
            stats = {}
            t0 = time.perf_counter()
            tour = greedy_tour(x, stats=stats)
            sec = time.perf_counter() - t0
            ok = bool(np.array_equal(np.sort(tour), np.arange(n)))
            rows.append({"n": n, "seconds": sec, "permutation": ok, **stats})
            print(f"[{kind}] N={n:>7}: {sec:8.3f} s  ({1e6 * sec / n:6.1f} us/datum, "
                  f"fallback steps {stats['fallback_steps']}, searches {stats['fallback_searches']}, "
                  f"rebuilds {stats['rebuilds']})")
        sizes = [r["n"] for r in rows]
        secs = [r["seconds"] for r in rows]
        exp_all = slope(sizes, secs) if len(rows) > 1 else None
        upper = rows[len(rows) // 2:]
        exp_upper = slope([r["n"] for r in upper], [r["seconds"] for r in upper]) if len(upper) > 1 else None
        if exp_all is not None:
            upper_text = f", {exp_upper:.2f} over N >= {upper[0]['n']}" if exp_upper is not None else ""
            print(f"[{kind}] growth exponent (slope of log t vs log N): {exp_all:.2f} over all sizes{upper_text}")
        result["series"][kind] = {"rows": rows, "exponent": exp_all, "exponent_upper": exp_upper,
                                  "check": {"n": args.check_n, "equal": equal, "seconds": t_fast,
                                            "reference_seconds": t_slow, "speedup": t_slow / t_fast}}
    result.update(provenance())
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
