"""Priors over the latent z.

`ConditionalPrior` is the ACN prior p(z|ĉ): an MLP from a neighbour's code to an independent Gaussian mixture per
latent dimension. `UnconditionalPrior` is p(z), a Gaussian mixture over the whole latent vector with diagonal or
full covariances, fitted with EM to the training codes (see `unconditional.py`); it codes chain heads and gives
the unordered cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
MIN_SCALE = 1e-3  # keeps mixture components from collapsing to a spike during training


@dataclass
class Mixture:
    """Independent 1-D mixtures, batched: each tensor is (..., D, M)."""

    log_weights: torch.Tensor
    means: torch.Tensor
    scales: torch.Tensor

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) per latent dimension, (..., D)."""
        u = (z.unsqueeze(-1) - self.means) / self.scales
        comp = -0.5 * u * u - torch.log(self.scales) - LOG_SQRT_2PI
        return torch.logsumexp(self.log_weights + comp, dim=-1)

    def cdf(self, z: torch.Tensor) -> torch.Tensor:
        """Mixture CDF at z (..., D) -> (..., D)."""
        u = (z.unsqueeze(-1) - self.means) / self.scales
        return (self.log_weights.exp() * torch.special.ndtr(u)).sum(-1)


class ConditionalPrior(nn.Module):
    """p(z|ĉ): three tanh layers with skips from the input to every hidden layer and from each to the output."""

    def __init__(self, latent_dim: int, components: int, hidden: int = 512):
        super().__init__()
        self.latent_dim, self.components = latent_dim, components
        self.h1 = nn.Linear(latent_dim, hidden)
        self.h2 = nn.Linear(hidden + latent_dim, hidden)
        self.h3 = nn.Linear(hidden + latent_dim, hidden)
        self.out = nn.Linear(latent_dim + 3 * hidden, latent_dim * components * 3)

    def forward(self, code: torch.Tensor) -> Mixture:
        h1 = torch.tanh(self.h1(code))
        h2 = torch.tanh(self.h2(torch.cat([h1, code], -1)))
        h3 = torch.tanh(self.h3(torch.cat([h2, code], -1)))
        raw = self.out(torch.cat([code, h1, h2, h3], -1))
        raw = raw.view(*code.shape[:-1], self.latent_dim, self.components, 3)
        return Mixture(log_weights=F.log_softmax(raw[..., 0], -1), means=raw[..., 1],
                       scales=F.softplus(raw[..., 2]) + MIN_SCALE)


def _float64(v) -> np.ndarray:
    """A stored array (a tensor from a torch-saved model file, or an array) as a float64 numpy copy."""
    return np.array(v.detach().cpu().numpy() if hasattr(v, "detach") else v, dtype=np.float64)


@dataclass
class UnconditionalPrior:
    """Gaussian mixture over the full latent vector (K components): diagonal covariances, or full ones
    (`covariances` (K, D, D), with `variances` their diagonals). A full p(z) fits the codes better (held out,
    bench/results/unconditional-fit-*.md) and is coded by the exact numerics only (`coding/exact_tables.py`,
    `GaussianHead`)."""

    weights: np.ndarray    # (K,)
    means: np.ndarray      # (K, D)
    variances: np.ndarray  # (K, D)
    covariances: np.ndarray | None = None   # (K, D, D), or None: diagonal

    def __post_init__(self):
        if self.covariances is not None:
            self.covariances = np.asarray(self.covariances, np.float64)
            k, d = np.shape(self.means)
            if self.covariances.shape != (k, d, d):
                raise ValueError(f"covariances of shape {self.covariances.shape} for {k} components of {d} "
                                 "dimensions")
            self.variances = np.diagonal(self.covariances, axis1=1, axis2=2).copy()

    @property
    def components(self) -> int:
        return len(self.weights)

    @property
    def full(self) -> bool:
        return self.covariances is not None

    def to_dict(self) -> dict:
        out = {"weights": torch.from_numpy(np.asarray(self.weights, np.float64)),
               "means": torch.from_numpy(np.asarray(self.means, np.float64)),
               "variances": torch.from_numpy(np.asarray(self.variances, np.float64))}
        if self.full:   # a diagonal prior's dict (and so its model's hash) is what it was before full ones
            out["covariances"] = torch.from_numpy(self.covariances.copy())
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "UnconditionalPrior":
        covariances = _float64(d["covariances"]) if "covariances" in d else None
        return cls(*(_float64(d[k]) for k in ("weights", "means", "variances")), covariances)

    def cholesky(self) -> torch.Tensor:
        """Lower-triangular factors (K, D, D) of the full covariances (float64): Σ_k = L_k L_kᵀ."""
        return torch.linalg.cholesky(torch.from_numpy(self.covariances))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) for z (..., D), joint over dimensions, in float64."""
        z = z.double()
        means = torch.from_numpy(np.asarray(self.means, np.float64))
        log_w = torch.log(torch.from_numpy(np.asarray(self.weights, np.float64)))
        if self.full:
            factors = self.cholesky()
            flat = z.reshape(-1, z.shape[-1])
            terms = []
            for k in range(self.components):   # one whitening per component: no (N, K, D) temporaries
                white = torch.linalg.solve_triangular(factors[k], (flat - means[k]).T, upper=False).T
                terms.append(-0.5 * (white * white).sum(-1) - torch.log(torch.diagonal(factors[k])).sum())
            joint = torch.stack(terms, -1) - z.shape[-1] * LOG_SQRT_2PI + log_w
            return torch.logsumexp(joint, dim=-1).reshape(z.shape[:-1])
        precision = 1.0 / torch.from_numpy(np.asarray(self.variances, np.float64))
        # Σ_d (z_d - μ_kd)² / σ²_kd expanded into two matrix products: no (..., K, D) temporaries.
        quad = (z * z) @ precision.T - 2.0 * z @ (means * precision).T + (means * means * precision).sum(-1)
        const = -0.5 * torch.log(precision).neg().sum(-1) - z.shape[-1] * LOG_SQRT_2PI
        return torch.logsumexp(log_w + const - 0.5 * quad, dim=-1)

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """n draws (n, D) float64: a component by weight, then a Gaussian."""
        weights = torch.from_numpy(np.asarray(self.weights, np.float64))
        comp = (torch.multinomial(weights, n, replacement=True, generator=gen) if n
                else torch.zeros(0, dtype=torch.long))
        means = torch.from_numpy(np.asarray(self.means, np.float64))[comp]
        eps = torch.randn(means.shape, generator=gen, dtype=torch.float64)
        if self.full:
            return means + (self.cholesky()[comp] @ eps[..., None])[..., 0]
        return means + torch.from_numpy(np.sqrt(np.asarray(self.variances, np.float64)))[comp] * eps

    def marginal(self) -> Mixture:
        """Per-dimension marginals as independent 1-D mixtures, (D, K) each."""
        log_w = torch.log(torch.from_numpy(self.weights)).expand(self.means.shape[1], -1)
        return Mixture(log_weights=log_w.clone(), means=torch.from_numpy(self.means.T.copy()),
                       scales=torch.from_numpy(np.sqrt(self.variances.T)))
