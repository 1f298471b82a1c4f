"""Compress and decompress speed of this tree against another checkout, side by side, with a roofline.

    python bench/coding_speed.py OTHER_TREE [--data binarized-mnist:test:1000,fashion-mnist:test:1000]
                                            [--order tour] [--json bench/results/speed-coding.json]
    python bench/coding_speed.py --chains 5,10,20,40,80 [--data ...] [--json bench/results/speed-chains.json]
    python bench/coding_speed.py --blas-threads 1,2 [--data ...] [--json bench/results/speed-blas-threads.json]

OTHER_TREE is a checkout of another commit, for example `git worktree add /tmp/base-81759e7 81759e7`.
For each data set (coded with the shipped model of the same name in each tree), each tree compresses
(`codec.compress`, the estimate included, as `acncodec compress` does) and then decompresses in fresh processes,
the two trees alternating so both see the same machine load. Each child reports its wall time and peak
resident memory; every decoded image is compared with the input (as a multiset: the tour reorders). Speed is
the other tree's time over this tree's. A compress child loads torch before its clock starts: every tree's
compress needs it (for the float model's codes and the estimate), and an older tree loads it when acncodec is
imported, this one inside compress; its load (about a second) is not coding time. A decompress child loads
what decompress loads, inside the measured time. Before any timed run (in every mode) each tree measured codes
64 images of each data set, untimed: a tree whose compiled code (numba's, cached on disk) is stale would
otherwise compile it inside its first timed run. `--chains` instead measures this tree alone at several chain counts:
the trade-off between decoding speed (bigger rounds) and rate (more chain heads, coded without a neighbour).
`--blas-threads` measures this tree alone with each BLAS thread count (OPENBLAS_NUM_THREADS and
OMP_NUM_THREADS in the children), the counts alternating, with the load average before each child. The exact
coder takes that count as its own number of threads, each on a one-thread BLAS pool (`exact_numerics.
side_by_side`), so this is also its speed against its thread count.

The roofline: multiply-adds per image of the integer networks (counted while they run on one image), this
machine's matrix-multiply rate in the type the decoder's products run in (float64 for exact1: integer-valued,
every sum below 2^53; for exact2's narrow maps, every sum below 2^24, float32, or this tree's 16-bit integer
products where the CPU has them; the same numbers in any order either way), and the images/s that rate allows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "bench"))
from machine import provenance  # noqa: E402

CHILD = r"""
import hashlib, json, resource, sys, time
import numpy as np
import acncodec
from acncodec import codec, modelfile, registry
phase, data, model_name, archive, order = sys.argv[1:6]
chains = int(sys.argv[6]) if len(sys.argv) > 6 else None
images = acncodec.load(data)
shipped = registry.by_name(model_name)     # a shipped model's name, or a model file (bench/narrow_maps.py)
model = shipped.load() if shipped is not None else modelfile.load(model_name)
if phase == "compress":
    import torch  # noqa: F401  (compress loads it in every tree, some at import: its load is not coding time)
started = time.perf_counter()
if phase == "compress":
    blob, report = codec.compress(images, model, order=order, chains=chains, progress=False)
    seconds = time.perf_counter() - started
    open(archive, "wb").write(blob)
    extra = {"bytes": len(blob), "chains": report["chains"],
             "estimate_nats_per_image": report.get("estimate_nats_per_image")}
