"""Rate and speed cost of exact numerics: a float model and its quantised ("exact1") twin, side by side.

Compresses the same images with both models (tour order, fixed so both code alike; the default chains), decompresses both (timed,
alternating, the best of --repeats), checks every decoded pixel, and records the payload sizes, the rate cost of the exact
model and the decompression speed ratio (exact over float: above 1 means the exact model decodes faster).

Usage: PYTHONPATH=. python bench/exact_cost.py MODEL DATA [--exact EXACT_MODEL] [--calibration TRAIN_DATA]
                                              [--images N] [--repeats 1] [--json OUT]
MODEL: a float model file or shipped name; EXACT_MODEL: its quantised twin (default: quantised here on
--calibration, default DATA, with acncodec's default calibration size).
"""

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_model  # noqa: E402

from acncodec import codec, data as datamod, registry  # noqa: E402
from acncodec.codec import match_model  # noqa: E402
from acncodec.quantize import calibration_set, quantise_model  # noqa: E402


def compress(images, model):
    blob, report = codec.compress(images, model, order="tour", progress=False, estimate=False)
    return blob, {"payload_bytes": int(round(report["payload_nats_per_image"] * len(images) / np.log(2) / 8)),
                  "payload_bits_per_image": report["payload_nats_per_image"] / np.log(2),
                  "archive_bytes": len(blob), "compress_seconds": report["compress_seconds"]}


def timed_decompress(blob, model, images) -> float:
    t0 = time.perf_counter()
    out, _ = codec.decompress(blob, model, progress=False)
    seconds = time.perf_counter() - t0
    key = lambda s: sorted(zip(s.names or [""] * len(s), (im.tobytes() for im in s.images)))
    assert key(out) == key(images), "round trip failed"
    return seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--exact")
    ap.add_argument("--calibration")
    ap.add_argument("--images", type=int, default=None, help="Use the first N images of DATA.")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()
    model = registry.load_model(args.model)
    images = match_model(datamod.load(args.data, levels=model.spec.levels), model)
    if args.images:
        images = type(images)(images.images[:args.images], images.levels,
                              None if images.names is None else images.names[:args.images], images.source)
    if args.exact:
        exact = registry.load_model(args.exact)
    else:
        calib = images if args.calibration is None else \
            match_model(datamod.load(args.calibration, levels=model.spec.levels), model)
        exact = quantise_model(model, calibration_set(calib))
    # The machine may be shared: decompressions alternate float, exact, float, ... and each keeps its best.
    (float_blob, float_run), (exact_blob, exact_run) = compress(images, model), compress(images, exact)
    times = {"float": [], "exact": []}
    for _ in range(args.repeats):
        times["float"].append(timed_decompress(float_blob, model, images))
        times["exact"].append(timed_decompress(exact_blob, exact, images))
    float_run["decompress_seconds"], exact_run["decompress_seconds"] = (round(min(times[k]), 3) for k in times)
    float_run["decompress_seconds_all"], exact_run["decompress_seconds_all"] = \
        ([round(t, 3) for t in times[k]] for k in times)
    record = {
        "command": "python " + " ".join(sys.argv),
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
        "model": args.model, "model_hash": model.hash, "exact_hash": exact.hash, "data": images.source,
        "n": len(images), "float": float_run, "exact": exact_run,
        "rate_cost": exact_run["payload_bits_per_image"] / float_run["payload_bits_per_image"] - 1,
        "decompress_speed_ratio": float_run["decompress_seconds"] / exact_run["decompress_seconds"],
    }
    print(json.dumps(record, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
