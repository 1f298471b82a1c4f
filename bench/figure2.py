"""The paper's Figure 2 on binarized MNIST: ordered against unordered cost for ACNs trained with K = 1, 5, 20,
100 and 1000 nearest neighbours, a Gated PixelVAE and a Gated PixelCNN alone, all with one small shared decoder.

    python bench/figure2.py [--steps 3000] [--test-images 10000] [--models acn-k1,...] [--runs DIR]

Every model has the same networks and training run (`SMALL`, `--steps` steps of batch 64 on binarized-mnist:train,
Adam, the KL warm-up over the first quarter); only K and the variant differ (`acncodec train --variant`):
- `pixelvae`: the prior network's input is cut, so it learns one mixture prior for all data (the paper's Gated
  PixelVAE, with the ACN's networks);
- `pixelcnn`: the decoder does not read z. It is coded by the same bits-back coder; its latent carries nothing and
  the archive shows what it costs.
Each model is quantised (exact numerics), then the test split is estimated (`acncodec.estimate`) and compressed for
real in tour order (ordered) and original order (unordered, latents under p(z)); every archive is decompressed and
every pixel checked. Training is resumable (checkpoints and finished models in --runs, outside the work tree) and
each model's results are kept there too, so the command can be run again after an interruption and continues.
Writes bench/results/figure2.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from acncodec import api, modelfile  # noqa: E402
from acncodec.config import ModelConfig, TrainConfig  # noqa: E402
from acncodec.data import load  # noqa: E402
from acncodec.quantize import calibration_set, quantise_model  # noqa: E402
from acncodec.train import Trainer  # noqa: E402
from machine import provenance  # noqa: E402

#: The shared networks: the shipped binarized-MNIST model's encoder and prior, a smaller decoder.
SMALL = ModelConfig(decoder_channels=16, decoder_layers=3, decoder_kernel=5)
#: name -> (variant, K). K does not matter to the PixelVAE and the PixelCNN; they train with the default.
MODELS = {"acn-k1": ("acn", 1), "acn-k5": ("acn", 5), "acn-k20": ("acn", 20), "acn-k100": ("acn", 100),
          "acn-k1000": ("acn", 1000), "pixelvae": ("pixelvae", 5), "pixelcnn": ("pixelcnn", 5)}
ORDERS = {"ordered": "tour", "unordered": "original"}


def nats_per_image(nbytes: int, n: int) -> float:
    return 8 * nbytes * math.log(2) / n


def trained(name: str, runs: Path, train, steps: int, threads: int) -> modelfile.Model:
    """The exact model `name`, trained (or resumed) and quantised if it is not in `runs` yet."""
    exact = runs / f"{name}.acn"
    if exact.exists():
        return modelfile.load(exact)
    variant, k = MODELS[name]
    config = TrainConfig(steps=steps, neighbours=k, variant=variant, kl_warmup=steps // 4, threads=threads)
    t0 = time.perf_counter()
    model = Trainer(train, runs / f"{name}.float.acn", SMALL, config,
                    meta={"command": f"bench/figure2.py ({name}: variant {variant}, K {k})"}).run(progress=False)
    model = quantise_model(model, calibration_set(train))
    modelfile.save(model, exact)
    print(f"{name}: trained {steps} steps in {time.perf_counter() - t0:.0f} s (this call)", flush=True)
    return model


def measured(name: str, model: modelfile.Model, test, runs: Path) -> dict:
    """Estimates and real archives of the test images under `model`; kept in `runs` once made."""
    path = runs / f"{name}.test{len(test)}.json"
    if path.exists():
        return json.loads(path.read_text())
    est = api.estimate(test, model)
    out = {"train_seconds": model.meta["train_seconds"], "steps": model.meta["steps"],
           "variant": model.meta.get("variant"), "model_hash": model.hash,
           "estimate": {k: est[k] for k in ("reconstruction", "kl_tour", "kl_unconditional", "ordered",
                                            "unordered")}, "archives": {}}
    for label, order in ORDERS.items():
        t0 = time.perf_counter()
        blob, report = api.compress(test, model, order=order, baseline=False)
        seconds = time.perf_counter() - t0
        restored, _ = api.decompress(blob, model)
        got = restored.images.reshape(len(test), -1)
        want = test.images.reshape(len(test), -1)
        if order == "original":
            ok = np.array_equal(got, want)
        else:
            ok = sorted(map(bytes, got)) == sorted(map(bytes, want))
        if not ok:
            raise SystemExit(f"{name}, {order}: the decoded images differ from the input")
        out["archives"][label] = {"order": order, "bytes": len(blob),
                                  "nats_per_image": nats_per_image(len(blob), len(test)),
                                  "estimate_nats_per_image": report.get("estimate_nats_per_image"),
                                  "compress_seconds": round(seconds, 1), "verified_images": len(test)}
    path.write_text(json.dumps(out, indent=2) + "\n")
    return out


def table(results: dict, n: int) -> str:
    rows = ["| model | steps | recon | KL tour | KL p(z) | ordered: estimate / archive | "
            "unordered: estimate / archive |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        e, a = r["estimate"], r["archives"]
        rows.append(f"| {name} | {r['steps']} | {e['reconstruction']:.2f} | {e['kl_tour']:.2f} | "
                    f"{e['kl_unconditional']:.2f} | {e['ordered']:.2f} / {a['ordered']['nats_per_image']:.2f} | "
                    f"{e['unordered']:.2f} / {a['unordered']['nats_per_image']:.2f} |")
    return (f"Nats per image on {n:,} binarized-MNIST test images; archives are real files, decoded and checked.\n\n"
            + "\n".join(rows) + "\n")


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(results)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2, 3.6))
    for shift, label, colour in ((-0.2, "unordered", "#999999"), (0.2, "ordered", "#3060a0")):
        archive = [results[m]["archives"][label]["nats_per_image"] for m in names]
        estimate = [results[m]["estimate"][label] for m in names]
        ax.bar(x + shift, archive, 0.4, color=colour, label=f"{label} (archive)")
        ax.scatter(x + shift, estimate, color="black", marker="_", s=200, zorder=3,
                   label="estimate" if label == "ordered" else None)
    low = min(min(r["archives"]["ordered"]["nats_per_image"], r["estimate"]["ordered"]) for r in results.values())
    ax.set_ylim(low - 8, None)
    ax.set_xticks(x, names, rotation=20)
    ax.set_ylabel("nats per image")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--test-images", type=int, default=10_000)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--runs", type=Path, default=Path.home() / ".cache/acncodec-runs/figure2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    names = args.models.split(",")
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        ap.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    runs = args.runs / f"steps{args.steps}"
    runs.mkdir(parents=True, exist_ok=True)
    train = load("binarized-mnist:train")
    test = load(f"binarized-mnist:test:{args.test_images}")
    results = {}
    for name in names:
        model = trained(name, runs, train, args.steps, args.threads)
        results[name] = measured(name, model, test, runs)
        print(name, json.dumps(results[name]["archives"]), flush=True)
    record = {**provenance(), "test_images": len(test), "steps": args.steps, "model_config": SMALL.to_dict(),
              "models": results}
    stem = args.out / "figure2"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    stem.with_suffix(".md").write_text(f"# Figure 2: ordered against unordered cost\n\n`{record['command']}` at "
                                       f"{record['git_commit']} on {record['machine_provenance']}.\n\n"
                                       + table(results, len(test)))
    plot(results, stem.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
