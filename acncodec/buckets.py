"""Discretised latents for bits-back coding (docs/DESIGN.md, section 3).

Per latent dimension the real line is cut into 2^b buckets of equal mass under a fixed reference distribution
(normally the unconditional prior's marginal). The table of edges and representative values is computed once,
stored with the model, and loaded on both sides: never re-derived on the decode side. The coder then sends
bucket indices under categoricals: p(bucket | ĉ) from the prior mixture's CDF at the edges, and
q(bucket | x) from the Gaussian CDF of N(c, 1) at the edges. The decoder sees the bucket's representative
value, the reference's median of the bucket.

Probabilities are float64, computed with elementwise operations, components added in a fixed order and each
row normalised on its own, so a row's probabilities do not depend on the other rows of the batch (checked in
tests/test_buckets.py on torch 2.13 CPU; the protocol still uses the same batch shapes on both sides,
docs/DESIGN.md, section 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .prior import Mixture, _float64

#: Smallest probability of a bucket: masses below it (underflow far in a tail, or exact zeros) are raised to
#: it and each row is renormalised. 2^-40 (about 9.1e-13) is far below the 2^-24 resolution of constriction's
#: 32-bit-word categoricals, so it changes no real probability measurably; it keeps every bucket codable and
#: every log finite.
PROBABILITY_FLOOR = 2.0 ** -40
#: Most bisection steps for the inverse CDF (the tolerance rule in `_inverse_cdf` normally stops it first).
BISECTION_STEPS = 100
MAX_BITS = 16
SQRT_HALF = math.sqrt(0.5)
#: Elements per working array in `_bucket_masses` (a few MB: cache-sized chunks are ~3x faster).
CHUNK_ELEMENTS = 1 << 16


def _mixture64(mixture: Mixture) -> Mixture:
    return Mixture(mixture.log_weights.detach().double(), mixture.means.detach().double(),
                   mixture.scales.detach().double())


def _ndtr(x: torch.Tensor) -> torch.Tensor:
    """Standard-normal CDF with full relative precision in the lower tail.

    torch.special.ndtr (torch 2.13 CPU) loses it: it returns 6.106e-16 at -8 (true 6.221e-16) and 0 below
    about -8.3. 0.5 erfc(-x / sqrt 2) is accurate to ~1e-16 relative down to float64 underflow (~ -37.5).
    """
    return 0.5 * torch.special.erfc(-x * SQRT_HALF)


def _bucket_masses(edges: torch.Tensor, log_weights: torch.Tensor, means: torch.Tensor,
                   scales: torch.Tensor) -> torch.Tensor:
    """Mass of each bucket under independent 1-D mixtures: edges (D, E), mixture tensors (R, D, M) -> (R, D, E-1).

    Accurate in both tails. Per component only the tail beyond each edge is computed,
    t = 0.5 erfc(|u| / sqrt 2) with u = (edge - mean) / scale (one erfc per edge and component, full relative
    precision down to underflow), and accumulated by side:
        F(e) = sum_{u <= 0} w t + sum_{u > 0} w (1 - t)      (the CDF, a sum of non-negative terms)
        S(e) = sum_{u <= 0} w (1 - t) + sum_{u > 0} w t      (the survival function, likewise)
    A bucket's mass is F(hi) - F(lo) or S(lo) - S(hi), whichever subtracts the smaller numbers (absolute
    error ~1e-16 F(hi) or ~1e-16 S(lo)), so a bucket far in either tail keeps its relative precision.
    Work is chunked over rows to stay in cache; every operation is elementwise, so a row's result does not
    depend on the chunking or on the other rows, and components are added in a fixed order.
    """
    rows, dim, comps = means.shape
    n_edges = edges.shape[-1]
    weights = log_weights.exp()
    inv = SQRT_HALF / scales
    out = torch.empty(rows, dim, n_edges - 1, dtype=torch.float64)
    step = max(1, CHUNK_ELEMENTS // (dim * n_edges))
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        shape = (r1 - r0, dim, n_edges)
        t_neg, t_pos = torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)
        w_neg, w_pos = torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)
        for m in range(comps):
            arg = (edges - means[r0:r1, :, m, None]) * inv[r0:r1, :, m, None]     # u / sqrt 2
            pos = arg > 0
            w = weights[r0:r1, :, m, None].expand(shape)
            t = torch.special.erfc(arg.abs_()).mul_(0.5).mul_(w)                # w * tail beyond the edge
            zero = torch.zeros((), dtype=torch.float64)
            t_pos += torch.where(pos, t, zero)
            t_neg += torch.where(pos, zero, t)
            w_pos += torch.where(pos, w, zero)
            w_neg += torch.where(pos, zero, w)
        cdf = t_neg + (w_pos - t_pos)
        sf = (w_neg - t_neg) + t_pos
        lower = cdf[..., 1:] <= sf[..., :-1]
        mass = torch.where(lower, cdf[..., 1:] - cdf[..., :-1], sf[..., :-1] - sf[..., 1:])
        out[r0:r1] = mass.clamp_min_(0.0)
    return out


def _floor_and_normalise(mass: np.ndarray) -> np.ndarray:
    mass = np.maximum(mass, PROBABILITY_FLOOR)
    return mass / mass.sum(axis=-1, keepdims=True)


@dataclass
class BucketTable:
    """Per-dimension buckets: `edges` (D, 2^b + 1) with -inf/+inf at the ends, `centres` (D, 2^b)."""

    edges: np.ndarray
    centres: np.ndarray

    def __post_init__(self):
        self.edges = np.asarray(self.edges, dtype=np.float64)
        self.centres = np.asarray(self.centres, dtype=np.float64)
        d, e = self.edges.shape if self.edges.ndim == 2 else (None, None)
        if d is None or e < 3 or (e - 1) & (e - 2) or self.centres.shape != (d, e - 1):
            raise ValueError(f"bucket table needs edges (D, 2^b + 1) and centres (D, 2^b), got "
                             f"{self.edges.shape} and {self.centres.shape}")
        if not (np.all(self.edges[:, 0] == -np.inf) and np.all(self.edges[:, -1] == np.inf)):
            raise ValueError("bucket edges must start at -inf and end at +inf")
        if not np.all(np.diff(self.edges, axis=1) > 0):
            raise ValueError("bucket edges must be strictly increasing")
        if not (np.isfinite(self.centres).all() and np.all(self.centres >= self.edges[:, :-1])
                and np.all(self.centres <= self.edges[:, 1:])):
            raise ValueError("bucket centres must be finite and inside their buckets")

    @property
    def dim(self) -> int:
        return self.edges.shape[0]

    @property
    def buckets(self) -> int:
        return self.centres.shape[1]

    @property
    def bits(self) -> int:
        return int(self.buckets).bit_length() - 1

    @classmethod
    def from_reference(cls, reference: Mixture, bits: int) -> "BucketTable":
        """Buckets of equal mass 2^-b under each dimension's reference mixture (tensors (D, M)).

        Edge k is the reference's inverse CDF at k / 2^b, the centre of bucket k its inverse CDF at
        (k + 1/2) / 2^b (the bucket's median under the reference). Inverse CDFs by bisection in float64
        with a bracket and stopping rule that depend only on the inputs: the same reference always gives the
        same table, bit for bit. Tables for b and b + 1 are nested to within the bisection tolerance.
        """
        bits = int(bits)
        if not 1 <= bits <= MAX_BITS:
            raise ValueError(f"bits must be in 1..{MAX_BITS}, got {bits}")
        ref = _mixture64(reference)
        if ref.means.ndim != 2:
            raise ValueError(f"reference must be a mixture with tensors (D, M), got {tuple(ref.means.shape)}")
        n = 2 ** bits
        targets = torch.arange(1, 2 * n, dtype=torch.float64) / (2 * n)     # j / 2^(b+1), j = 1 .. 2^(b+1)-1
        z = _inverse_cdf(ref, targets)                                      # (D, 2n - 1)
        d = z.shape[0]
        inner = z[:, 1::2]                                                  # k / 2^b, k = 1 .. n - 1
        # Distinct edges even if two quantiles land on the same float (a very narrow component).
        for k in range(1, inner.shape[1]):
            inner[:, k] = np.maximum(inner[:, k], np.nextafter(inner[:, k - 1], np.inf))
        edges = np.concatenate([np.full((d, 1), -np.inf), inner, np.full((d, 1), np.inf)], axis=1)
        centres = np.clip(z[:, 0::2], edges[:, :-1], edges[:, 1:])
        return cls(edges, centres)

    def to_dict(self) -> dict:
        """Tensors only (plus the bit count), for a model file loaded with torch.load(weights_only=True)."""
        return {"bits": self.bits, "edges": torch.from_numpy(self.edges.copy()),
                "centres": torch.from_numpy(self.centres.copy())}

    @classmethod
    def from_dict(cls, d: dict) -> "BucketTable":
        table = cls(_float64(d["edges"]), _float64(d["centres"]))
        if "bits" in d and int(d["bits"]) != table.bits:
            raise ValueError(f"bucket table says {int(d['bits'])} bits but has {table.buckets} buckets")
        return table

    def values(self, indices: np.ndarray) -> np.ndarray:
        """Representative values of bucket indices (..., D) -> float64 (..., D)."""
        indices = np.asarray(indices)
        return np.take_along_axis(np.broadcast_to(self.centres, indices.shape + (self.buckets,)),
                                  indices[..., None], axis=-1)[..., 0]

    def index_of(self, z: np.ndarray) -> np.ndarray:
        """Bucket index of each value z (..., D): the k with edges[k] <= z < edges[k + 1]."""
        z = np.asarray(z, dtype=np.float64)
        out = np.empty(z.shape, dtype=np.int64)
        for d in range(self.dim):
            out[..., d] = np.searchsorted(self.edges[d], z[..., d], side="right") - 1
        return out


def _inverse_cdf(ref: Mixture, targets: torch.Tensor) -> np.ndarray:
    """z with F_d(z) = target for each dimension d and target: (D, T) float64, by bisection.

    The bracket for target p is [min_m, max_m] of the components' own p-quantiles mu_m + sigma_m Phi^-1(p):
    at the lower end every component's CDF is <= p, at the upper end >= p, so the mixture's quantile lies
    between. Bisection stops when every bracket is narrower than 2^-50 (1 + |z|) or after BISECTION_STEPS;
    both rules depend only on the inputs, so the result is deterministic.
    """
    own = ref.means.unsqueeze(1) + ref.scales.unsqueeze(1) * torch.special.ndtri(targets)[:, None]  # (D, T, M)
    lo, hi = own.min(-1).values, own.max(-1).values
    weights = ref.log_weights.exp().unsqueeze(1)                           # (D, 1, M)
    means, scales = ref.means.unsqueeze(1), ref.scales.unsqueeze(1)
    for _ in range(BISECTION_STEPS):
        if bool(torch.all(hi - lo <= 2.0 ** -50 * (1.0 + hi.abs()))):
            break
        mid = lo + 0.5 * (hi - lo)
        cdf = (weights * _ndtr((mid.unsqueeze(-1) - means) / scales)).sum(-1)
        below = cdf < targets
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return hi.numpy().copy()     # the upper end: F(hi) >= target


def prior_probabilities(table: BucketTable, mixture: Mixture) -> np.ndarray:
    """Mass of each bucket under a batched mixture (tensors (..., D, M)): (..., D, 2^b) float64.

    The mixture's CDF differences at the edges, computed so that tail buckets keep their relative precision
    (`_bucket_masses`); then masses below PROBABILITY_FLOOR are raised to it and each row is renormalised
    to sum to 1.
    """
    mix = _mixture64(mixture)
    if mix.means.shape[-2] != table.dim:
        raise ValueError(f"mixture has {mix.means.shape[-2]} dimensions, bucket table {table.dim}")
    batch, comps = mix.means.shape[:-2], mix.means.shape[-1]
    flat = [t.reshape(-1, table.dim, comps) for t in (mix.log_weights, mix.means, mix.scales)]
    mass = _bucket_masses(torch.from_numpy(table.edges), *flat)
    return _floor_and_normalise(mass.reshape(*batch, table.dim, table.buckets).numpy())


def posterior_probabilities(table: BucketTable, codes: np.ndarray) -> np.ndarray:
    """Mass of each bucket under q = N(c, 1) per dimension, codes (..., D): (..., D, 2^b) float64.

    Gaussian CDF differences at the edges, using the survival function above the code, so a bucket far in
    either tail keeps full relative precision down to float64 underflow, about 1e-308 (`_bucket_masses`);
    then the same floor and renormalisation as `prior_probabilities`.
    """
    c = torch.as_tensor(np.asarray(codes), dtype=torch.float64)
    if c.shape[-1] != table.dim:
        raise ValueError(f"codes have {c.shape[-1]} dimensions, bucket table {table.dim}")
    flat = c.reshape(-1, table.dim, 1)
    mass = _bucket_masses(torch.from_numpy(table.edges), torch.zeros_like(flat), flat, torch.ones_like(flat))
    return _floor_and_normalise(mass.reshape(*c.shape, table.buckets).numpy())


def discretised_kl(q_probs: np.ndarray, p_probs: np.ndarray) -> np.ndarray:
    """KL(Q || P) between bucket distributions, summed over dimensions: (..., D, 2^b) -> (...,) in nats.

    The expected net cost of bits-back coding the bucket indices (pop under P, push back under Q), to set
    against the continuous KL(q || p); by the data-processing inequality it is never larger.
    """
    q = np.asarray(q_probs, dtype=np.float64)
    p = np.asarray(p_probs, dtype=np.float64)
    if q.shape != p.shape:
        raise ValueError(f"shapes differ: {q.shape} and {p.shape}")
    return np.sum(q * (np.log(q) - np.log(p)), axis=(-2, -1))


@dataclass
class HeadTables:
    """The unconditional mixture p(z) over buckets, which codes every chain head: component weights (K,) and
    each component's bucket masses (K, D, 2^b). Computed once when the model is made (`from_prior`) and
    stored in the model file, so both sides read the same numbers instead of re-deriving them."""

    weights: np.ndarray
    probs: np.ndarray

    def __post_init__(self):
        self.weights = np.asarray(self.weights, dtype=np.float64)
        self.probs = np.asarray(self.probs, dtype=np.float64)
        if self.weights.ndim != 1 or self.probs.ndim != 3 or self.probs.shape[0] != len(self.weights):
            raise ValueError(f"head tables need weights (K,) and probs (K, D, buckets), got "
                             f"{self.weights.shape} and {self.probs.shape}")

    @classmethod
    def from_prior(cls, prior, table: BucketTable) -> "HeadTables":
        """prior: the UnconditionalPrior (diagonal Gaussian mixture over the whole latent vector)."""
        if getattr(prior, "full", False):
            raise ValueError("a full-covariance p(z) is coded by the exact numerics only: quantise the model")
        k = prior.components
        components = Mixture(log_weights=torch.zeros(k, prior.means.shape[1], 1, dtype=torch.float64),
                             means=torch.from_numpy(np.asarray(prior.means, np.float64))[..., None],
                             scales=torch.from_numpy(np.sqrt(np.asarray(prior.variances, np.float64)))[..., None])
        return cls(np.asarray(prior.weights, np.float64), prior_probabilities(table, components))

    def to_dict(self) -> dict:
        return {"weights": torch.from_numpy(self.weights.copy()), "probs": torch.from_numpy(self.probs.copy())}

    @classmethod
    def from_dict(cls, d: dict) -> "HeadTables":
        return cls(_float64(d["weights"]), _float64(d["probs"]))
