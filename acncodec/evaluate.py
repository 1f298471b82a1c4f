"""Figures of a trained model on a dataset, in nats per image (docs/DESIGN.md, section 5).

Reconstruction is E_q[-log r(x|z)] with fixed-seed samples; KLs are the accurate ones from `kl.py`.
"""

from __future__ import annotations

import numpy as np
import torch

from .progress import bar
from .kl import kl_to_mixture, kl_to_unconditional
from .knn import nearest_others
from .tour import greedy_tour

BATCH = 256


@torch.no_grad()
def encode_all(net, images: torch.Tensor, progress: bool = False) -> torch.Tensor:
    """Codes E(x) for (N, C, H, W) level indices, in batches."""
    net.eval()
    out = [net.encoder(images[i:i + BATCH].long())
           for i in bar(range(0, len(images), BATCH), progress, desc="encode", leave=False)]
    return torch.cat(out) if out else torch.empty(0, net.config.latent_dim)


@torch.no_grad()
def reconstruction(net, images: torch.Tensor, codes: torch.Tensor, samples: int = 1, seed: int = 0,
                   progress: bool = False) -> torch.Tensor:
    """-log r(x|z), z ~ q(z|x), averaged over `samples` draws; one value per image."""
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(len(images), dtype=torch.float64)
    for _ in range(samples):
        for i in bar(range(0, len(images), BATCH), progress, desc="reconstruction", leave=False):
            c = codes[i:i + BATCH]
            z = c + torch.randn(c.shape, generator=gen)
            total[i:i + BATCH] -= net.decoder.log_prob(images[i:i + BATCH].long(), z).double()
    return total / samples


@torch.no_grad()
def kl_to_neighbours(net, codes: torch.Tensor, k: int) -> torch.Tensor:
    """KL(q_i || p(·|ĉ)) averaged over ĉ in the k nearest *other* codes of the same set (the expectation
    of drawing ĉ uniformly among them)."""
    found = nearest_others(codes.numpy(), np.arange(len(codes)), codes.numpy(), k)
    total = torch.zeros(len(codes), dtype=torch.float64)
    for j in range(k):
        total += kl_along(net, codes, codes[torch.from_numpy(found[:, j])])
    return total / k


@torch.no_grad()
def kl_along(net, codes: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x_i) || p(z|previous_i)) for paired rows."""
    out = [kl_to_mixture(codes[i:i + BATCH], net.prior(previous[i:i + BATCH]))
           for i in range(0, len(codes), BATCH)]
    return torch.cat(out)


def estimate(model, images: torch.Tensor, neighbour_counts=(1, 5, 10), progress: bool = False) -> dict:
    """The paper's Table 2 for one dataset, in nats per image (means over the data).

    KL(greedy tour) is the sum along one tour through the whole set, its head under the unconditional prior;
    `order_cost` is ln(N!)/N, what an arbitrary order of N items is worth.
    """
    n = len(images)
    codes = encode_all(model.net, images, progress)
    out = {"n": n, "reconstruction": reconstruction(model.net, images, codes, progress=progress).mean().item()}
    for k in neighbour_counts:
        if k < n:
            out[f"kl_k{k}"] = kl_to_neighbours(model.net, codes, k).mean().item()
    unconditional = kl_to_unconditional(codes, model.unconditional)
    tour = torch.from_numpy(greedy_tour(codes.numpy()))
    along = kl_along(model.net, codes[tour[1:]], codes[tour[:-1]]) if n > 1 else torch.zeros(0)
    out["kl_tour"] = (unconditional[tour[0]].item() + along.sum().item()) / n
    out["kl_unconditional"] = unconditional.mean().item()
    out["ordered"] = out["reconstruction"] + out["kl_tour"]
    out["unordered"] = out["reconstruction"] + out["kl_unconditional"]
    out["order_cost"] = float(np.log(np.arange(1, n + 1)).sum() / n)
    return out
