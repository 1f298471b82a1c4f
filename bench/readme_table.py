"""Print the README's results tables from bench/results/*.json (so every figure there traces to a file).

Usage: python bench/readme_table.py [TAG ...]   (default tags: bmnist-L4K5 bmnist-L3K3)
"""

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PAPER = {"kl_k1": 2.6, "kl_k5": 3.5, "kl_tour": 3.6, "kl_k10": 4.1, "kl_unconditional": 10.6,
         "reconstruction": 70.3, "ordered": 73.9, "unordered": 80.9}
ROWS = [("kl_k1", "KL(K=1)"), ("kl_k5", "KL(K=5)"), ("kl_tour", "KL(greedy tour)"), ("kl_k10", "KL(K=10)"),
        ("kl_unconditional", "KL(unconditional)"), ("reconstruction", "reconstruction"),
        ("ordered", "ordered <= (recon + tour KL)"), ("unordered", "unordered (recon + unconditional KL)")]


def load(name):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def main(tags):
    estimates = {t: load(f"{t}-estimate.json") for t in tags}
    tags = [t for t in tags if estimates[t]]
    print("Binarized MNIST test split (10,000 images), nats/image; `bench/evaluate_model.py MODEL "
          "binarized-mnist:test`:\n")
    print("| | paper | " + " | ".join(tags) + " |")
    print("|---|---|" + "---|" * len(tags))
    for key, label in ROWS:
        cells = [f"{estimates[t]['nats_per_image'][key]:.2f}" for t in tags]
        print(f"| {label} | {PAPER[key]} | " + " | ".join(cells) + " |")
    print()
    print("The codec on the same 10,000 images as an array (`bench/codec_roundtrip.py MODEL binarized-mnist:test`; "
          "decoded in a separate process and checked pixel for pixel):\n")
    print("| model | order | archive bytes | bits/dim | nats/image | KL-bound estimate | actual/estimate "
          "| compress img/s | decompress img/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t in tags:
        codec = load(f"{t}-codec.json")
        for r in (codec or {}).get("results", []):
            print(f"| {t} | {r['order']} | {r['bytes']:,} | {r['bits_per_dim']:.4f} | {r['nats_per_image']:.2f} "
                  f"| {r['estimate_nats_per_image']:.2f} | {r['actual_over_estimate']:.4f} "
                  f"| {r['compress_images_per_second']:.0f} | {r['decompress_images_per_second']:.0f} |")
    classical = load("classical-binarized-mnist-test.json")
    if classical:
        rows = classical["datasets"][0]["results"]
        print("\nClassical compressors on the same pixels (`bench/classical.py binarized-mnist:test`), bits/dim: "
              + ", ".join(f"{k} {v['bits_per_dim']:.4f}" for k, v in rows.items() if "bits_per_dim" in v) + ".")


if __name__ == "__main__":
    main(sys.argv[1:] or ["bmnist-L4K5", "bmnist-L3K3"])
