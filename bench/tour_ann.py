"""The approximate greedy tour (`approximate_tour`) against the exact one (`greedy_tour`): time, memory, KL.

    python bench/tour_ann.py [--real-n 60000] [--nprobes 4 8 32] [--fallback-widths 1]
                             [--exact-sizes 50000 100000 200000] [--approx-sizes 50000 100000 200000 1000000]
                             [--threads 1] [--out bench/results]

(a) Real codes: the shipped binarized-mnist model's float encoder on the first --real-n MNIST training images
    (binarized-mnist:all; set ACNCODEC_MNIST_DIR). Both tours are timed, and each is priced by the model:
    the KL along the tour (acncodec.evaluate.kl_along) plus the first datum's KL to the unconditional prior,
    in nats per image, and the increase as a share of the total cost recorded in bench/results/
    binarized-mnist.json (when that file is there). The approximate tour is also run with other nprobe and
    fallback widths, and its neighbour lists alone are compared with HNSW's (time and recall).
(b) Synthetic codes: draws from the same model's unconditional prior p(z), a Gaussian mixture (fixed seed).
    Each tour is timed at every size it is asked for, with its peak resident memory; the growth exponents
    (slope of log time against log N) extrapolate the exact tour to the largest size.

Every tour runs in its own child process (this script with --worker), so that the peak memory is that tour's
and not the encoder's (VmHWM: see `peak_rss_mib`); the child's peak before the tour (codes loaded, faiss
imported) is reported beside it.
Writes tour-ann.json and tour-ann.md under --out, with the command, commit and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from machine import cpu_model, provenance  # noqa: E402

MODEL = "binarized-mnist"


def peak_rss_mib() -> float:
    """This process's peak resident memory since it started (VmHWM), in MiB.

    Not ru_maxrss alone: on Linux a child's ru_maxrss starts from its parent's peak (it is kept across fork
    and exec), so a worker started by this script would report the encoder's memory. VmHWM belongs to the
    address space that exec creates. Without /proc, ru_maxrss is all there is.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux


def worker(method: str, codes_path: str, tour_path: str, threads: int) -> None:
    """Child process: time one tour of the codes in codes_path, save it, print one JSON line."""
    import faiss
    from acncodec import tour as tours
    faiss.omp_set_num_threads(threads)
    codes = np.load(codes_path)
    before = peak_rss_mib()
    name, *widths = method.split(":")        # approximate[:NPROBE[:FALLBACK_WIDTH]]
    kwargs = {"nprobe": int(widths[0])} if widths else {}
    if len(widths) > 1:
        tours.APPROXIMATE_FALLBACK_WIDTH = int(widths[1])
    fn = {"exact": tours.greedy_tour, "approximate": tours.approximate_tour}[name]
    stats = {}
    started = time.perf_counter()
    result = fn(codes, stats=stats, **kwargs)
    seconds = time.perf_counter() - started
    np.save(tour_path, result)
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_rss_mib(), "rss_before_mib": before,
                      "ru_maxrss_mib_inherited": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "stats": stats}))


def run_tour(method: str, codes: np.ndarray, tmp: Path, threads: int) -> tuple[np.ndarray, dict]:
    codes_path, tour_path = tmp / "codes.npy", tmp / "tour.npy"
    np.save(codes_path, codes)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", method, str(codes_path),
               str(tour_path), "--threads", str(threads)]
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{method} tour failed:\n{out.stderr}")
    record = json.loads(out.stdout.strip().splitlines()[-1])
    tour = np.load(tour_path)
    n = len(codes)
    record["permutation"] = bool(tour[0] == 0 and np.array_equal(np.sort(tour), np.arange(n)))
    record["sq_length"] = tour_length(codes, tour)
    return tour, record


def tour_length(codes: np.ndarray, tour: np.ndarray) -> float:
    """Sum of squared Euclidean steps along the tour (float64), what the greedy rule shortens step by step."""
    x = codes.astype(np.float64)
    total = 0.0
    for s in range(0, len(tour) - 1, 1 << 16):
        t = tour[s:s + (1 << 16) + 1]
        d = x[t[1:]] - x[t[:-1]]
        total += float(np.sum(d * d))
    return total


def slope(sizes, seconds) -> float | None:
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0]) if len(sizes) > 1 else None


