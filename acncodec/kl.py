"""Accurate KL divergences from q(z|x) = N(c, I) to the priors, for reported figures.

Training uses a one-sample estimate; reports use these. Against the conditional prior both distributions
factorise over dimensions, so the KL is a sum of 1-D integrals, computed with Gauss-Hermite quadrature.
The unconditional prior is a joint mixture, so its cross-entropy is a Monte-Carlo average over many samples
(the entropy of q is exact).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .jit import jit, njit
from .prior import LOG_SQRT_2PI, Mixture, UnconditionalPrior

GAUSS_HERMITE_POINTS = 64
#: Points for step costs that only rank tours (`step_costs`): on the binarized-MNIST test codes' steps to their
#: 16 nearest codes, 8 points are within 0.003 nats of 64 (0.000006 on average) and about 10 times faster.
STEP_COST_POINTS = 8
#: Rows per torch call of `kl_to_mixture_values` without numba.
_TORCH_ROWS = 256
#: Data per batch of step costs: temporaries are (batch x D x points x M) float64.
STEP_COST_BATCH = 1024


def unit_gaussian_entropy(dim: int) -> float:
    """Entropy of N(c, I) in nats: -E_q[log q]."""
    return 0.5 * dim * math.log(2 * math.pi * math.e)


def _hermite_nodes(points: int = GAUSS_HERMITE_POINTS) -> tuple[torch.Tensor, torch.Tensor]:
    t, w = np.polynomial.hermite.hermgauss(points)
    # ∫ N(z; c, 1) f(z) dz = Σ w_i/√π f(c + √2 t_i)
    return torch.from_numpy(t * math.sqrt(2.0)), torch.from_numpy(w / math.sqrt(math.pi))


def kl_to_mixture(codes: torch.Tensor, prior: Mixture, points: int = GAUSS_HERMITE_POINTS) -> torch.Tensor:
    """KL(N(c, I) || Π_d mixture_d) per datum; codes (N, D), prior tensors (N, D, M). Float64."""
    nodes, weights = _hermite_nodes(points)
    z = codes.double().unsqueeze(-1) + nodes                 # (N, D, P)
    mix = Mixture(prior.log_weights.double().unsqueeze(-2), prior.means.double().unsqueeze(-2),
                  prior.scales.double().unsqueeze(-2))       # (N, D, 1, M)
    cross = -(mix.log_prob(z) * weights).sum(-1)             # (N, D): -E_q[log p_d]
    return cross.sum(-1) - unit_gaussian_entropy(codes.shape[-1])


def kl_to_mixture_values(codes: torch.Tensor, prior: Mixture, points: int = GAUSS_HERMITE_POINTS) -> torch.Tensor:
    """`kl_to_mixture`'s values, without its gradient: compiled where numba is there (`compiled_steps_kl`; the same
    to 1e-13, without the (N, D, points, M) temporaries), torch's otherwise. For the figures the sender reports."""
    if _compiled is None:
        with torch.no_grad():     # in batches: the temporaries are (rows x D x points x M) float64
            out = [kl_to_mixture(codes[i:i + _TORCH_ROWS], Mixture(*(t[i:i + _TORCH_ROWS] for t in (
                prior.log_weights, prior.means, prior.scales))), points) for i in range(0, len(codes), _TORCH_ROWS)]
            return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
    rows = np.arange(len(codes))
    mixtures = (codes.detach().double().numpy(), *_mixture_arrays(prior))
    return torch.from_numpy(compiled_steps_kl(mixtures, rows, rows, points))


def _mixture_arrays(prior: Mixture) -> tuple[np.ndarray, ...]:
    """A mixture (N, D, M) as `compiled_steps_kl` reads it: float64 log weights, means, reciprocal scales and log
    scales."""
    log_weights, means, scales = (t.detach().double().numpy() for t in (prior.log_weights, prior.means,
                                                                          prior.scales))
    return log_weights, means, 1.0 / scales, np.log(scales)


def kl_to_unconditional(codes: torch.Tensor, prior: UnconditionalPrior, samples: int = 1024,
                        seed: int = 0) -> torch.Tensor:
    """KL(N(c, I) || p(z)) per datum, cross-entropy averaged over `samples` fixed-seed draws."""
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(samples, codes.shape[-1], generator=gen, dtype=torch.float64)
    codes = codes.double()
    step = 64   # codes per chunk: temporaries are (step x samples x components) float64
    cross = [-prior.log_prob(codes[i:i + step, None, :] + eps).mean(-1) for i in range(0, len(codes), step)]
    return torch.cat(cross) - unit_gaussian_entropy(codes.shape[-1])