else:
    out, _ = codec.decompress(open(archive, "rb").read(), model, progress=False)
    seconds = time.perf_counter() - started
    key = lambda x: sorted(hashlib.sha256(im.tobytes()).hexdigest() for im in x)
    extra = {"exact": key(out.images) == key(images.images)}
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mib": peak, "n": len(images), **extra}))
"""


def child(tree: Path, *args: str, blas_threads: int | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    if blas_threads:
        env.update(OPENBLAS_NUM_THREADS=str(blas_threads), OMP_NUM_THREADS=str(blas_threads))
    if "ACNCODEC_MNIST_DIR" not in env:   # the other tree finds MNIST where this one does
        from acncodec.data import _find_mnist
        from acncodec.errors import AcnError
        try:
            env["ACNCODEC_MNIST_DIR"] = str(_find_mnist().parent)
        except AcnError:
            pass
    done = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=tree, env=env, capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(f"{tree}: {' '.join(args[:2])} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def coded(tree: Path, data: str, model: str, archive: str, order: str, what: str) -> tuple[dict, dict]:
    """DATA compressed with MODEL (a shipped name or a file) and decompressed, in fresh children of `tree`: the
    two reports, every decoded image checked (`what` names the run in the error)."""
    c = child(tree, "compress", data, model, archive, order)
    d = child(tree, "decompress", data, model, archive, order)
    if not d["exact"]:
        raise SystemExit(f"{what}: {data} did not decode to its input")
    return c, d


def warm_up(data: str) -> str:
    """A few of DATA's images (its first 64, where the spec names a split)."""
    parts = data.split(":")
    return ":".join(parts[:2] + ["64"]) if len(parts) >= 2 else data


def warm(trees, args) -> None:
    """Untimed, before any timed child: each tree codes a few images of each data set, so that its compiled code
    is cached on disk before its clock runs."""
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"coding-speed-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    for data in args.data.split(","):
        for tree in trees:
            coded(tree, warm_up(data), data.split(":")[0], str(tmp / "warm.acnz"), args.order, str(tree))


#: A child's rate of this tree's 16-bit products (`acncodec/coding/products16.py`) at the shape of a decoder
#: layer's vconv, (M x 480) @ (480 x 64), its rows split among `threads` threads (the kernel runs without the
#: GIL). A 2048-square product, as BLAS is measured, would measure the kernel on a weight it does not keep in
#: cache, which the decoder's weights (60 KB) never are.
_PRODUCTS16 = """
import sys, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from acncodec.coding import products16
threads = int(sys.argv[1])
m, k, n = 8192, 480, 64
rng = np.random.default_rng(0)
a = rng.integers(-512, 513, (m, k)).astype(np.int16)
w = products16.pack(rng.integers(-8, 9, (k, n)))
out = np.empty((m, n), np.int32)
parts = np.array_split(np.arange(m), threads)
run = lambda r: products16.products(a[r[0]:r[-1] + 1], w, out[r[0]:r[-1] + 1])
with ThreadPoolExecutor(threads) as pool:
    list(pool.map(run, parts))
    best = 1e9
    for _ in range(5):
        t = time.perf_counter(); list(pool.map(run, parts)); best = min(best, time.perf_counter() - t)
print(2 * m * k * n / best / 1e9)
"""


def matmul_rate(threads: int | None, dtype: str = "float64") -> float:
    """G(FL)OP/s of a 2048-square matrix product in `dtype` (for "16-bit", this tree's integer products at a
    vconv's shape: `_PRODUCTS16`), best of 3, in a child with `threads` BLAS threads (all cores where None)."""
    env = dict(os.environ)
    if threads:
        env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    if dtype == "16-bit":
        env["PYTHONPATH"] = str(HERE)
        args = ["-c", _PRODUCTS16, str(threads or os.cpu_count())]
    else:
        args = ["-c", f"import numpy as np, time\na = np.random.rand(2048, 2048).astype('{dtype}')\nbest = 1e9\n"
                "a @ a\nfor _ in range(3):\n"
                "    t = time.perf_counter(); a @ a; best = min(best, time.perf_counter() - t)\n"
                "print(2 * 2048 ** 3 / best / 1e9)"]
    return float(subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                                check=True).stdout)


def products16_available() -> bool:
    """Whether this tree's compiled decoder takes the 16-bit products on this machine (checked in a child)."""
    code = "from acncodec.coding import products16; print(products16.available())"
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(HERE)},
                          capture_output=True, text=True, check=True).stdout.strip() == "True"


def decoder_arithmetic(model_name: str, sixteen: bool) -> str:
    """The type the decoder's matrix products run in: for narrow maps (exact2) 16-bit integers where the CPU
    multiplies them (`sixteen`), else float32; float64 for exact1's."""
    from acncodec import registry
    if registry.by_name(model_name).load().numerics != "exact2":
        return "float64"
    return "16-bit" if sixteen else "float32"


