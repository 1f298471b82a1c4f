"""Print the README's results tables from bench/results/*.json (so every figure there traces to a file).

Usage: python bench/readme_table.py [models|results|all]   (default: all)
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))
PAPER = {"kl_k1": 2.6, "kl_k5": 3.5, "kl_tour": 3.6, "kl_k10": 4.1, "kl_unconditional": 10.6,
         "reconstruction": 70.3, "ordered": 73.9, "unordered": 80.9}
ROWS = [("kl_k1", "KL(K=1)"), ("kl_k5", "KL(K=5)"), ("kl_tour", "KL(tour)"), ("kl_k10", "KL(K=10)"),
        ("kl_unconditional", "KL(unconditional)"), ("reconstruction", "reconstruction"),
        ("ordered", "ordered <= (recon + tour KL)"), ("unordered", "unordered (recon + unconditional KL)"),
        ("set", "set (unordered - (ln N! - sum ln m_i!) / N)"), ("order_cost", "ln(N!)/N")]
ORDERS = ["tour", "original", "set", "associative"]
DATASETS = ["digits", "binarized-mnist", "fashion-mnist", "mnist"]
CLASSICAL = ["gzip", "bz2", "xz", "png", "webp", "jxl"]


def load(name):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def models():
    from acncodec import registry
    print("| name | data spec | file | hash | trained on | training |")
    print("|---|---|---|---|---|---|")
    for m in registry.shipped():
        meta = m.load().meta
        training = f"{meta['steps']:,} steps ({meta['epochs']} epochs), {meta['train_seconds'] / 60:.0f} min"
        start = meta.get("initialised_from")
        if start:   # trained further from another model's weights
            training += (f", after the {start['steps']:,} steps ({start['train_seconds'] / 60:.0f} min) of "
                         f"`{start['hash'][:12]}`")
        print(f"| `{m.name}` | {m.spec} | {m.path.stat().st_size / 1e6:.2f} MB | `{m.hash[:12]}` | {m.trained_on} "
              f"| {training} |")


def stale(r: dict) -> bool:
    """Whether a record was made with another model than the one shipped under its name now."""
    from acncodec import registry
    return r["model"]["hash"] != registry.by_name(r["model"]["name"]).hash


def results():
    runs = {d: load(f"{d}.json") for d in DATASETS}
    runs = {d: r for d, r in runs.items() if r}
    summary = load("summary.json") or {}
    old = [d for d, r in runs.items() if stale(r)]
    if old:
        print(", ".join(old) + " (marked †): recorded with an earlier version of the shipped model (the hash in "
              "the record is not the shipped model's); the next run of `python bench/benchmark.py --datasets "
              + ",".join(old) + "` replaces them.\n")
    print("Bits per dimension, every archive decoded and checked pixel for pixel:\n")
    print("| data | images | " + " | ".join(f"acncodec {o}" for o in ORDERS) + " | acncodec tour + model file | "
          + " | ".join(CLASSICAL) + " |")
    print("|---|---|" + "---|" * len(ORDERS) + "---|" + "---|" * len(CLASSICAL))
    for d, r in runs.items():
        best = min(c["bits_per_dim"] for c in r["classical"].values() if "bits_per_dim" in c)
        cells = []
        for k in CLASSICAL:
            c = r["classical"].get(k, {})
            v = f"{c['bits_per_dim']:.4f}" if "bits_per_dim" in c else "skipped"
            cells.append(f"**{v}**" if "bits_per_dim" in c and c["bits_per_dim"] == best else v)
        a = r["acncodec"]
        with_model = a["tour"].get("bits_per_dim_with_model")
        mb = r["model"].get("file_bytes", 0) / 1e6
        data = (f"{d} (seen in training)" if d == "digits" else d) + (" †" if d in old else "")
        mine = [a[o]["bits_per_dim"] for o in ORDERS if o in a]
        cols = " | ".join((f"**{a[o]['bits_per_dim']:.4f}**" if a[o]["bits_per_dim"] == min(mine) else
                           f"{a[o]['bits_per_dim']:.4f}") if o in a else "not coded" for o in ORDERS)
        print(f"| {data} | {r['n']:,} | {cols} | "
              + (f"{with_model:.4f} ({mb:.2f} MB model) | " if with_model else "not recorded | ")
              + " | ".join(cells) + " |")
    print("\nacncodec, actual archive against the KL-bound estimate, and speed (compress in the bench process, "
          "decompress in a separate process):\n")
    print("| data | model | order | archive bytes | nats/image | estimate | actual/estimate | compress img/s "
          "| decompress img/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for d, r in runs.items():
        for order, c in r["acncodec"].items():
            print(f"| {d}{' †' if d in old else ''} | {r['model']['name']} | {order} | {c['bytes']:,} | "
                  f"{c['nats_per_image']:.2f} | "
                  f"{c['estimate_nats_per_image']:.2f} | {c['actual_over_estimate']:.4f} | "
                  f"{c['compress_images_per_second']:.0f} | {c['decompress_images_per_second']:.0f} |")
    if "binarized-mnist" in runs:
        r = runs["binarized-mnist"]
        t = r["estimate_nats_per_image"]
        print("\nBinarized MNIST test split, the paper's Table 2 (nats/image), estimates, then the real archives "
              "of each order mode:\n")
        print("| | paper | acncodec |")
        print("|---|---|---|")
        for key, label in ROWS:
            if key in t:
                print(f"| {label} | {PAPER.get(key, '')} | {t[key]:.2f} |")
        for order in ORDERS:
            if order in r["acncodec"]:
                c = r["acncodec"][order]
                print(f"| {order}: archive (estimate) | | {c['nats_per_image']:.2f} "
                      f"({c['estimate_nats_per_image']:.2f}) |")
        if "names" in r:
            nm = r["names"]
            print(f"\nNames, a folder of {nm['n']:,} PNG files with sequential names ({nm['data']}): "
                  + "; ".join(f"{o} order {v['section_bytes']['names']:,} B = {v['names_bits_per_image']:.2f} "
                              f"bits/image" for o, v in nm["orders"].items())
                  + f" (log2(N!)/N = {next(iter(nm['orders'].values()))['log2_n_factorial_per_image']:.2f}).")
    speed = load("speed.json")
    if speed:
        dec, tour = speed["decoding"], speed["tour"]["series"]["model"]
        last = tour["rows"][-1]
        print(f"\nSpeed (`binarized-mnist` model): cached decoding {dec['incremental']['images_per_s']:.1f} "
              f"images/s against naive {dec['naive']['images_per_s']:.2f} images/s (extrapolated from "
              f"{dec['naive']['timed_pixels']} timed pixels of {dec['naive']['extrapolated_to']}), "
              f"{dec['speedup']:.0f}x, batch "
              f"{dec['batch']}; greedy tour over N = {last['n']:,} codes {last['seconds']:.1f} s, growing as "
              f"N^{tour['exponent']:.2f} over {tour['rows'][0]['n']:,}..{last['n']:,}.")
    coding = load("speed-coding.json")
    if coding:
        g = coding["gflops"]
        print(f"\nCoding speed against {coding['other_commit'][:7]} (float coding, before the exact numerics), side by "
              f"side in one script (`{coding['command']}`, at {coding['git_commit'][:7]}; the other tree is a "
              f"`git worktree` of {coding['other_commit'][:7]}), {coding['order']} order, each tree's defaults, "
              f"every decoded image checked:\n")
        print("| data | compress | decompress | decompress peak memory | decoder multiply-adds | ceiling | "
              "compress, decompress |")
        print("|---|---|---|---|---|---|---|")
        for row in coding["results"]:
            t, o, f = row["trees"]["this"], row["trees"]["other"], row["roofline"]
            print(f"| {row['data']} | {row['speedup']['compress']:.2f}x ({t['compress']['seconds']:.1f} s against "
                  f"{o['compress']['seconds']:.1f}) | {row['speedup']['decompress']:.2f}x "
                  f"({t['decompress']['seconds']:.1f} s against {o['decompress']['seconds']:.1f}) | "
                  f"{t['decompress']['peak_mib']:.0f} MiB ({o['decompress']['peak_mib']:.0f}) | "
                  f"{f['multiply_adds_per_image']['decoder'] / 1e6:.0f} M/image | "
                  f"{f['ceiling_images_per_second']['all_threads']:.0f} images/s | "
                  f"{f['compress_images_per_second']:.0f}, {f['decompress_images_per_second']:.0f} images/s |")
        kinds = sorted({row["roofline"]["decoder_arithmetic"] for row in coding["results"]})
        print(f"\nThe ceiling is the decoder's multiply-adds at this machine's matrix-product rate in "
              f"{' and '.join(kinds)}, the type its products run in (" + "; ".join(
                  f"{d}: {g[d]['all_threads']:.0f} GFLOP/s on both cores, {g[d]['one_thread']:.0f} on one"
                  for d in g) + ", measured by the script).")
    if summary.get("runs"):
        m = summary["runs"][-1]["machine"]
        print(f"\nMade by `python bench/benchmark.py` (all four datasets, then speed and scaling): "
              f"{summary['seconds_all_records'] / 60:.0f} min in all on {m['cpu']} ({m['cpu_count']} cores, no GPU, "
              f"torch {summary['runs'][-1]['torch']}). Per-dataset records: `bench/results/<data>.{{json,md}}`, plots "
              "`bench/results/<data>-{cost,compressors}.png`, speed `bench/results/speed.{json,md}`.")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what in ("models", "all"):
        models()
        print()
    if what in ("results", "all"):
        results()
