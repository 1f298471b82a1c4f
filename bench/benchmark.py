"""The benchmark: every dataset through acncodec (every order mode) and the classical compressors, verified.

    python bench/benchmark.py [--datasets digits,binarized-mnist,fashion-mnist,mnist] [--count N]
                              [--out bench/results] [--no-speed] [--install]

For each dataset, on the same pixels in the same run:
- the paper's Table 2 (`acncodec.estimate`) under the shipped model that fits the data;
- acncodec in every order mode (tour, original, set, associative): compressed here, decompressed in a separate
  process, every pixel checked (bench/codec_roundtrip.py); Table 2 gains each mode's estimate beside its
  actual archive, with log2(N!)/N, what the order of N distinct items is worth;
- gzip, bz2, xz (bit-packed for binary data), PNG, WebP lossless and a JPEG XL mosaic (bench/classical.py),
  each decoded and checked;
- for binarized MNIST, also a folder of 1,000 PNG files with sequential names: what keeping the names costs in
  each order mode.
It writes bench/results/<dataset>.json and .md, <dataset>-cost.png (reconstruction and KL stacked per order
mode, like the paper's Figure 2) and <dataset>-compressors.png (bits/dim of every compressor). Unless
--no-speed: cached against naive decoding and tour time against N (1k..60k), into speed.json and speed.md.
summary.json records the machine and the run time of the whole command.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import acncodec  # noqa: E402
from acncodec import api, codec, registry  # noqa: E402
from acncodec.data import export_png  # noqa: E402
from classical import CODECS, classical_sizes, install_jxl, jxl_tools, machine  # noqa: E402
from codec_roundtrip import roundtrip  # noqa: E402
from machine import git_commit  # noqa: E402

# name -> (data, the shipped model that codes it, what it is)
DATASETS = {
    "digits": ("digits", "digits", "scikit-learn digits, all 1,797 images (8x8, 17 levels)"),
    "binarized-mnist": ("binarized-mnist:test", "binarized-mnist",
                        "binarized MNIST test split: MNIST training images 50,000..59,999, binarized with seed 0"),
    "fashion-mnist": ("fashion-mnist:test", "fashion-mnist", "Fashion-MNIST test set, 10,000 8-bit images"),
    "mnist": ("mnist:test:2000", "mnist",
              "grey MNIST: the first 2,000 images of the test split (MNIST training images 50,000..51,999), 8-bit"),
}
PAPER_BMNIST = {"kl_k1": 2.6, "kl_k5": 3.5, "kl_tour": 3.6, "kl_k10": 4.1, "kl_unconditional": 10.6,
                "reconstruction": 70.3, "ordered": 73.9, "unordered": 80.9}
TABLE_ROWS = [("kl_k1", "KL(K=1)"), ("kl_k5", "KL(K=5)"), ("kl_tour", "KL(tour)"), ("kl_k10", "KL(K=10)"),
              ("kl_unconditional", "KL(unconditional)"), ("reconstruction", "reconstruction"),
              ("ordered", "ordered <= (reconstruction + tour KL)"),
              ("unordered", "unordered (reconstruction + unconditional KL)"),
              ("set", "set (unordered - the order's ln N! - sum ln m_i!)"), ("order_cost", "ln(N!)/N")]
NAMES_FOLDER = ("binarized-mnist:test:1000", "binarized-mnist")
# The shipped digits model was trained on all 1,797 digits (bench/train_reference_models.sh): its figures on
# digits are for data the model has seen, and its plots say so.
SEEN_IN_TRAINING = {"digits"}


def bits_per_dim(nats_per_image: float, dims: int) -> float:
    return nats_per_image / dims / math.log(2)


def limit(data: str, count: int | None) -> str:
    """A built-in name cut to its first `count` images (NAME[:SPLIT[:COUNT]])."""
    if not count:
        return data
    parts = data.split(":")
    if len(parts) == 3:
        return ":".join(parts[:2] + [str(min(int(parts[2]), count))])
    return f"{data}:{count}"


def run_dataset(name: str, count: int | None) -> dict:
    data, model_name, about = DATASETS[name]
    data = limit(data, count)
    started = time.perf_counter()
    images = acncodec.load(data)
    model = registry.by_name(model_name).load()
    dims = model.spec.height * model.spec.width * model.spec.channels
    print(f"[{name}] {images.source}: {len(images)} images; model {model_name} ({model.hash[:12]})", flush=True)
    table = api.estimate(images, model)
    coded = {}
    for order in codec.ORDERS:
        report = roundtrip(images, model, model_name, order)
        coded[order] = report
        print(f"[{name}] acncodec {order}: {report['bytes']:,} B = {report['bits_per_dim']:.4f} bits/dim "
              f"(estimate {report['estimate_bits_per_dim']:.4f}), verified {report['verified_images']}", flush=True)
    classical = classical_sizes(images, CODECS)
    for codec_name, r in classical.items():
        print(f"[{name}] {codec_name}: " + (f"{r['bits_per_dim']:.4f} bits/dim, verified" if "bits_per_dim" in r
                                            else f"skipped: {r['skipped']}"), flush=True)
    return {"dataset": name, "data": data, "about": about, "source": images.source, "n": len(images),
            "spec": model.spec.to_dict(), "dims_per_image": dims,
            "model": {"name": model_name, "hash": model.hash, "command": model.meta.get("command")},
            "estimate_nats_per_image": table,
            "estimate_bits_per_dim": {k: bits_per_dim(v, dims) for k, v in table.items() if k != "n"},
            "acncodec": coded, "classical": classical,
            "seconds": time.perf_counter() - started}


def names_cost(count: int | None) -> dict:
    """A folder of PNG files with sequential names, both orders: the names section and its share."""
    data, model_name = NAMES_FOLDER
    data = limit(data, count)
    images = acncodec.load(data)
    model = registry.by_name(model_name).load()
    out = {"data": data, "n": len(images), "orders": {}}
    with tempfile.TemporaryDirectory() as tmp:
        export_png(images, Path(tmp) / "folder")
        folder = acncodec.load(str(Path(tmp) / "folder"))
        out["example_names"] = folder.names[:3]
        for order in codec.ORDERS:
            report = roundtrip(folder, model, model_name, order)
            out["orders"][order] = {k: report[k] for k in ("bytes", "section_bytes", "bits_per_dim",
                                                           "names_bits_per_image", "log2_n_factorial_per_image",
                                                           "verified_images")}
            print(f"[names] {order}: names {report['section_bytes']['names']:,} B = "
                  f"{report['names_bits_per_image']:.2f} bits/image", flush=True)
    return out


def speed(results: Path) -> dict:
    """Cached against naive decoding, and tour time against N, each by its own bench script."""
    model = registry.by_name("binarized-mnist")
    out = {}
    for key, cmd in [("decoding", [sys.executable, str(HERE / "decoding_speed.py"), "--model", "binarized-mnist",
                                   "--data", "binarized-mnist:test", "--json", str(results / "speed-decoding.json")]),
                     ("tour", [sys.executable, str(HERE / "tour_scaling.py"), "--kinds", "model", "--model",
                               "binarized-mnist", "--data", "binarized-mnist",
                               "--json", str(results / "speed-tour.json")])]:
        print(f"[speed] {' '.join(cmd[1:])}", flush=True)
        subprocess.run(cmd, check=True)
        out[key] = json.loads((results / f"speed-{key}.json").read_text())
    out["model"] = {"name": model.name, "hash": model.hash}
    return out


# ------------------------------------------------------------------------------------------------ output
def markdown(r: dict) -> str:
    lines = [f"# {r['dataset']}: {r['about']}", "",
             f"{r['n']:,} images ({r['source']}), {r['spec']['height']}x{r['spec']['width']}x{r['spec']['channels']}, "
             f"{r['spec']['levels']} levels; shipped model `{r['model']['name']}` ({r['model']['hash'][:12]}). "
             f"Made by `python bench/benchmark.py` ({r['seconds']:.0f} s for this dataset)."
             + (f" Note: {caveat(r)}." if caveat(r) else ""), "",
             "## Table 2 (estimates)", "", "| | nats/image | bits/dim |" +
             (" paper (nats) |" if r["dataset"] == "binarized-mnist" else ""),
             "|---|---|---|" + ("---|" if r["dataset"] == "binarized-mnist" else "")]
    for key, label in TABLE_ROWS:
        if key in r["estimate_nats_per_image"]:
            paper = f" {PAPER_BMNIST[key]} |" if r["dataset"] == "binarized-mnist" and key in PAPER_BMNIST else \
                (" |" if r["dataset"] == "binarized-mnist" else "")
            lines.append(f"| {label} | {r['estimate_nats_per_image'][key]:.2f} | "
                         f"{r['estimate_bits_per_dim'][key]:.4f} |{paper}")
    lines += ["", "## Each order mode: estimate and actual archive", "",
              f"log2(N!)/N = {math.lgamma(r['n'] + 1) / r['n'] / math.log(2):.2f} bits/image: what the order of "
              f"{r['n']:,} distinct items is worth (set and associative get it back, less the orders of identical "
              "images).", "",
              "| order | estimate nats/image | of which KL (net of the order refund) | actual nats/image | "
              "actual bits/dim |", "|---|---|---|---|---|"]
    for order, c in r["acncodec"].items():
        lines.append(f"| {order} | {c['estimate_nats_per_image']:.2f} | {c['estimate_kl']:.2f} | "
                     f"{c['nats_per_image']:.2f} | {c['bits_per_dim']:.4f} |")
    lines += ["", "## Compressed and restored (every pixel checked)", "",
              "| compressor | bytes | bits/dim | notes |", "|---|---|---|---|"]
    for order, c in r["acncodec"].items():
        lines.append(f"| acncodec, {order} order | {c['bytes']:,} | {c['bits_per_dim']:.4f} | estimate "
                     f"{c['estimate_bits_per_dim']:.4f}, actual/estimate {c['actual_over_estimate']:.4f}; "
                     f"compress {c['compress_images_per_second']:.0f} img/s, decompress "
                     f"{c['decompress_images_per_second']:.0f} img/s |")
    size = r["model"].get("file_bytes")
    for order, c in r["acncodec"].items():
        if size and "bits_per_dim_with_model" in c:
            lines.append(f"| acncodec, {order} order + model file | {c['bytes'] + size:,} | "
                         f"{c['bits_per_dim_with_model']:.4f} | archive + the {size:,}-byte model file a receiver "
                         "also needs (a two-part code) |")
    for name, c in r["classical"].items():
        if "bits_per_dim" in c:
            lines.append(f"| {name} | {c['bytes']:,} | {c['bits_per_dim']:.4f} | {c['what']} |")
        else:
            lines.append(f"| {name} | skipped | | {c['skipped']} |")
    if "names" in r:
        nm = r["names"]
        lines += ["", f"## Names: a folder of {nm['n']:,} PNG files with sequential names ({nm['data']})", "",
                  "| order | archive bytes | names section | bits/image | log2(N!)/N |", "|---|---|---|---|---|"]
        for order, o in nm["orders"].items():
            lines.append(f"| {order} | {o['bytes']:,} | {o['section_bytes']['names']:,} B | "
                         f"{o['names_bits_per_image']:.2f} | {o['log2_n_factorial_per_image']:.2f} |")
    return "\n".join(lines) + "\n"


def speed_markdown(s: dict) -> str:
    dec, tour = s["decoding"], s["tour"]["series"]["model"]
    lines = [f"# Speed and scaling (shipped `{s['model']['name']}` model, {s['model']['hash'][:12]})", "",
             f"Made by `python bench/benchmark.py` ({s['seconds']:.0f} s for this part). Compress and decompress "
             "images/s for every dataset are in its own table.", "",
             f"Cached against naive decoding, batch {dec['batch']} of {dec['image']} (bench/decoding_speed.py), "
             f"{dec['machine']['threads']} thread, best of {dec['repeats']}:", "",
             "| decoder | images/s | s/batch |", "|---|---|---|",
             f"| naive (a full pass per pixel) | {dec['naive']['images_per_s']:.3f} | "
             f"{dec['naive']['seconds_per_batch']:.2f} |",
             f"| cached incremental | {dec['incremental']['images_per_s']:.1f} | "
             f"{dec['incremental']['seconds_per_batch']:.3f} |", "",
             f"Speed-up {dec['speedup']:.0f}x; max |incremental - full pass| "
             f"{dec['max_abs_diff_incremental_vs_full_pass']:.2g}.", "",
             f"Greedy tour over real codes of {s['tour']['data']} (bench/tour_scaling.py; identical to the O(N^2) "
             f"reference at N = {tour['check']['n']:,}: {tour['check']['equal']}):", "",
             "| N | seconds | us/datum |", "|---|---|---|"]
    lines += [f"| {r['n']:,} | {r['seconds']:.3f} | {1e6 * r['seconds'] / r['n']:.1f} |" for r in tour["rows"]]
    lines += ["", f"Growth exponent (slope of log t against log N): {tour['exponent']:.2f} over all sizes."]
    return "\n".join(lines) + "\n"


def caveat(r: dict) -> str | None:
    """What a reader must know before comparing the figures: a model that saw the very images it codes."""
    if r["dataset"] in SEEN_IN_TRAINING:
        return f"the {r['model']['name']} model was trained on these same images"
    return None


def model_file_bytes(r: dict) -> int | None:
    """The shipped model file's size: what a receiver needs beside the archive."""
    entry = registry.by_hash(r["model"]["hash"]) or registry.by_name(r["model"]["name"])
    return entry.path.stat().st_size if entry is not None and entry.path.exists() else None


