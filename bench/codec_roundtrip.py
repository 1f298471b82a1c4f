"""Compress a dataset with a model in each order mode, decompress it in a separate process (with another
thread count), check every pixel, and record sizes, the KL-bound estimate and speeds.

Usage: python bench/codec_roundtrip.py MODEL DATA [--orders tour,original] [--chains B] [--json OUT]
"""

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
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402
from associative_set import git_commit  # noqa: E402

import acncodec  # noqa: E402
from acncodec import codec  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import provenance  # noqa: E402


def same_images(restored: np.ndarray, images: np.ndarray, order: str) -> bool:
    """Original order: equal arrays. Set orders: the images sorted by their bytes (the documented order).
    Tour order: the same images, each exactly once, in another order."""
    if order == "original":
        return np.array_equal(restored, images)
    if order in ("set", "associative"):
        return [bytes(x) for x in restored] == sorted(map(bytes, images))
    return sorted(map(bytes, restored)) == sorted(map(bytes, images))


def roundtrip(images, model, model_arg: str, order: str, chains=None) -> dict:
    """Compress in this process (one coding thread), decompress in a separate one with OMP_NUM_THREADS=2,
    check every pixel; the compress report with decode speed, memory and the check added."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        blob, report = codec.compress(images, model, order=order, chains=chains, progress=False)
        order = report["order"]   # what auto picked
        report["compress_wall_seconds"] = time.perf_counter() - t0
        archive = Path(tmp) / f"{order}.acnz"
        archive.write_bytes(blob)
        out = Path(tmp) / f"{order}-out"
        env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "acncodec.cli", "decompress", str(archive), str(out) +
                        ("" if images.names else ".npy"), "--model", model_arg, "-q"], check=True, env=env)
        seconds = time.perf_counter() - t0
        if images.names is not None:
            checked = codec.compare_images(images, acncodec.load(str(out))).count
        else:
            restored = np.load(str(out) + ".npy").reshape(images.images.shape)
            if not same_images(restored, images.images, order):
                raise SystemExit(f"{order}: restored images differ")
            checked = len(images)
    report.update({"peak_rss_mib_this_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "peak_rss_mib_decompress_processes":
                       resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                   "decompress_seconds_separate_process": seconds,
                   "decompress_images_per_second": len(images) / seconds,
                   "verified_images": checked, "decompress_threads_env": 2})
    return report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--orders", default="tour,original")
    ap.add_argument("--chains", type=int)
    ap.add_argument("--json")
    args = ap.parse_args()
    commit = git_commit()
    torch.set_num_threads(1)
    model = acncodec.load_model(args.model)
    images = acncodec.load(args.data)
    results = [roundtrip(images, model, args.model, order, args.chains) for order in args.orders.split(",")]
    for report in results:
        print(json.dumps({k: report[k] for k in ("order", "n", "bytes", "bits_per_dim", "nats_per_image",
                                                 "estimate_nats_per_image", "actual_over_estimate",
                                                 "compress_images_per_second",
                                                 "decompress_images_per_second", "verified_images")}))
    record = {"command": "python bench/codec_roundtrip.py " + " ".join(sys.argv[1:]), "git_commit": commit,
              "model": args.model, "model_hash": model.hash, "data": args.data, "results": results,
              "machine": f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}"}
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
