"""Figures of a trained model on a dataset, in nats per image (docs/DESIGN.md, section 5).

Reconstruction is E_q[-log r(x|z)] with fixed-seed samples; KLs are the accurate ones from `kl.py`.
"""

from __future__ import annotations

import math

import faiss
import numpy as np
import torch

from .coding.multiset import order_information_nats
from .progress import bar
from .kl import kl_to_mixture_values, kl_to_unconditional, step_costs, unit_gaussian_entropy
from .prior import Mixture
from .knn import nearest_others
from .tour import tour_for

BATCH = 256
KL_CHUNK = 32 * BATCH   # paired rows per KL call in `kl_under`: temporaries (KL_CHUNK x D x M) float64
CHUNK = 16   # data per Monte-Carlo chunk in the associative estimate: temporaries (CHUNK x S x K x D x M) float64


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


def unordered_cost(net, unconditional, images: torch.Tensor) -> torch.Tensor:
    """Reconstruction plus KL to the unconditional prior per image, in nats: what the original order costs,
    with one fixed-seed latent draw. Used to choose between models that fit the same data."""
    codes = encode_all(net, images)
    return reconstruction(net, images, codes) + kl_to_unconditional(codes, unconditional)


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
    return kl_under(net.prior, codes, previous)


@torch.no_grad()
def kl_under(prior, codes: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x_i) || prior(previous_i)) for paired rows, under a given conditional prior network."""
    out = []
    for i in range(0, len(codes), KL_CHUNK):
        # the prior network in batches of BATCH (its float32 outputs are those of any call on the same batches), the
        # KL on the chunk at once (compiled, it shares a chunk's rows among threads)
        parts = [prior(previous[j:j + BATCH]) for j in range(i, min(i + KL_CHUNK, len(codes)), BATCH)]
        mixture = Mixture(*(torch.cat([getattr(m, f) for m in parts]) for f in ("log_weights", "means", "scales")))
        out.append(kl_to_mixture_values(codes[i:i + KL_CHUNK], mixture))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def estimate(model, images: torch.Tensor, neighbour_counts=(1, 5, 10), progress: bool = False) -> dict:
    """The paper's Table 2 for one dataset, in nats per image (means over the data).

    KL(tour) is the sum along the codec's tour through the whole set (`tour.tour_for`: greedy, then 2-opt, then
    refined under the step's KL), its head under the unconditional prior;
    `order_cost` is ln(N!)/N, what an arbitrary order of N items is worth; `set` is the unordered cost less
    what this set's order is worth (ln N! - sum ln m_i!, m_i the copies of identical images), the set order.
    """
    n = len(images)
    codes = encode_all(model.net, images, progress)
    out = {"n": n, "reconstruction": reconstruction(model.net, images, codes, progress=progress).mean().item()}
    for k in neighbour_counts:
        if k < n:
            out[f"kl_k{k}"] = kl_to_neighbours(model.net, codes, k).mean().item()
    unconditional = kl_to_unconditional(codes, model.unconditional)
    tour = torch.from_numpy(tour_for(codes.numpy(), step_cost=step_costs(model.net.prior, codes)))
    along = kl_along(model.net, codes[tour[1:]], codes[tour[:-1]]) if n > 1 else torch.zeros(0)
    out["kl_tour"] = (unconditional[tour[0]].item() + along.sum().item()) / n
    out["kl_unconditional"] = unconditional.mean().item()
    out["ordered"] = out["reconstruction"] + out["kl_tour"]
    out["unordered"] = out["reconstruction"] + out["kl_unconditional"]
    out["order_cost"] = float(np.log(np.arange(1, n + 1)).sum() / n)
    keys = [bytes(np.ascontiguousarray(x, dtype=np.uint8)) for x in images.numpy().transpose(0, 2, 3, 1)]
    out["set"] = out["unordered"] - order_information_nats(keys) / n
    return out


@torch.no_grad()
def held_mixture_cross_entropy(net, prior, codes: torch.Tensor, neighbours: np.ndarray, eps: torch.Tensor,
                               ks: list[int]) -> dict[int, torch.Tensor]:
    """-E_q[log(p(z) + sum_{j < K} p(z | c_neighbours[:, j]))] per datum for each K, by Monte Carlo.

    codes (n, D) of the data, neighbours (n, Kmax) indices into `prior`'s rows (-1: none), eps (S, D)."""
    out = {k: torch.empty(len(codes), dtype=torch.float64) for k in ks}
    kmax = neighbours.shape[1]
    for a in range(0, len(codes), CHUNK):
        c = codes[a:a + CHUNK].double()
        z = c[:, None, :] + eps[None]                                         # (n, S, D)
        terms = [prior["unconditional"].log_prob(z)[..., None]]               # (n, S, 1)
        if kmax:
            idx = torch.from_numpy(neighbours[a:a + CHUNK])                   # (n, Kmax)
            mix = Mixture(prior["log_weights"][idx.clamp_min(0)][:, None], prior["means"][idx.clamp_min(0)][:, None],
                          prior["scales"][idx.clamp_min(0)][:, None])         # (n, 1, Kmax, D, M)
            lp = mix.log_prob(z[:, :, None, :]).sum(-1)                       # (n, S, Kmax)
            lp = torch.where(idx[:, None, :] >= 0, lp, torch.tensor(-math.inf, dtype=torch.float64))
            terms.append(lp)
        allp = torch.cat(terms, -1)                                           # (n, S, 1 + Kmax)
        for k in ks:
            out[k][a:a + CHUNK] = -torch.logsumexp(allp[..., :1 + k], -1).mean(-1)
    return out