def with_model_bits(r: dict) -> dict:
    """bits/dim of archive + model file for each order (a two-part code, as minimum description length
    counts it), added to the record when the model file is known."""
    size = r["model"].get("file_bytes") or model_file_bytes(r)
    if size:
        r["model"]["file_bytes"] = size
        dims = r["n"] * r["dims_per_image"]
        for c in r["acncodec"].values():
            c["bits_per_dim_with_model"] = 8 * (c["bytes"] + size) / dims
    return r


def plots(r: dict, results: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    name, bpd = r["dataset"], r["estimate_bits_per_dim"]
    note = caveat(r)
    written = []
    # Left: the whole cost per order mode, reconstruction and KL (net of any order refund) stacked; right: the
    # KL alone on its own scale, since on 8-bit data it is a sliver of the total and vanishes at the left.
    orders = list(r["acncodec"])
    to_bpd = 1 / (r["dims_per_image"] * math.log(2))
    fig, (ax, ax_kl) = plt.subplots(1, 2, figsize=(1.6 * len(orders) + 5, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    xs = np.arange(len(orders))
    recon = [r["acncodec"][o]["estimate_reconstruction"] * to_bpd for o in orders]
    kl = [r["acncodec"][o]["estimate_kl"] * to_bpd for o in orders]
    ax.bar(xs, recon, color="#4c72b0", label="reconstruction")
    ax.bar(xs, kl, bottom=recon, color="#dd8452", label="KL (net of the order refund)")
    ax.scatter(xs, [r["acncodec"][o]["bits_per_dim"] for o in orders], color="black", marker="_", s=600,
               zorder=3, label="actual archive")
    ax.set_xticks(xs, orders)
    ax.set_ylabel("bits/dim")
    ax.set_title("whole cost")
    ax_kl.bar(xs, kl, color="#dd8452")
    for x, v in zip(xs, kl):
        ax_kl.text(x, v, f"{v:.4f}", ha="center", va="bottom")
    ax_kl.set_xticks(xs, orders)
    ax_kl.set_ylim(min(0, min(kl) * 1.25), max(max(kl), 0) * 1.25 or 1)
    ax_kl.set_title("KL alone (its own scale)")
    fig.suptitle(f"{name}: cost per order mode" + (f"\n({note})" if note else ""))
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path = results / f"{name}-cost.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path.name)

    entries = [(f"acncodec {o}", c["bits_per_dim"]) for o, c in r["acncodec"].items()]
    entries += [(f"acncodec {o} + model file", c["bits_per_dim_with_model"]) for o, c in r["acncodec"].items()
                if "bits_per_dim_with_model" in c]
    entries += [(k, c["bits_per_dim"]) for k, c in r["classical"].items() if "bits_per_dim" in c]
    entries.sort(key=lambda e: e[1])
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(entries) + 1.4))
    colors = ["#e8a3a5" if "model file" in e[0] else "#c44e52" if e[0].startswith("acncodec") else "#8c8c8c"
              for e in entries]
    ax.barh([e[0] for e in entries], [e[1] for e in entries], color=colors)
    for i, (_, v) in enumerate(entries):
        ax.text(v, i, f" {v:.3f}", va="center")
    ax.invert_yaxis()
    ax.set_xscale("log")   # the model file can be 50x the archive: on a linear axis everything else vanishes
    ax.set_xlabel("bits/dim, log scale (lower is better)")
    model_mb = r["model"].get("file_bytes")
    title = f"{name}: {r['n']:,} images"
    if model_mb:
        title += f"; model file {model_mb / 1e6:.2f} MB"
    ax.set_title(title + (f"\n({note})" if note else ""))
    ax.set_xlim(min(e[1] for e in entries) / 1.5, max(e[1] for e in entries) * 3)
    fig.tight_layout()
    path = results / f"{name}-compressors.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path.name)
    return written


def replot(out: Path) -> list[str]:
    """Redraw every dataset's plots from its record, adding the model file's size; nothing is re-measured."""
    done = []
    for name in DATASETS:
        path = out / f"{name}.json"
        if path.exists():
            r = with_model_bits(json.loads(path.read_text()))
            r["plots"] = plots(r, out)
            write(path, json.dumps(r, indent=2))
            write(out / f"{name}.md", markdown(r))
            done.append(name)
    return done


def write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_summary(out: Path, run: dict) -> None:
    """summary.json: this run appended to the earlier ones, and what every record in `out` took. Runs over
    some datasets add up; the records themselves say which command made them."""
    path = out / "summary.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    summary["runs"] = summary.get("runs", []) + [run]
    summary["datasets"] = {}
    for name in DATASETS:
        if (out / f"{name}.json").exists():
            r = json.loads((out / f"{name}.json").read_text())
            summary["datasets"][name] = {"n": r["n"], "seconds": r["seconds"], "command": r.get("command")}
    if (out / "speed.json").exists():
        sp = json.loads((out / "speed.json").read_text())
        summary["speed"] = {"seconds": sp.get("seconds"), "command": sp.get("command")}
    summary["seconds_all_records"] = sum(v["seconds"] for v in summary["datasets"].values()) + \
        (summary.get("speed", {}).get("seconds") or 0)
    write(path, json.dumps(summary, indent=2))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--count", type=int, help="only the first N images of each dataset (a quick run)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--no-speed", action="store_true", help="skip the decoding-speed and tour-scaling runs")
    ap.add_argument("--install", action="store_true", help="apt-get install libjxl-tools if missing (root)")
    ap.add_argument("--replot", action="store_true", help="only redraw the plots (and tables) from the records "
                    "already in --out, adding each model file's size; measures nothing")
    args = ap.parse_args(argv)
    if args.replot:
        print("redrew " + ", ".join(replot(args.out)))
        return 0
    names = [d for d in args.datasets.split(",") if d]
    unknown = [d for d in names if d not in DATASETS]
    if unknown:
        ap.error(f"unknown datasets {unknown}; known: {', '.join(DATASETS)}")
    try:   # fail now, not after the first dataset's hour of work
        import matplotlib  # noqa: F401
    except ImportError:
        ap.error("matplotlib draws the plots: pip install -e '.[bench]'")
    if args.install and not jxl_tools():
        print(install_jxl(), flush=True)
    if not jxl_tools():
        print("JPEG XL: cjxl/djxl not found, skipped (run with --install, or apt-get install libjxl-tools)")
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    command = "python bench/benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])
    for name in names:
        r = run_dataset(name, args.count)
        if name == "binarized-mnist":
            r["names"] = names_cost(args.count)
        r = with_model_bits(r)
        r["plots"] = plots(r, args.out)
        r["command"], r["git_commit"] = command, git_commit()
        write(args.out / f"{name}.json", json.dumps(r, indent=2))
        write(args.out / f"{name}.md", markdown(r))
    if not args.no_speed:
        t0 = time.perf_counter()
        s = speed(args.out)
        s["seconds"], s["command"], s["git_commit"] = time.perf_counter() - t0, command, git_commit()
        write(args.out / "speed.json", json.dumps(s, indent=2))
        write(args.out / "speed.md", speed_markdown(s))
    seconds = time.perf_counter() - started
    write_summary(args.out, {"command": command, "git_commit": git_commit(), "seconds": seconds, "machine": machine(),
                             "torch": torch.__version__})
    print(f"done in {seconds:.0f} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
