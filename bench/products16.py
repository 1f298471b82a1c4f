"""The 16-bit integer products (`acncodec/coding/products16.py`) against the float32 BLAS products they replace,
one thread, alternating in one process, every result checked equal:

    python bench/products16.py [--models binarized-mnist,fashion-mnist] [--repeats 7]
                               [--json bench/results/products16.json]

Three parts. The products alone: (M x K) @ (K x N) at the shapes the decoder's maps take (a vconv on a block of
four images, on a stepper's row of 128, an hconv on a stepper's pixel), operands within an exact2 map's
bounds, `products16.products` against numpy's float32 product (GOP/s: 2 M K N / time). And each shipped exact2
model's full pass (`Decoder.logits`) with each path: on 4 images (the sender's block) and on 128 (a round), its
logits equal; and each model's encoder, its convolutions on 16-bit products with split inputs against float64
ones, on a block of images, its codes equal. Writes bench/results/products16.{json,md}.
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

SHAPES = {"vconv, 4 images (a block)": (448, 480, 64), "vconv, 128 images (a stepper row, part)": (3584, 480, 64),
          "Fashion-MNIST vconv, 4 images": (448, 720, 96), "hconv, 128 images (a stepper pixel)": (128, 96, 64),
          "v2h, 4 images": (448, 64, 64)}


def best_of(repeats: int, runs: dict) -> dict:
    """The best time of each run over `repeats` rounds, the runs alternating."""
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {k: min(v) for k, v in times.items()}


def products(repeats: int) -> list[dict]:
    from acncodec.coding import products16
    rng = np.random.default_rng(0)
    rows = []
    for name, (m, k, n) in SHAPES.items():
        x = rng.integers(-512, 513, (m, k)).astype(np.int16)          # an exact2 vconv's input bound
        w = rng.integers(-(2 ** 23 // (512 * k)), 2 ** 23 // (512 * k) + 1, (k, n))   # sums below 2^23
        packed, out = products16.pack(w), np.empty((m, n), np.int32)
        x32, w32, out32 = x.astype(np.float32), w.astype(np.float32), np.empty((m, n), np.float32)
        runs = {"16-bit": lambda: products16.products(x, packed, out), "float32": lambda: np.dot(x32, w32, out32)}
        for run in runs.values():
            run()
        if not np.array_equal(out, out32):
            raise SystemExit(f"{name}: the 16-bit products differ from float32's")
        best = best_of(repeats, runs)
        rate = {path: 2 * m * k * n / t / 1e9 for path, t in best.items()}
        rows.append({"part": f"{name}: ({m} x {k}) @ ({k} x {n})", "16-bit GOP/s": round(rate["16-bit"], 1),
                     "float32 GFLOP/s": round(rate["float32"], 1), "ratio": round(rate["16-bit"] / rate["float32"], 2)})
        print(rows[-1], flush=True)
    return rows


def shipped(model_names: list[str]):
    """(name, model, its exact numerics) for each shipped model named."""
    from acncodec import registry
    from acncodec.coding import exact_numerics
    for model_name in model_names:
        model = registry.by_name(model_name).load()
        yield model_name, model, exact_numerics.ExactModel(model)


def full_passes(model_names: list[str], repeats: int) -> list[dict]:
    from acncodec.coding import products16
    on = products16.available
    rows = []
    for model_name, model, pm in shipped(model_names):
        d = pm.nets.decoder
        args = {}
        for path, available in (("16-bit", on), ("float32", lambda: False)):
            products16.available = available
            d._args = None
            args[path] = d._compiled_args()
        products16.available = on
        rng = np.random.default_rng(0)
        levels = 2 if d.outputs == 1 else d.outputs
        for images in (4, 128):
            x = rng.integers(0, levels, (images, d.C, d.H, d.W))
            z = pm.latent_values(rng.integers(0, pm.latent.buckets, (images, pm.latent.dim)))

            def run(path):
                d._args = args[path]
                return d.logits(x, z)
            if not np.array_equal(run("16-bit"), run("float32")):
                raise SystemExit(f"{model_name}: the 16-bit path's logits differ from float32's")
            best = best_of(repeats, {p: (lambda p=p: run(p)) for p in args})
            rows.append({"part": f"{model_name} ({model.hash[:12]}) full pass, {images} images",
                         "16-bit ms": round(best["16-bit"] * 1e3, 2), "float32 ms": round(best["float32"] * 1e3, 2),
                         "ratio": round(best["float32"] / best["16-bit"], 2)})
            print(rows[-1], flush=True)
    return rows


def encoders(model_names: list[str], repeats: int) -> list[dict]:
    """Each shipped model's encoder on a block of images (`exact_numerics.ENCODE_BLOCK`): its convolutions on
    16-bit products with each input split in two (`products16.split_bits`) against float64 ones, codes equal."""
    from acncodec.coding import exact_numerics, intnet, products16
    on = products16.available
    rows = []
    for model_name, model, pm in shipped(model_names):
        e = pm.nets.encoder
        splits = [intnet._conv_operand(a, a.window_weight(a.weight.shape[1] // 9, 3, 3), a.weight.shape[1] // 9)[3]
                  for a in e.convs]
        levels = 2 if pm.binary else pm.levels
        x = np.random.default_rng(0).integers(0, levels, (exact_numerics.ENCODE_BLOCK, *pm.shape))

        def run(available):
            products16.available = available
            try:
                return e(x)
            finally:
                products16.available = on
        if not np.array_equal(run(on), run(lambda: False)):
            raise SystemExit(f"{model_name}: the split 16-bit encoder's codes differ from float64's")
        best = best_of(repeats, {"16-bit": lambda: run(on), "float64": lambda: run(lambda: False)})
        rows.append({"part": f"{model_name} ({model.hash[:12]}) encoder, {len(x)} images (splits {splits})",
                     "16-bit ms": round(best["16-bit"] * 1e3, 2), "float64 ms": round(best["float64"] * 1e3, 2),
                     "ratio": round(best["float64"] / best["16-bit"], 2)})
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="binarized-mnist,fashion-mnist")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", type=Path, default=HERE / "bench" / "results" / "products16.json")
    args = ap.parse_args(argv)
    from acncodec.coding import exact_numerics, products16
    if not products16.available():
        raise SystemExit("this CPU has no AVX-512BW: the coder takes the float32 products only")
    with exact_numerics._blas_pool().limit(limits=1):
        part_rows = products(args.repeats)
        pass_rows = full_passes(args.models.split(","), args.repeats)
        encoder_rows = encoders(args.models.split(","), args.repeats)
    record = {**provenance([sys.argv[0], *argv]), "repeats": args.repeats, "threads": 1, "products": part_rows,
              "full_passes": pass_rows, "encoders": encoder_rows}
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    lines = ["# 16-bit integer products against float32 ones", "",
             f"Made by `{record['command']}` at {record['git_commit'][:12]} on {record['machine_provenance']}; BLAS: "
             f"{record['blas']}, one thread. Best of {args.repeats} timings each way, the ways alternating in one "
             "process; every 16-bit result equal to float32's.", "",
             "| product | 16-bit GOP/s | float32 GFLOP/s | ratio |", "|---|---|---|---|"]
    lines += [f"| {r['part']} | {r['16-bit GOP/s']} | {r['float32 GFLOP/s']} | {r['ratio']}x |" for r in part_rows]
    lines += ["", "| decoder | 16-bit ms | float32 ms | speed-up |", "|---|---|---|---|"]
    lines += [f"| {r['part']} | {r['16-bit ms']} | {r['float32 ms']} | {r['ratio']}x |" for r in pass_rows]
    lines += ["", "Encoders (exact1's wide maps; splits: each convolution's low-part bits, 0 where it keeps float64):",
              "", "| encoder | 16-bit ms | float64 ms | speed-up |", "|---|---|---|---|"]
    lines += [f"| {r['part']} | {r['16-bit ms']} | {r['float64 ms']} | {r['ratio']}x |" for r in encoder_rows]
    args.json.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
