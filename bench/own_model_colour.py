"""The new user's path for data no shipped model fits: 32x32 colour images, `acncodec train` with its defaults,
then `acncodec compress`, against xz -9 on the same pixels.

The images are scikit-learn's two sample photographs (china.jpg, flower.jpg, 427x640) cut into 520 patches of
32x32 (no download). Everything runs through the command line as a user types it; the record keeps the
commands, their output, the times, the commit and the machine.

Usage: python bench/own_model_colour.py [--out bench/results/own-model-colour.json] [--threads 1] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def patches() -> np.ndarray:
    from sklearn.datasets import load_sample_images
    out = []
    for image in load_sample_images().images:
        h, w, _ = image.shape
        out += [image[i:i + 32, j:j + 32] for i in range(0, h - 31, 32) for j in range(0, w - 31, 32)]
    return np.stack(out).astype(np.uint8)


def run(args: list[str], cwd: Path) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "acncodec.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return {"command": "acncodec " + " ".join(args), "exit_code": done.returncode,
            "seconds": round(time.perf_counter() - started, 1), "stdout": done.stdout, "stderr": done.stderr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "bench/results/own-model-colour.json"))
    parser.add_argument("--threads", default="1")
    parser.add_argument("--work", default=None, help="folder for the data, model and archive (default: temporary)")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    work = Path(args.work or tempfile.mkdtemp(prefix="acncodec-colour-"))
    images = patches()
    np.save(work / "patches.npy", images)
    raw = images.tobytes()
    xz = len(lzma.compress(raw, format=lzma.FORMAT_XZ, preset=9))
    steps = [run(["train", "patches.npy", "-o", "patches.acn", "--threads", args.threads], work)]
    if steps[0]["exit_code"] == 0:
        steps.append(run(["compress", "patches.npy", "patches.acnz", "--model", "patches.acn"], work))
    archive = work / "patches.acnz"
    record = {"what": __doc__.split("\n\n")[0], "images": list(images.shape), "xz_9_bytes_raw_pixels": xz,
              "xz_9_bits_per_dim": 8 * xz / images.size, "steps": steps,
              "archive_bytes": archive.stat().st_size if archive.exists() else None,
              "archive_bits_per_dim": 8 * archive.stat().st_size / images.size if archive.exists() else None,
              "commit": commit, "machine": f"{cpu_model()}, {os.cpu_count()} cores, {platform.platform()}",
              "command": "python bench/own_model_colour.py " + " ".join(sys.argv[1:])}
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "steps"}, indent=2))


if __name__ == "__main__":
    main()