def multiply_adds(model_name: str) -> dict:
    """Multiply-adds per image of each integer network, counted on one image (the networks' numpy passes, whose
    maps finish in `Affine.finish`; the compiled passes do the same products)."""
    import numpy as np
    from acncodec import registry
    from acncodec.coding import intnet
    from acncodec.coding.exact_numerics import split_parts
    model = registry.by_name(model_name).load()
    nets = intnet.IntNetworks.from_dict(split_parts(model.exact)[0])
    count = [0]
    original = intnet.Affine.finish

    def counting(self, acc):
        count[0] += acc.size * self.weight.shape[1]
        return original(self, acc)

    spec = model.spec
    x = np.zeros((1, spec.channels, spec.height, spec.width), dtype=np.int64)
    out = {}
    intnet.Affine.finish = counting
    try:
        for name, run in (("encoder", lambda: nets.encoder(x, compiled=False)),
                          ("prior", lambda: nets.prior(np.zeros((1, model.config.latent_dim)))),
                          ("decoder", lambda: nets.decoder.logits(x, np.zeros((1, model.config.latent_dim)),
                                                                  compiled=False))):
            count[0] = 0
            run()
            out[name] = count[0]
    finally:
        intnet.Affine.finish = original
    return out


def commit_of(tree: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree, capture_output=True, text=True).stdout.strip()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("other", type=Path, nargs="?")
    ap.add_argument("--chains", help="comma-separated chain counts: measure this tree at each")
    ap.add_argument("--data", default="binarized-mnist:test:1000,fashion-mnist:test:1000")
    ap.add_argument("--order", default="tour")
    ap.add_argument("--json", type=Path, default=HERE / "bench" / "results" / "speed-coding.json")
    ap.add_argument("--blas-threads", help="comma-separated BLAS thread counts: measure this tree at each")
    args = ap.parse_args(argv)
    if args.chains:
        return sweep(args, argv)
    if args.blas_threads:
        return blas_sweep(args, argv)
    if args.other is None:
        ap.error("give OTHER_TREE, or --chains")
    other = args.other.resolve()
    sixteen = products16_available()
    rates = {dtype: {"one_thread": matmul_rate(1, dtype), "all_threads": matmul_rate(None, dtype)}
             for dtype in ("float64", "float32") + (("16-bit",) if sixteen else ())}
    for dtype, r in rates.items():
        print(f"{dtype} matrix product: {r['one_thread']:.1f} G(FL)OP/s on one thread, "
              f"{r['all_threads']:.1f} on all {os.cpu_count()}", flush=True)
    rows = []
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"coding-speed-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    warm((HERE, other), args)
    for data in args.data.split(","):
        model_name = data.split(":")[0]
        row = {"data": data, "model": model_name, "trees": {}}
        for role, tree in (("this", HERE), ("other", other)):
            c, d = coded(tree, data, model_name, str(tmp / f"{role}.acnz"), args.order, str(tree))
            row["trees"][role] = {"compress": c, "decompress": d}
            print(f"[{data}] {role}: compress {c['seconds']:.1f} s ({c['bytes']:,} B, {c['chains']} chains, "
                  f"{c['peak_mib']:.0f} MiB), decompress {d['seconds']:.1f} s ({d['peak_mib']:.0f} MiB), exact",
                  flush=True)
        this, oth = row["trees"]["this"], row["trees"]["other"]
        row["speedup"] = {p: oth[p]["seconds"] / this[p]["seconds"] for p in ("compress", "decompress")}
        macs = multiply_adds(model_name)
        n = this["compress"]["n"]
        arithmetic = decoder_arithmetic(model_name, sixteen)
        ceiling = {k: v * 1e9 / (2 * macs["decoder"]) for k, v in rates[arithmetic].items()}
        row["roofline"] = {"multiply_adds_per_image": macs, "decoder_arithmetic": arithmetic,
                           "ceiling_images_per_second": ceiling,
                           "compress_images_per_second": n / this["compress"]["seconds"],
                           "decompress_images_per_second": n / this["decompress"]["seconds"]}
        print(f"[{data}] compress {row['speedup']['compress']:.2f}x, decompress {row['speedup']['decompress']:.2f}x "
              f"faster than {commit_of(other)[:7]}; decoder {macs['decoder'] / 1e6:.0f} M multiply-adds/image, "
              f"ceiling {ceiling['one_thread']:.0f} images/s on one thread", flush=True)
        rows.append(row)
    record = {**provenance([sys.argv[0], *argv]), "other_commit": commit_of(other), "order": args.order,
              "gflops": rates, "results": rows}
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    args.json.with_suffix(".md").write_text(markdown(record))
    return 0