@torch.no_grad()
def associative_set_kl(net, unconditional, codes: torch.Tensor, lengths: list[int], order: np.ndarray,
                    ks: list[int], samples: int = 128, seed: int = 0) -> dict:
    """Latent cost (nats per image, without reconstruction and without the order refund) of the associative
    set mode with this round layout and decode order; one figure per K, plus diagnostics."""
    n, dim = codes.shape
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    rounds = [order[starts[:int((np.asarray(lengths) > r).sum())] + r] for r in range(max(lengths))]
    prior_all = net.prior(codes)
    prior = {"unconditional": unconditional, "log_weights": prior_all.log_weights.double(),
             "means": prior_all.means.double(), "scales": prior_all.scales.double()}
    eps = torch.randn(samples, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    entropy = unit_gaussian_entropy(dim)
    kmax = max(ks)
    index = faiss.IndexFlatL2(dim)
    held = np.empty(0, dtype=np.int64)
    latent = {k: 0.0 for k in ks}
    pointer = 0.0
    nearest_kl = []
    for idx in rounds:
        q = codes[idx].numpy().astype(np.float32)
        if len(held) == 0:
            nb = np.full((len(idx), 0), -1, dtype=np.int64)
        else:
            _, found = index.search(q, min(kmax, len(held)))
            nb = np.where(found >= 0, held[np.maximum(found, 0)], -1)
            pointer += len(idx) * math.log(len(held) + 1)
            nearest_kl.append(kl_along(net, codes[idx], codes[torch.from_numpy(nb[:, 0])]))
        if nb.shape[1] < kmax:
            nb = np.concatenate([nb, np.full((len(idx), kmax - nb.shape[1]), -1, dtype=np.int64)], 1)
        cross = held_mixture_cross_entropy(net, prior, codes[idx], nb, eps, ks)
        for k in ks:
            latent[k] += float((cross[k] - entropy).sum())
        index.add(q)
        held = np.concatenate([held, idx])
    return {"kl_held_mixture": {str(k): latent[k] / n for k in ks}, "pointer": pointer / n,
            "kl_nearest_held": float(torch.cat(nearest_kl).mean()) if nearest_kl else None,
            "rounds": len(rounds), "chains": len(lengths)}