def step_costs(prior, codes, points: int = STEP_COST_POINTS):
    """cost(prev, next) -> KL(q(z|x_next) || p(z|c_prev)) in nats (float64 numpy) for int arrays of indices
    into `codes` (N, D): what a tour step costs, for `tour_refine`. The prior network runs once per code, at the
    first call: a tour that is not refined (above `tour.APPROXIMATE_ABOVE`) never holds the N mixtures.

    The sum is `kl_to_mixture`'s, compiled (`_steps_kl`, numba) where numba is there: one pass per step without
    the (steps x D x points x M) temporaries, on as many threads as torch has. Its exp and log are not torch's,
    so a cost may differ from `kl_to_mixture`'s in the last bits (tests/test_model.py bounds it); the costs only
    rank tours, which are the sender's choice."""
    codes = torch.as_tensor(np.asarray(codes, dtype=np.float32))
    held = []       # every code's mixture, made at the first call: compiled_steps_kl's arrays, or torch's Mixture

    @torch.no_grad()
    def cost(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        if not held:
            parts = [prior(codes[i:i + STEP_COST_BATCH]) for i in range(0, len(codes), STEP_COST_BATCH)]
            mixture = Mixture(*(torch.cat([getattr(m, f) for m in parts]) for f in ("log_weights", "means", "scales")))
            held.append(mixture if _compiled is None else (codes.double().numpy(), *_mixture_arrays(mixture)))
        if _compiled is not None:
            return compiled_steps_kl(held[0], prev, nxt, points)
        log_weights, means, scales = held[0].log_weights, held[0].means, held[0].scales
        out = []
        for i in range(0, len(prev), STEP_COST_BATCH):
            a = torch.as_tensor(np.asarray(prev[i:i + STEP_COST_BATCH], dtype=np.int64))
            b = torch.as_tensor(np.asarray(nxt[i:i + STEP_COST_BATCH], dtype=np.int64))
            out.append(kl_to_mixture(codes[b], Mixture(log_weights[a], means[a], scales[a]), points))
        return torch.cat(out).numpy() if out else np.zeros(0)
    return cost


#: A mixture term this far below the largest (in log) is left out of its log-sum-exp: its exp is below 2^-60
#: of the largest term's, so the sum moves by at most its last bit.
_NEGLIGIBLE = -41.6
#: Steps per thread below which `compiled_steps_kl` stays on one thread.
_STEPS_PER_THREAD = 256


def compiled_steps_kl(mixtures: tuple, prev: np.ndarray, nxt: np.ndarray, points: int) -> np.ndarray:
    """KL(N(c_next, I) || mixture of prev) for each step (prev, next), from `mixtures` = (codes (N, D), log
    weights, means, reciprocal scales, log scales (N, D, M)) float64, split among torch's threads."""
    prev = np.ascontiguousarray(prev, dtype=np.int64)
    nxt = np.ascontiguousarray(nxt, dtype=np.int64)
    codes, log_weights, means, inv_scales, log_scales = mixtures
    if len(prev) and (min(prev.min(), nxt.min()) < 0 or max(prev.max(), nxt.max()) >= len(codes)):
        raise IndexError("a step's index is outside the codes")
    nodes, weights = (t.numpy() for t in _hermite_nodes(points))
    entropy = unit_gaussian_entropy(codes.shape[1])
    out = np.empty(len(prev))
    run = lambda s: _compiled(codes, log_weights, means, inv_scales, log_scales, prev[s], nxt[s], nodes, weights,
                              entropy, out[s])
    threads = max(1, min(torch.get_num_threads(), len(prev) // _STEPS_PER_THREAD))
    if threads == 1:
        run(slice(None))
        return out
    from concurrent.futures import ThreadPoolExecutor
    bounds = np.linspace(0, len(prev), threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]))
    return out


def _steps_kl(codes, log_weights, means, inv_scales, log_scales, prev, nxt, nodes, weights, entropy, out):
    """`kl_to_mixture` of codes[nxt[i]] under the mixtures of prev[i], into out[i]: per dimension, -(the sum over
    the nodes of log p(c + node) times the node's weight), p's log-sum-exp taken from its largest term (terms
    `_NEGLIGIBLE` below it left out), the dimensions summed, less q's entropy. It multiplies by the reciprocal
    scale where torch divides (about a fifth faster here; the costs differ from torch's by about 1e-13 either way)."""
    D, M = log_weights.shape[1], log_weights.shape[2]
    terms = np.empty(M)
    for i in range(len(prev)):
        a, b = prev[i], nxt[i]
        total = 0.0
        for d in range(D):
            acc = 0.0
            for p in range(len(nodes)):
                z = codes[b, d] + nodes[p]
                top = -np.inf
                for m in range(M):
                    u = (z - means[a, d, m]) * inv_scales[a, d, m]
                    terms[m] = log_weights[a, d, m] + (-0.5 * u * u - log_scales[a, d, m] - LOG_SQRT_2PI)
                    top = max(top, terms[m])
                if np.isinf(top):
                    top = 0.0
                s = 0.0
                for m in range(M):
                    if terms[m] - top > _NEGLIGIBLE:
                        s += np.exp(terms[m] - top)
                acc += (np.log(s) + top) * weights[p]
            total += -acc
        out[i] = total - entropy


_compiled = None if njit is None else jit(_steps_kl)     # without numba, step_costs prices steps with torch