def round_trip(data: str, order: str, what: str, *extra: str,
               blas_threads: int | None = None) -> tuple[dict, dict, list[float]]:
    """This tree compresses DATA with its shipped model and decompresses it in fresh processes; the decoded
    images are checked against the input (`what` names the setting measured, for the error). Also returns the
    load average (1 min) before each child."""
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"coding-speed-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    archive, model_name = str(tmp / "sweep.acnz"), data.split(":")[0]
    load = [os.getloadavg()[0]]
    c = child(HERE, "compress", data, model_name, archive, order, *extra, blas_threads=blas_threads)
    load.append(os.getloadavg()[0])
    d = child(HERE, "decompress", data, model_name, archive, order, blas_threads=blas_threads)
    if not d["exact"]:
        raise SystemExit(f"{data}: {what} did not decode to the input")
    return c, d, load


def sweep(args, argv) -> int:
    warm((HERE,), args)
    rows = []
    for data in args.data.split(","):
        for chains in [int(c) for c in args.chains.split(",")]:
            c, d, _ = round_trip(data, args.order, f"{chains} chains", str(chains))
            rows.append({"data": data, "chains": c["chains"], "bytes": c["bytes"],
                         "compress_seconds": c["seconds"], "decompress_seconds": d["seconds"],
                         "decompress_images_per_second": d["n"] / d["seconds"], "decompress_peak_mib": d["peak_mib"],
                         "n": d["n"]})
            print(f"[{data}] {c['chains']} chains: {c['bytes']:,} B, compress {c['seconds']:.1f} s, decompress "
                  f"{d['seconds']:.1f} s ({rows[-1]['decompress_images_per_second']:.0f} images/s, "
                  f"{d['peak_mib']:.0f} MiB)", flush=True)
    record, path = save_sweep(args, argv, rows, "speed-chains.json")
    lines = ["# Chains: decoding speed against rate", "", made_by(record) + ".", "",
             "| data | chains | bytes | vs fewest chains | decompress images/s | compress s | decompress peak MiB |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        base = min((r for r in rows if r["data"] == row["data"]), key=lambda r: r["chains"])["bytes"]
        lines.append(f"| {row['data']} | {row['chains']} | {row['bytes']:,} | "
                     f"{100 * (row['bytes'] / base - 1):+.2f}% | "
                     f"{row['decompress_images_per_second']:.0f} | {row['compress_seconds']:.1f} | "
                     f"{row['decompress_peak_mib']:.0f} |")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


def save_sweep(args, argv, rows: list[dict], default: str) -> tuple[dict, Path]:
    """A sweep's record, with its provenance, written where --json says (else bench/results/DEFAULT)."""
    record = {**provenance([sys.argv[0], *argv]), "order": args.order, "results": rows}
    path = args.json if "--json" in argv else HERE / "bench" / "results" / default
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record, path


def made_by(record: dict) -> str:
    return (f"Made by `{record['command']}` at {record['git_commit'][:12]} on {record['machine_provenance']}; "
            f"order {record['order']}")


def blas_sweep(args, argv) -> int:
    counts = [int(c) for c in args.blas_threads.split(",")]
    warm((HERE,), args)
    rows = []
    for data in args.data.split(","):
        sizes = set()
        for threads in counts:
            c, d, load = round_trip(data, args.order, f"{threads} BLAS threads", blas_threads=threads)
            sizes.add(c["bytes"])
            rows.append({"data": data, "blas_threads": threads, "chains": c["chains"], "bytes": c["bytes"],
                         "compress_seconds": c["seconds"], "decompress_seconds": d["seconds"], "n": d["n"],
                         "load_average_before": load})
            print(f"[{data}] {threads} BLAS threads: compress {c['seconds']:.1f} s, decompress {d['seconds']:.1f} s "
                  f"({c['bytes']:,} B, {c['chains']} chains; load {load[0]:.1f}, {load[1]:.1f})", flush=True)
        if len(sizes) != 1:
            raise SystemExit(f"{data}: the archive's bytes depend on the BLAS thread count: {sorted(sizes)}")
    record, path = save_sweep(args, argv, rows, "speed-blas-threads.json")
    lines = ["# BLAS threads: exact coding speed", "", made_by(record) + f". Speed-up is against {counts[0]} "
             "BLAS thread(s), same archive bytes; load average (1 min) before compress and before decompress.", "",
             "| data | BLAS threads | chains | compress s | speed-up | decompress s | speed-up | load |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        base = next(r for r in rows if r["data"] == row["data"] and r["blas_threads"] == counts[0])
        lines.append(f"| {row['data']} | {row['blas_threads']} | {row['chains']} | {row['compress_seconds']:.1f} | "
                     f"{base['compress_seconds'] / row['compress_seconds']:.2f}x | {row['decompress_seconds']:.1f} | "
                     f"{base['decompress_seconds'] / row['decompress_seconds']:.2f}x | "
                     f"{row['load_average_before'][0]:.1f}, {row['load_average_before'][1]:.1f} |")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


def markdown(r: dict) -> str:
    lines = [f"# Coding speed: this tree against {r['other_commit'][:7]}", "",
             f"Made by `{r['command']}` at {r['git_commit'][:12]} on {r['machine_provenance']}; BLAS: {r['blas']} "
             "(both trees' children). "
             f"Order {r['order']}, each tree's defaults (chains, threads), compress with its estimate; every "
             "decoded image checked.", "",
             "| data | compress s (other) | speed-up | decompress s (other) | speed-up | bytes (other) | "
             "decompress peak MiB (other) |", "|---|---|---|---|---|---|---|"]
    for row in r["results"]:
        t, o = row["trees"]["this"], row["trees"]["other"]
        lines.append(f"| {row['data']} | {t['compress']['seconds']:.1f} ({o['compress']['seconds']:.1f}) | "
                     f"{row['speedup']['compress']:.2f}x | {t['decompress']['seconds']:.1f} "
                     f"({o['decompress']['seconds']:.1f}) | {row['speedup']['decompress']:.2f}x | "
                     f"{t['compress']['bytes']:,} ({o['compress']['bytes']:,}) | "
                     f"{t['decompress']['peak_mib']:.0f} ({o['decompress']['peak_mib']:.0f}) |")
    g = r["gflops"]
    lines += ["", "Roofline: matrix products at " + ", ".join(
              f"{d} {g[d]['one_thread']:.1f} G(FL)OP/s on one thread and {g[d]['all_threads']:.1f} on all cores"
              for d in g) + " (this machine, measured by the script; 16-bit: this tree's integer products, "
              "`acncodec/coding/products16.py`, at a vconv's shape); the ceiling is the decoder's multiply-adds at "
              "the rate of the type its products run in (for exact2 models 16-bit integers where this tree takes "
              "them, else float32).", "",
              "| data | M multiply-adds/image (encoder, prior, decoder) | decoder products | ceiling images/s "
              "(1 thread, all) | compress images/s | decompress images/s |", "|---|---|---|---|---|---|"]
    for row in r["results"]:
        f = row["roofline"]
        m = f["multiply_adds_per_image"]
        c = f["ceiling_images_per_second"]
        lines.append(f"| {row['data']} | {m['encoder'] / 1e6:.1f}, {m['prior'] / 1e6:.2f}, {m['decoder'] / 1e6:.1f} | "
                     f"{f.get('decoder_arithmetic', 'float64')} | "
                     f"{c['one_thread']:.0f}, {c['all_threads']:.0f} | {f['compress_images_per_second']:.0f} | "
                     f"{f['decompress_images_per_second']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
