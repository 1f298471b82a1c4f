"""For 8-bit data: does a discretised logistic mixture output (PixelCNN++) learn faster than the 256-way
categorical the decoder has now, on this machine's budget?

    python bench/pixel_output.py [--data mnist] [--minutes 20] [--components 10] [--test-images 1000]

The comparison isolates the output: a Gated PixelCNN alone (no latent: z is zero), the shipped grey models'
sizes (48 channels, 5 layers, kernel 5), the same batches in the same order, Adam at 1e-3, and the same
wall-clock budget for each head, one after the other on a quiet machine. Every `--eval-every` seconds of
training the held-out cost (test split, float network) is measured, so the record has both curves: bits/dim
against training seconds. Writes bench/results/pixel-output-<data>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from acncodec.data import load  # noqa: E402
from acncodec.pixelcnn import GatedPixelCNN  # noqa: E402
from machine import provenance  # noqa: E402


def logistic_mixture_log_prob(params: torch.Tensor, x: torch.Tensor, levels: int) -> torch.Tensor:
    """log P(x) per pixel under a mixture of logistics discretised to `levels` bins on [-1, 1].

    params (N, 3K, H, W): K weight logits, K means, K log-scales; x (N, H, W) level indices. The end bins take
    the tails, so the probabilities sum to one (Salimans et al. 2017, section 2.1)."""
    logit_w, mean, log_s = params.chunk(3, dim=1)
    log_s = log_s.clamp(min=-7.0)
    centre = (2.0 * x.float() / (levels - 1) - 1.0).unsqueeze(1)
    half = 1.0 / (levels - 1)
    inv_s = torch.exp(-log_s)
    upper = inv_s * (centre - mean + half)
    lower = inv_s * (centre - mean - half)
    log_cdf_upper = F.logsigmoid(upper)                # log sigma(upper), the mass below the bin's top
    log_one_minus_cdf_lower = -F.softplus(lower)       # log (1 - sigma(lower)), the mass above its bottom
    # log(sigma(upper) - sigma(lower)), stable: sigma(u) - sigma(l) = sigma(u) (1 - sigma(l)) (1 - e^(l - u))
    inner = log_cdf_upper + log_one_minus_cdf_lower + torch.log(-torch.expm1(lower - upper).clamp(max=-1e-12))
    xb = x.unsqueeze(1)
    log_bin = torch.where(xb == 0, log_cdf_upper, torch.where(xb == levels - 1, log_one_minus_cdf_lower, inner))
    return torch.logsumexp(F.log_softmax(logit_w, dim=1) + log_bin, dim=1)


class LogisticHead(nn.Module):
    """The decoder's output features -> K-component logistic mixture parameters per pixel (grey only)."""

    def __init__(self, channels: int, components: int):
        super().__init__()
        self.features = nn.Conv2d(channels, channels, 1)
        self.params = nn.Conv2d(channels, 3 * components, 1)

    def forward(self, h: torch.Tensor, x_scaled: torch.Tensor) -> torch.Tensor:
        return self.params(F.relu(self.features(F.relu(h))))


def nats_per_image(net: GatedPixelCNN, head: str, x: torch.Tensor, levels: int) -> torch.Tensor:
    z = torch.zeros(len(x), net.condition_map.fc.in_features)
    if head == "categorical":
        return -net.log_prob(x, z)
    params = net.logits(x, z)                          # the head replaced: mixture parameters
    return -logistic_mixture_log_prob(params, x[:, 0], levels).flatten(1).sum(1)


@torch.no_grad()
def held_out(net, head, test, levels, batch=500) -> float:
    net.eval()
    total = sum(float(nats_per_image(net, head, test[i:i + batch], levels).sum()) for i in range(0, len(test), batch))
    net.train()
    return total / len(test) / math.log(2) / test[0].numel()


def train_curve(head: str, train: torch.Tensor, test: torch.Tensor, levels: int, args) -> dict:
    torch.manual_seed(0)
    net = GatedPixelCNN(1, levels, 16, 48, 5, 5, height=train.shape[2], width=train.shape[3])
    if head == "logistic":
        net.head = LogisticHead(48, args.components)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    order = np.random.default_rng(0).permutation(len(train))
    curve, step, trained, next_eval = [], 0, 0.0, 0.0
    while trained < 60 * args.minutes:
        if trained >= next_eval:
            curve.append({"seconds": round(trained, 1), "step": step, "bits_per_dim": held_out(net, head, test,
                                                                                               levels)})
            print(head, curve[-1], flush=True)
            next_eval += args.eval_every
        ids = order[(step * 64) % (len(order) - 64):][:64]
        t0 = time.perf_counter()
        loss = nats_per_image(net, head, train[ids], levels).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        trained += time.perf_counter() - t0
        step += 1
    curve.append({"seconds": round(trained, 1), "step": step, "bits_per_dim": held_out(net, head, test, levels)})
    return {"curve": curve, "steps": step, "parameters": sum(p.numel() for p in net.parameters())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--eval-every", type=float, default=120.0, help="seconds of training between evaluations")
    ap.add_argument("--components", type=int, default=10)
    ap.add_argument("--test-images", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train_set, test_set = load(f"{args.data}:train"), load(f"{args.data}:test:{args.test_images}")
    if train_set.levels != 256 or train_set.spec.channels != 1:
        ap.error("the comparison is for 8-bit grey data")
    as_tensor = lambda s: torch.from_numpy(s.images.transpose(0, 3, 1, 2).astype(np.int64))  # noqa: E731
    train, test = as_tensor(train_set), as_tensor(test_set)
    heads = {h: train_curve(h, train, test, 256, args) for h in ("categorical", "logistic")}
    record = {**provenance(), "data": args.data, "minutes_each": args.minutes, "components": args.components,
              "test_images": len(test), "heads": heads}
    stem = args.out / f"pixel-output-{args.data}"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    rows = ["| training seconds | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for points in zip(*(h["curve"] for h in heads.values())):
        rows.append(f"| {points[0]['seconds']:.0f} | " + " | ".join(f"{p['bits_per_dim']:.4f} (step {p['step']})"
                                                                  for p in points) + " |")
    stem.with_suffix(".md").write_text(
        f"# Pixel output: 256-way categorical against a {args.components}-logistic mixture\n\n`{record['command']}` "
        f"at {record['git_commit']} on {record['machine_provenance']}.\n\nHeld-out bits/dim on {len(test):,} "
        f"{args.data} test images (float network, no latent), against training seconds; "
        f"{args.minutes:g} min each.\n\n" + "\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
