"""Figures of a model on a dataset (nats/image and bits/dim), printed and optionally written as JSON.

Usage: python bench/evaluate_model.py MODEL DATA [--json OUT]
"""

import json
import platform
import sys
from pathlib import Path
import time

import torch

import acncodec
from acncodec.evaluate import estimate
from acncodec.train import to_tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import provenance  # noqa: E402


def main(argv):
    model_path, data = argv[0], argv[1]
    model = acncodec.load_model(model_path)
    images = acncodec.load(data, levels=model.spec.levels)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    figures = estimate(model, to_tensor(images.images), progress=True)
    dims = images.spec.height * images.spec.width * images.spec.channels
    record = {"model": model_path, "model_hash": model.hash, "data": data, "nats_per_image": figures,
              "bits_per_dim": {k: v / dims / 0.6931471805599453 for k, v in figures.items() if k != "n"},
              "train": {k: model.meta.get(k) for k in ("steps", "epochs", "train_seconds", "train_images")},
              "eval_seconds": round(time.perf_counter() - t0, 1),
              "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"}
    record.update(provenance())
    print(json.dumps(record, indent=2))
    if "--json" in argv:
        out = argv[argv.index("--json") + 1]
        with open(out, "w") as f:
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1:])