def compare_indexes(codes: np.ndarray, threads: int, k: int = 16, queries: int = 2_000) -> list[dict]:
    """The neighbour lists alone: IVF-Flat (about sqrt(N) lists, as approximate_tour builds it) against HNSW,
    each at two search widths. Seconds to build and to find k neighbours of every code, and recall@k
    against the exact neighbours of a fixed sample of codes."""
    import faiss
    faiss.omp_set_num_threads(threads)
    n, dim = codes.shape
    x = np.ascontiguousarray((codes - codes.mean(0, dtype=np.float64)).astype(np.float32))
    sample = np.random.default_rng(0).choice(n, min(queries, n), replace=False)
    _, truth = faiss.knn(x[sample], x, k)
    rows = []

    def measure(name, build, set_width, widths):
        started = time.perf_counter()
        index = build()
        built = time.perf_counter() - started
        for w in widths:
            set_width(index, w)
            started = time.perf_counter()
            _, found = index.search(x, k)
            searched = time.perf_counter() - started
            recall = np.mean([len(np.intersect1d(found[q], truth[i])) for i, q in enumerate(sample)]) / k
            rows.append({"index": name, "width": w, "build_seconds": built, "search_seconds": searched,
                         "recall": float(recall)})
            print(f"[index N={n}] {name} width {w}: build {built:.1f} s, search {searched:.1f} s, "
                  f"recall@{k} {recall:.3f}", flush=True)
        del index

    def ivf():
        nlist = max(1, round(np.sqrt(n)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, nlist)
        index.train(x)
        index.add(x)
        return index

    def hnsw():
        index = faiss.IndexHNSWFlat(dim, 16)   # M = 16, faiss' default efConstruction (40)
        index.add(x)
        return index

    measure(f"IVF-Flat nlist {round(np.sqrt(n))} (nprobe)", ivf, lambda i, w: setattr(i, "nprobe", w), (8, 16))
    measure("HNSW-Flat M 16 (efSearch)", hnsw, lambda i, w: setattr(i.hnsw, "efSearch", w), (16, 32))
    return rows


def sample_prior(prior, n: int, seed: int = 0) -> np.ndarray:
    """n draws from the diagonal Gaussian mixture p(z)."""
    rng = np.random.default_rng(seed)
    weights = np.asarray(prior.weights, np.float64)
    comp = rng.choice(len(weights), size=n, p=weights / weights.sum())
    noise = rng.standard_normal((n, prior.means.shape[1]))
    return (prior.means[comp] + np.sqrt(prior.variances[comp]) * noise).astype(np.float32)


def real_part(model, n: int, nprobes, fallback_widths, tmp: Path, threads: int) -> dict:
    import torch
    from acncodec import data
    from acncodec.evaluate import encode_all, kl_along
    from acncodec.kl import kl_to_unconditional
    from acncodec.train import to_tensor
    source = f"{MODEL}:all:{n}" if n < 60_000 else f"{MODEL}:all"
    images = data.load(source, levels=model.spec.levels)
    started = time.perf_counter()
    with torch.no_grad():
        codes = encode_all(model.net, to_tensor(images.images)).numpy()
    encode_seconds = time.perf_counter() - started
    print(f"[real] {n} codes of {source} encoded in {encode_seconds:.1f} s", flush=True)
    ct = torch.from_numpy(codes)
    out = {"data": source, "n": n, "dim": codes.shape[1], "encode_seconds": encode_seconds, "tours": {}}
    from acncodec.tour import APPROXIMATE_FALLBACK_WIDTH, APPROXIMATE_NPROBE
    sweep = [f"approximate:{p}" for p in sorted(set(nprobes) - {APPROXIMATE_NPROBE})]
    sweep += [f"approximate:{APPROXIMATE_NPROBE}:{w}" for w in sorted(set(fallback_widths) -
                                                                      {APPROXIMATE_FALLBACK_WIDTH})]
    for method in ("exact", "approximate", *sweep):
        tour, rec = run_tour(method, codes, tmp, threads)
        t = torch.from_numpy(tour)
        with torch.no_grad():
            along = kl_along(model.net, ct[t[1:]], ct[t[:-1]]).sum().item()
            head = kl_to_unconditional(ct[t[:1]], model.unconditional).sum().item()
        rec["kl_nats_per_image"] = (head + along) / n
        out["tours"][method] = rec
        print(f"[real] {method}: {rec['seconds']:.2f} s, KL {rec['kl_nats_per_image']:.4f} nats/image, "
              f"squared length {rec['sq_length']:.6g}, peak RSS {rec['peak_rss_mib']:.0f} MiB, {rec['stats']}",
              flush=True)
    exact, approx = out["tours"]["exact"], out["tours"]["approximate"]
    extra = approx["kl_nats_per_image"] - exact["kl_nats_per_image"]
    out["kl_increase_nats_per_image"] = extra
    out["kl_increase_percent_of_tour_kl"] = 100 * extra / exact["kl_nats_per_image"]
    out["length_increase_percent"] = 100 * (approx["sq_length"] / exact["sq_length"] - 1)
    out["speedup"] = exact["seconds"] / approx["seconds"]
    out["index_comparison"] = compare_indexes(codes, threads)
    recorded = ROOT / "bench/results/binarized-mnist.json"
    if recorded.is_file():
        rec = json.loads(recorded.read_text())
        total = rec["estimate_nats_per_image"]["ordered"]
        out["total_cost"] = {"nats_per_image": total, "source": f"{recorded.relative_to(ROOT)}: "
                             f"estimate_nats_per_image.ordered ({rec['data']}, {rec['n']} images)"}
        out["kl_increase_percent_of_total"] = 100 * extra / total
    return out


def synthetic_part(model, exact_sizes, approx_sizes, tmp: Path, threads: int) -> dict:
    largest = max([*exact_sizes, *approx_sizes])
    codes = sample_prior(model.unconditional, largest)
    out = {"data": f"{MODEL} unconditional prior p(z), {model.unconditional.components} components, seed 0 "
                   "(the first N of one draw)", "rows": []}
    out["index_comparison"] = compare_indexes(codes, threads)
    for method, sizes in (("exact", exact_sizes), ("approximate", approx_sizes)):
        for n in sorted(sizes):
            _, rec = run_tour(method, codes[:n], tmp, threads)
            out["rows"].append({"method": method, "n": n, **rec})
            print(f"[synthetic] {method} N={n}: {rec['seconds']:.2f} s, peak RSS {rec['peak_rss_mib']:.0f} MiB "
                  f"(before the tour {rec['rss_before_mib']:.0f}), squared length {rec['sq_length']:.6g}, "
                  f"{rec['stats']}", flush=True)
    for method in ("exact", "approximate"):
        rows = [r for r in out["rows"] if r["method"] == method]
        out[f"{method}_exponent"] = slope([r["n"] for r in rows], [r["seconds"] for r in rows])
    exact_rows = [r for r in out["rows"] if r["method"] == "exact"]
    if out["exact_exponent"] is not None and largest not in exact_sizes:
        last = max(exact_rows, key=lambda r: r["n"])
        out["exact_extrapolated"] = {"n": largest, "seconds": last["seconds"] * (largest / last["n"]) **
                                     out["exact_exponent"], "from": last["n"]}
    both = {r["n"] for r in exact_rows} & set(approx_sizes)
    out["length_increase_percent"] = {
        n: 100 * (next(r for r in out["rows"] if r["method"] == "approximate" and r["n"] == n)["sq_length"] /
                  next(r for r in exact_rows if r["n"] == n)["sq_length"] - 1) for n in sorted(both)}
    return out


def markdown(result: dict) -> str:
    from acncodec import tour as tours
    real, syn = result["real"], result["synthetic"]
    commit = result["git_commit"][:12] + ("-dirty" if result["git_commit"].endswith("-dirty") else "")
    lines = ["# Approximate greedy tours at scale", "",
             f"Made by `{result['command']}` at {commit} on {result['machine_provenance']}, faiss "
             f"{result['faiss']} with {result['threads']} thread(s), load average {result['load_average']} at "
             f"the start and {result['load_average_end']} at the end (the machine was shared); "
             f"{result['seconds']:.0f} s in all. Every tour ran in its own process; its peak RSS is that "
             "process's VmHWM (a child's ru_maxrss starts from its parent's peak on Linux).", "",
             f"`approximate_tour`: IVF-Flat with about sqrt(N) lists, {tours.CANDIDATES} candidates per code, "
             f"nprobe {tours.APPROXIMATE_NPROBE}, fallback from "
             f"{tours.APPROXIMATE_NPROBE * tours.APPROXIMATE_FALLBACK_WIDTH} lists. "
             f"`tour_for` switches to it above {tours.APPROXIMATE_ABOVE:,} codes.", "",
             f"## Real codes: {real['n']:,} images of {real['data']}, shipped {MODEL} model", "",
             "Codes from the model's float encoder (it was trained on the first 50,000 of these images). KL is "
             "the tour's cost under the model: KL along the tour plus the first image's KL to p(z).", "",
             "| tour | seconds | KL nats/image | vs exact | squared length | vs exact | peak RSS MiB |",
             "|---|---|---|---|---|---|---|"]
    exact = real["tours"]["exact"]
    for method, rec in real["tours"].items():
        name, *widths = method.split(":")
        if name == "approximate":
            name += f", nprobe {widths[0] if widths else tours.APPROXIMATE_NPROBE}"
            name += f", fallback width {widths[1]}" if len(widths) > 1 else ("" if widths else " (default)")
        lines.append(f"| {name} | {rec['seconds']:.2f} | {rec['kl_nats_per_image']:.4f} | "
                     f"{rec['kl_nats_per_image'] - exact['kl_nats_per_image']:+.4f} | {rec['sq_length']:.6g} | "
                     f"{100 * (rec['sq_length'] / exact['sq_length'] - 1):+.2f}% | {rec['peak_rss_mib']:.0f} |")
    lines += ["", f"The approximate tour is {real['speedup']:.1f}x faster; its KL is "
              f"{real['kl_increase_nats_per_image']:+.4f} nats/image "
              f"({real['kl_increase_percent_of_tour_kl']:+.3f}% of the exact tour's KL), its squared length "
              f"{real['length_increase_percent']:+.2f}%."]
    if "total_cost" in real:
        lines[-1] += (f" Against a total of {real['total_cost']['nats_per_image']:.1f} nats/image "
                      f"({real['total_cost']['source']}) the increase is "
                      f"{real['kl_increase_percent_of_total']:+.4f}%.")
    lines += index_table(real["index_comparison"], real["n"])
    lines += ["", f"## Synthetic codes: {syn['data']}", "",
              "| tour | N | seconds | peak RSS MiB (before the tour) | squared length |", "|---|---|---|---|---|"]
    for r in syn["rows"]:
        lines.append(f"| {r['method']} | {r['n']:,} | {r['seconds']:.2f} | {r['peak_rss_mib']:.0f} "
                     f"({r['rss_before_mib']:.0f}) | {r['sq_length']:.6g} |")
    lines.append("")
    for method in ("exact", "approximate"):
        if syn[f"{method}_exponent"] is not None:
            lines.append(f"Growth exponent of the {method} tour (slope of log seconds against log N): "
                         f"{syn[f'{method}_exponent']:.2f}.")
    if "exact_extrapolated" in syn:
        e = syn["exact_extrapolated"]
        lines.append(f"The exact tour was not run at N = {e['n']:,}; extrapolated from N = {e['from']:,} with "
                     f"that exponent it would take about {e['seconds']:.0f} s.")
    for n, pct in syn["length_increase_percent"].items():
        lines.append(f"At N = {int(n):,} the approximate tour's squared length is {pct:+.2f}% of the exact one's.")
    lines += index_table(syn["index_comparison"], max(r["n"] for r in syn["rows"]))
    return "\n".join(lines) + "\n"


def index_table(rows, n) -> list[str]:
    out = ["", f"Neighbour lists alone (16 per code, all {n:,} codes; recall against exact neighbours of "
               "2,000 codes):", "", "| index (what width is) | width | build s | search s | total s | recall@16 |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['index']} | {r['width']} | {r['build_seconds']:.1f} | {r['search_seconds']:.1f} | "
                   f"{r['build_seconds'] + r['search_seconds']:.1f} | {r['recall']:.3f} |")
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real-n", type=int, default=60_000)
    ap.add_argument("--exact-sizes", type=int, nargs="+", default=[50_000, 100_000, 200_000])
    ap.add_argument("--approx-sizes", type=int, nargs="+", default=[50_000, 100_000, 200_000, 1_000_000])
    ap.add_argument("--nprobes", type=int, nargs="*", default=[4, 8, 32],
                    help="other nprobe values tried on the real codes, besides the default")
    ap.add_argument("--fallback-widths", type=int, nargs="*", default=[1],
                    help="other APPROXIMATE_FALLBACK_WIDTH values tried on the real codes")
    ap.add_argument("--threads", type=int, default=1,
                    help="faiss/OpenMP/torch threads (default 1: shared machine)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results")
    ap.add_argument("--worker", nargs=3, metavar=("METHOD", "CODES", "TOUR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(*args.worker, args.threads)
        return {}

    import faiss
    import torch
    from acncodec import registry
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    result = {"faiss": faiss.__version__, "threads": args.threads, "cpu": cpu_model(), "cpus": os.cpu_count(),
              "python": platform.python_version(), "load_average": round(os.getloadavg()[0], 2)}
    model = registry.by_name(MODEL).load()
    result["model"] = {"name": MODEL, "hash": model.hash}
    with tempfile.TemporaryDirectory() as tmp:
        result["real"] = real_part(model, args.real_n, args.nprobes, args.fallback_widths, Path(tmp),
                                   args.threads)
        result["synthetic"] = synthetic_part(model, args.exact_sizes, args.approx_sizes, Path(tmp), args.threads)
    result["seconds"] = time.perf_counter() - started
    result["load_average_end"] = round(os.getloadavg()[0], 2)
    result.update(provenance())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tour-ann.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "tour-ann.md").write_text(markdown(result))
    print(f"wrote {args.out / 'tour-ann.json'} and {args.out / 'tour-ann.md'}")
    return result


if __name__ == "__main__":
    main()
