"""Integer tables and integer-only probability computations for the exact numerics ("exact1").

Every probability the codec hands to constriction under "exact1" is computed here from integers with integer
operations only (numpy int64 adds, multiplies, floor shifts, floor divisions, comparisons; Python ints where
products would overflow). Integer arithmetic has one correct result, whatever the CPU, SIMD width, library,
thread count or batch size, so sender and receiver compute the same masses on any machine. docs/NUMERICS.md
gives the formats and the argument in full.

Transcendental functions (the Gaussian CDF, exp, 1 / softplus) enter only through `LookupTable`s: their
values are computed once, in float, when a model is quantised (`LatentTables.build`, `PixelTables.build`),
rounded to integers and stored in the model file. Coding never calls them again: it loads the stored integers.

Fixed-point conventions shared with the quantised networks (acncodec/quantize.py): an int v "at F" means the
real value v / 2^F.

- codes E(x): at CODE_FRAC; the prior network's raw outputs (weight logit, scale pre-activation): at RAW_FRAC,
  its means at CODE_FRAC; pixel logits: at LOGIT_FRAC.
- masses: each row of a distribution is int64 masses m_i >= 1 summing to exactly 2^MASS_BITS, so m_i / 2^MASS_BITS
  is an exact float64 (`to_constriction`); what constriction does with those floats is in `to_constriction`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

#: Codes E(x) are ints at 2^-CODE_FRAC; so are bucket representative values (`latent_values`).
CODE_FRAC = 12
#: The prior network's raw weight logits and scale pre-activations are ints at 2^-RAW_FRAC (means: CODE_FRAC).
RAW_FRAC = 12
#: Pixel logits from the decoder are ints at 2^-LOGIT_FRAC.
LOGIT_FRAC = 12
#: Every row of masses sums to exactly 2^MASS_BITS. At most 29, so that constriction's own arithmetic on
#: m / 2^MASS_BITS stays exact (see `to_constriction`); above its 24-bit precision, so our rounding is finer
#: than constriction's.
MASS_BITS = 28

#: Bucket edges and the Gaussian's argument u = (edge - mean) / scale are ints at 2^-EDGE_FRAC: finer than codes,
#: so that the narrow central buckets of a 2^14-bucket table stay distinct.
EDGE_FRAC = 20
#: Finite edges and means are clamped to +-EDGE_LIMIT (codes live within a few units of 0).
EDGE_LIMIT = 64
#: The standard-normal CDF table: values at 2^-CDF_BITS, grid step 2^-PHI_GRID, on [-PHI_RANGE, PHI_RANGE]
#: (Phi(-8) ~ 6e-16, below one unit of 2^-30; outside the range the table's end values hold).
CDF_BITS, PHI_GRID, PHI_RANGE = 30, 10, 8
#: 1 / (softplus(s) + MIN_SCALE) at 2^-INV_FRAC for s on [-INV_RANGE, INV_RANGE], grid step 2^-INV_GRID.
INV_FRAC, INV_GRID, INV_RANGE = 16, 8, 16
#: exp(x) at 2^-EXP_BITS for x on [-EXP_RANGE, 0], grid step 2^-EXP_GRID; exp(-24) ~ 4e-11, far below
#: 2^-MASS_BITS, so clamping there changes no mass.
EXP_BITS, EXP_GRID, EXP_RANGE = 32, 8, 24
#: Mixture component weights are exp(logit - max logit) at 2^-WEIGHT_BITS (the largest is exactly 2^WEIGHT_BITS):
#: fine enough that a component 14 nats below the largest still has a weight within a few % (2^-16 was not).
#: Weighted masses stay below M * 2^(WEIGHT_BITS + CDF_BITS), so at most MAX_COMPONENTS components.
WEIGHT_BITS = 24
MAX_COMPONENTS = 1 << (62 - WEIGHT_BITS - CDF_BITS)
#: Float probabilities of the head tables are scaled by 2^HEAD_RAW_BITS and rounded before normalisation.
HEAD_RAW_BITS = 34

#: A full-covariance head (`GaussianHead`): regression coefficients at 2^-COEF_FRAC, each below 2^COEF_LIMIT_BITS
#: in magnitude; inverse conditional scales at 2^-HEAD_INV_FRAC, below 2^HEAD_INV_LIMIT_BITS (so every product
#: below fits int64: |coef * value| < 2^(COEF_LIMIT_BITS + 18), |(edge - mean) * inv| < 2^(28 + HEAD_INV_LIMIT_BITS)).
COEF_FRAC, COEF_LIMIT_BITS = 20, 26
HEAD_INV_FRAC, HEAD_INV_LIMIT_BITS = 24, 33

_INT = np.int64
_BIAS = 1 << 62
#: Tables spanning fewer input values than this are expanded to one value per input when loaded (2 MiB at most).
DENSE_LIMIT = 1 << 18
_MAX_PRODUCT_BITS = 62      # r * F < 2^62 in `normalise_masses`: no int64 overflow


def floor_shift(x: np.ndarray, shift: int) -> np.ndarray:
    """floor(x / 2^shift) for int64 |x| < 2^62, shifting only non-negative numbers: C leaves >> of a negative
    number to the compiler, and this result should not depend even on that."""
    return ((x + _BIAS) >> shift) - (_BIAS >> shift)


# ----------------------------------------------------------------------------------------------------------------
# Lookup tables
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class LookupTable:
    """A function sampled at integer grid points, evaluated on integer inputs by integer linear interpolation.

    Input x is an int at 2^-in_frac; the grid points are start + k * 2^(in_frac - grid_frac) in those units,
    k = 0 .. len(values) - 1, and `values` are ints (at whatever output format the builder chose). Inputs
    outside the grid take the end values. Between grid points:
        f(x) = v[k] + floor((v[k+1] - v[k]) * r / 2^s),  s = in_frac - grid_frac, r = x - grid point k in [0, 2^s)
    (at the last grid point r = 0, so f = v[N-1]).
    so a non-decreasing table gives a non-decreasing function, and every step is exact int64 arithmetic
    (|v[k+1] - v[k]| * 2^s stays below 2^62: checked when the table is made).
    """

    values: np.ndarray     # (N,) int64
    start: int             # first grid point, int at in_frac
    in_frac: int
    grid_frac: int

    def __post_init__(self):
        self.values = np.ascontiguousarray(self.values, dtype=_INT)
        self.start, self.in_frac, self.grid_frac = int(self.start), int(self.in_frac), int(self.grid_frac)
        if self.values.ndim != 1 or len(self.values) < 2 or not 0 <= self.grid_frac <= self.in_frac:
            raise ValueError("lookup table needs >= 2 values and 0 <= grid_frac <= in_frac")
        steps = np.diff(self.values)
        if int(np.abs(steps).max()).bit_length() + (self.in_frac - self.grid_frac) >= 62:
            raise ValueError("lookup table steps too large for exact int64 interpolation")
        # v[k+1] - v[k] per knot, 0 after the last: the last grid point then reads v[N-1] + 0 without a special case.
        self._steps = np.append(steps, 0)
        self._span = self.stop - self.start
        # A table over few enough inputs is expanded once into every input's value (by the same integer
        # interpolation, so the function is unchanged): one gather per call instead of six operations.
        self._dense = self._interpolate(np.arange(self._span + 1, dtype=_INT)) if self._span < DENSE_LIMIT else None

    @property
    def dense(self) -> np.ndarray | None:
        """Every input's value from `start` on (None for a table over too many inputs to expand)."""
        return self._dense

    @classmethod
    def build(cls, fn: Callable[[float], float], lo: float, hi: float, in_frac: int, grid_frac: int,
              out_bits: int) -> "LookupTable":
        """round(fn(x) * 2^out_bits) at x = lo, lo + 2^-grid_frac, ..., hi. Float math: quantisation time only."""
        n = int(round((hi - lo) * 2 ** grid_frac)) + 1
        xs = [lo + k / 2 ** grid_frac for k in range(n)]
        values = np.array([int(round(fn(x) * 2 ** out_bits)) for x in xs], dtype=_INT)
        return cls(values, int(round(lo * 2 ** in_frac)), in_frac, grid_frac)

    @property
    def stop(self) -> int:
        """Last grid point, int at in_frac."""
        return self.start + ((len(self.values) - 1) << (self.in_frac - self.grid_frac))

    def interpolation(self) -> tuple:
        """The table as a compiled reader interpolates it (`coding/kernels._table`): the values, each knot's step
        to the next, the first grid point, the span of inputs and the shift in_frac - grid_frac."""
        return self.values, self._steps, self.start, self._span, self.in_frac - self.grid_frac

    def __call__(self, x: np.ndarray) -> np.ndarray:
        offset = np.minimum(np.maximum(np.asarray(x, dtype=_INT) - self.start, 0), self._span)
        return self._interpolate(offset) if self._dense is None else self._dense[offset]

    def _interpolate(self, offset: np.ndarray) -> np.ndarray:
        shift = self.in_frac - self.grid_frac
        k = offset >> shift
        return self.values[k] + floor_shift(self._steps[k] * (offset & ((1 << shift) - 1)), shift)

    def to_dict(self, prefix: str) -> dict:
        return {f"{prefix}.values": self.values.copy(),
                f"{prefix}.format": np.array([self.start, self.in_frac, self.grid_frac], dtype=_INT)}

    @classmethod
    def from_dict(cls, d: dict, prefix: str) -> "LookupTable":
        start, in_frac, grid_frac = (int(v) for v in d[f"{prefix}.format"].tolist())
        return cls(_ints(d[f"{prefix}.values"]), start, in_frac, grid_frac)


def _ints(t) -> np.ndarray:
    if hasattr(t, "detach"):   # a tensor, from a model file of format 3
        t = t.detach().cpu().numpy()
    t = np.asarray(t)
    if t.dtype != _INT:
        raise ValueError(f"integer table stored as {t.dtype}, expected int64")
    return t.copy()


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def phi_table() -> LookupTable:
    """Standard-normal CDF: input u at EDGE_FRAC, output at CDF_BITS."""
    return LookupTable.build(_phi, -PHI_RANGE, PHI_RANGE, EDGE_FRAC, PHI_GRID, CDF_BITS)


def exp_table(in_frac: int) -> LookupTable:
    """exp(x) for x <= 0: input at in_frac, output at EXP_BITS."""
    return LookupTable.build(math.exp, -EXP_RANGE, 0.0, in_frac, EXP_GRID, EXP_BITS)


def inv_scale_table(min_scale: float) -> LookupTable:
    """1 / (softplus(s) + min_scale): input s at RAW_FRAC, output at INV_FRAC (the prior's scale, inverted)."""
    def inv(s):
        softplus = s + math.log1p(math.exp(-s)) if s > 0 else math.log1p(math.exp(s))
        return 1.0 / (softplus + min_scale)
    return LookupTable.build(inv, -INV_RANGE, INV_RANGE, RAW_FRAC, INV_GRID, INV_FRAC)


# ----------------------------------------------------------------------------------------------------------------
# Masses
# ----------------------------------------------------------------------------------------------------------------

def raw_shift(raw_bits: int) -> int:
    """How far `normalise_masses` shifts weights below 2^raw_bits, so that r_i F fits int64."""
    return max(0, int(raw_bits) - (_MAX_PRODUCT_BITS - MASS_BITS))


def normalise_masses(raw: np.ndarray, raw_bits: int) -> np.ndarray:
    """Integer masses from non-negative integer weights raw (..., n), each < 2^raw_bits: (..., n) int64, every
    entry >= 1, every row summing to exactly 2^MASS_BITS.

    raw is first floor-shifted so that products below fit int64 (the shift depends on raw_bits only, not on the
    data); with R the row sum and F = 2^MASS_BITS - n,
        m_i = 1 + floor(r_i F / R),
    which sums to between 2^MASS_BITS - n + 1 and 2^MASS_BITS; the remainder goes to the row's largest entry
    (the first one on a tie). A row that shifts to all zeros becomes uniform.
    """
    raw = np.asarray(raw, dtype=_INT)
    n = raw.shape[-1]
    if n >= 2 ** MASS_BITS:
        raise ValueError(f"{n} symbols do not fit masses summing to 2^{MASS_BITS}")
    r = raw >> raw_shift(raw_bits)
    total = r.sum(-1, keepdims=True)
    empty = total == 0
    if empty.any():
        r = np.where(empty, 1, r)
        total = np.where(empty, n, total)
    free = (1 << MASS_BITS) - n
    masses = 1 + (r * free) // total
    remainder = (1 << MASS_BITS) - masses.sum(-1, keepdims=True)
    top = np.argmax(masses, axis=-1)[..., None]
    np.put_along_axis(masses, top, np.take_along_axis(masses, top, -1) + remainder, -1)
    return masses


def to_constriction(masses: np.ndarray) -> np.ndarray:
    """The float64 probabilities handed to constriction: m / 2^MASS_BITS, exact (an integer below 2^53 times a
    power of two).

    What constriction 0.4 and 0.5 do with them (src/stream/model/categorical.rs `fast_quantized_cdf`,
    lazy_contiguous.rs; `Categorical(perfect=False)` and `Bernoulli(perfect=False)`, the latter as the
    categorical [1 - p, p]): normalisation Z = sequential float sum of the row, scale = (2^24 - n) / Z, and the
    quantised left cumulative of symbol i is trunc(C_i * scale) + i, C_i the sequential float sum of the masses
    before i. With our inputs every one of those float operations is exact: partial sums are multiples of
    2^-MASS_BITS below 1 (so Z = 1 exactly, and 1 - p is exact), scale = 2^24 - n is an integer, and
    C_i * scale = c_i (2^24 - n) / 2^MASS_BITS has a numerator below 2^(MASS_BITS + 24) <= 2^53. So
    constriction's quantised distribution is the exact function floor(c_i (2^24 - n) / 2^MASS_BITS) + i of our
    integers: no rounding anywhere, hence the same on every machine (and would be even without the exactness,
    as Rust performs these IEEE-754 operations one by one, without fused multiply-adds or reassociation).
    """
    return np.ldexp(np.asarray(masses, dtype=np.float64), -MASS_BITS)


def _edges_int(edges: np.ndarray) -> np.ndarray:
    """Finite bucket edges (D, 2^b + 1) -> ints at EDGE_FRAC; the infinite ends are kept as sentinels by the
    callers (their CDF is 0 and 1 exactly)."""
    inner = np.clip(np.asarray(edges, np.float64)[:, 1:-1], -EDGE_LIMIT + 1, EDGE_LIMIT - 1)
    q = np.round(np.ldexp(inner, EDGE_FRAC)).astype(_INT)
    if q.shape[1] > 1 and not np.all(np.diff(q, axis=1) > 0):
        raise ValueError(f"bucket edges closer than 2^-{EDGE_FRAC}: too many buckets for the exact numerics")
    return q


def _cdf_masses(phi: LookupTable, u: np.ndarray) -> np.ndarray:
    """Bucket masses at CDF_BITS from the Gaussian argument u (..., E) at the inner edges (E = 2^b - 1):
    (..., E + 1), CDF 0 below the first bucket and exactly 2^CDF_BITS above the last."""
    cdf = phi(u)
    shape = cdf.shape[:-1] + (1,)
    cdf = np.concatenate([np.zeros(shape, _INT), cdf, np.full(shape, 1 << CDF_BITS, _INT)], axis=-1)
    return np.diff(cdf, axis=-1)


@dataclass
class GaussianHead:
    """A head mixture with full covariances, in integers: component k's Gaussian N(mu_k, Sigma_k) written as a
    chain over dimensions, z_d given z_<d ~ N(m_kd, s_kd^2) with

        m_kd = offset_kd + sum_{e<d} coef_kde z_e,

    s_kd the diagonal of Sigma_k's Cholesky factor. On buckets, z_e is bucket e's representative value and
    P_kd(bucket i | the buckets before d) comes from an integer CDF over the n buckets,

        C(0) = 0,  C(i) = i + floor(Phi(u_i) F / 2^CDF_BITS) (inner edges i = 1..n-1),  C(n) = 2^MASS_BITS,

    u_i = (edge_i - m_kd) / s_kd, F = 2^MASS_BITS - n; bucket i's mass is C(i + 1) - C(i) >= 1. One bucket's mass
    needs only the Phi values at its two edges, so the posterior over components (K x D masses a datum) stays
    cheap; `normalise_masses` would need every bucket of every row.

    offsets (K, D) at EDGE_FRAC; coefs (K, D, D) at COEF_FRAC, strictly lower triangular (m_kd reads only the
    dimensions before d: the receiver decodes them first); inv_scales (K, D) = 1 / s_kd at HEAD_INV_FRAC.
    """

    offsets: np.ndarray
    coefs: np.ndarray
    inv_scales: np.ndarray

    def __post_init__(self):
        self.offsets, self.coefs, self.inv_scales = _ints(self.offsets), _ints(self.coefs), _ints(self.inv_scales)
        k, d = self.offsets.shape
        if self.coefs.shape != (k, d, d) or self.inv_scales.shape != (k, d):
            raise ValueError("full-covariance head tables have inconsistent shapes")
        if np.any(np.triu(self.coefs) != 0) or np.any(np.abs(self.coefs) >= 1 << COEF_LIMIT_BITS) \
                or np.any(self.inv_scales < 1) or np.any(self.inv_scales >= 1 << HEAD_INV_LIMIT_BITS) \
                or np.any(np.abs(self.offsets) > EDGE_LIMIT << EDGE_FRAC):
            raise ValueError("full-covariance head tables out of range")

    @classmethod
    def build(cls, prior) -> "GaussianHead":
        """From a full-covariance UnconditionalPrior (quantisation time: float math allowed here)."""
        factors = prior.cholesky().numpy()                                    # (K, D, D), Sigma = L L^T
        diag = np.diagonal(factors, axis1=1, axis2=2)                         # s_kd
        # eps = L^-1 (z - mu); eps_d s_kd = z_d - mu_d - sum_{e<d} A_de (z_e - mu_e) with A = I - diag(s) L^-1.
        coefs = np.tril(np.eye(factors.shape[1]) - diag[..., None] * np.linalg.inv(factors), k=-1)
        offsets = prior.means - np.einsum("kde,ke->kd", coefs, prior.means)
        coefs_int = np.round(np.ldexp(coefs, COEF_FRAC)).astype(_INT)
        if np.any(np.abs(coefs_int) >= 1 << COEF_LIMIT_BITS):
            raise ValueError("full-covariance p(z) has regression coefficients too large for the exact numerics")
        inv = np.round(np.ldexp(1.0 / np.maximum(diag, 2.0 ** (HEAD_INV_FRAC - HEAD_INV_LIMIT_BITS + 1)),
                                HEAD_INV_FRAC)).astype(_INT)
        offsets = np.clip(offsets, -EDGE_LIMIT, EDGE_LIMIT)
        return cls(np.round(np.ldexp(offsets, EDGE_FRAC)).astype(_INT), coefs_int, np.maximum(inv, 1))

    def means(self, values: np.ndarray) -> np.ndarray:
        """m (B, K, D) at EDGE_FRAC of every component given representative values (B, D) at CODE_FRAC."""
        # int64 einsum: integer multiply-adds, exact (|sum| < 2^54), without a (B, K, D, D) temporary
        sums = np.einsum("kde,be->bkd", self.coefs, np.asarray(values, dtype=_INT))
        return self._finish(self.offsets[None], sums)

    def mean(self, values: np.ndarray, ks: np.ndarray, d: int) -> np.ndarray:
        """m (B,) of dimension d for component ks[b] of each row (the only one a decoding step needs)."""
        sums = np.einsum("be,be->b", self.coefs[ks, d], np.asarray(values, dtype=_INT))
        return self._finish(self.offsets[ks, d], sums)

    @staticmethod
    def _finish(offsets: np.ndarray, sums: np.ndarray) -> np.ndarray:
        m = offsets + floor_shift(sums, CODE_FRAC + COEF_FRAC - EDGE_FRAC)
        return np.clip(m, -EDGE_LIMIT << EDGE_FRAC, EDGE_LIMIT << EDGE_FRAC)

    def to_dict(self) -> dict:
        return {"head_offsets": self.offsets.copy(), "head_coefs": self.coefs.copy(),
                "head_inv_scales": self.inv_scales.copy()}


def _chain_cdf(phi: LookupTable, edges: np.ndarray, index: np.ndarray, means: np.ndarray, inv: np.ndarray,
               buckets: int) -> np.ndarray:
    """C(i) of `GaussianHead` at inner edge i = index (1..n-1), whose value is `edges` (at EDGE_FRAC)."""
    u = floor_shift((edges - means) * inv, HEAD_INV_FRAC)
    return index + ((phi(u) * ((1 << MASS_BITS) - buckets)) >> CDF_BITS)


@dataclass
class LatentTables:
    """Everything the exact latent probabilities need, as integers: bucket edges (D, 2^b - 1) (inner ones, at
    EDGE_FRAC), representative values (D, 2^b) at CODE_FRAC, the Phi / inverse-scale / exp tables, and the head
    tables: integer component weights (K,) and either per-component bucket masses (K, D, 2^b), each summing to
    2^MASS_BITS (a diagonal p(z)), or `head_full`, a `GaussianHead` (a full-covariance one)."""

    edges: np.ndarray
    centres: np.ndarray
    phi: LookupTable
    inv_scale: LookupTable
    exp: LookupTable
    head_weights: np.ndarray
    head_masses: np.ndarray | None
    head_full: GaussianHead | None = None

    def __post_init__(self):
        self.edges, self.centres = _ints(self.edges), _ints(self.centres)
        self.head_weights = _ints(self.head_weights)
        d, n = self.centres.shape
        if (self.head_masses is None) == (self.head_full is None):
            raise ValueError("latent tables need exactly one head: diagonal masses or a full-covariance one")
        if self.head_full is None:
            self.head_masses = _ints(self.head_masses)
            head_shape, want = self.head_masses.shape, (len(self.head_weights), d, n)
        else:
            head_shape, want = self.head_full.offsets.shape, (len(self.head_weights), d)
        if self.edges.shape != (d, n - 1) or head_shape != want:
            raise ValueError("latent tables have inconsistent shapes")

    @property
    def dim(self) -> int:
        return self.centres.shape[0]

    @property
    def buckets(self) -> int:
        return self.centres.shape[1]

    @classmethod
    def build(cls, bucket_table, unconditional, bits: int | None = None, min_scale: float | None = None) \
            -> "LatentTables":
        """From the float BucketTable and UnconditionalPrior (quantisation time: float math allowed here).
        `bits` must match the table's when given; min_scale defaults to the prior network's MIN_SCALE."""
        from ..buckets import HeadTables
        from ..prior import MIN_SCALE
        if bits is not None and int(bits) != bucket_table.bits:
            raise ValueError(f"bucket table has {bucket_table.bits} bits, asked for {bits}")
        centres = np.clip(bucket_table.centres, -EDGE_LIMIT + 1, EDGE_LIMIT - 1)
        weights = np.asarray(unconditional.weights, np.float64)
        weight_raw = np.round(np.ldexp(weights / weights.sum(), HEAD_RAW_BITS)).astype(_INT)
        head_masses = head_full = None
        if getattr(unconditional, "full", False):
            head_full = GaussianHead.build(unconditional)
        else:
            head = HeadTables.from_prior(unconditional, bucket_table)
            head_masses = normalise_masses(np.round(np.ldexp(head.probs, HEAD_RAW_BITS)).astype(_INT),
                                           HEAD_RAW_BITS + 1)
        return cls(edges=_edges_int(bucket_table.edges),
                   centres=np.round(np.ldexp(centres, CODE_FRAC)).astype(_INT),
                   phi=phi_table(), inv_scale=inv_scale_table(MIN_SCALE if min_scale is None else min_scale),
                   exp=exp_table(RAW_FRAC),
                   head_weights=normalise_masses(weight_raw, HEAD_RAW_BITS + 1),
                   head_masses=head_masses, head_full=head_full)

    def to_dict(self) -> dict:
        """Arrays only, flat string keys (the model file stores them)."""
        out = {"edges": self.edges.copy(), "centres": self.centres.copy(), "head_weights": self.head_weights.copy()}
        out.update({"head_masses": self.head_masses.copy()} if self.head_full is None else self.head_full.to_dict())
        for name in ("phi", "inv_scale", "exp"):
            out.update(getattr(self, name).to_dict(name))
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "LatentTables":
        full = GaussianHead(d["head_offsets"], d["head_coefs"], d["head_inv_scales"]) if "head_offsets" in d \
            else None
        return cls(d["edges"], d["centres"], LookupTable.from_dict(d, "phi"),
                   LookupTable.from_dict(d, "inv_scale"), LookupTable.from_dict(d, "exp"),
                   d["head_weights"], None if full is not None else d["head_masses"], full)


def check_dims(tables: LatentTables, arr: np.ndarray, axis: int, what: str) -> None:
    if arr.shape[axis] != tables.dim:
        raise ValueError(f"{what} have {arr.shape[axis]} dimensions, bucket tables {tables.dim}")


def posterior_masses(tables: LatentTables, codes_int: np.ndarray) -> np.ndarray:
    """q(bucket | x) = masses of N(c, 1) in each bucket: codes (B, D) ints at CODE_FRAC -> (B, D, 2^b) int64."""
    codes = np.asarray(codes_int, dtype=_INT)
    check_dims(tables, codes, -1, "codes")
    c = np.clip(codes, -EDGE_LIMIT << CODE_FRAC, EDGE_LIMIT << CODE_FRAC) * (1 << (EDGE_FRAC - CODE_FRAC))
    u = tables.edges - c[..., None]                                             # unit scale: u = edge - c
    return normalise_masses(_cdf_masses(tables.phi, u), CDF_BITS + 1)


def prior_masses(tables: LatentTables, raw_int: np.ndarray) -> np.ndarray:
    """p(bucket | ĉ) for the prior network's raw outputs (B, D, M, 3) ints (weight logit at RAW_FRAC, mean at
    CODE_FRAC, scale pre-activation at RAW_FRAC) -> (B, D, 2^b) int64.

    Component weights exp(l_m - max l) from the exp table, inverse scales from the 1/(softplus + MIN_SCALE) table,
    u = (edge - mean) * inv_scale at EDGE_FRAC, bucket masses of each component from the Phi table, weighted
    and summed in int64 (at most M * 2^(WEIGHT_BITS + CDF_BITS)), then normalised.
    """
    raw = np.asarray(raw_int, dtype=_INT)
    if raw.ndim < 3 or raw.shape[-1] != 3:
        raise ValueError(f"raw prior outputs must be (..., D, M, 3), got {raw.shape}")
    check_dims(tables, raw, -3, "raw prior outputs")
    logits, means, pre_scales = raw[..., 0], raw[..., 1], raw[..., 2]
    weights = tables.exp(logits - logits.max(-1, keepdims=True)) >> (EXP_BITS - WEIGHT_BITS)   # (..., D, M)
    inv = tables.inv_scale(pre_scales)                                                        # at INV_FRAC
    mu = np.clip(means, -EDGE_LIMIT << CODE_FRAC, EDGE_LIMIT << CODE_FRAC) * (1 << (EDGE_FRAC - CODE_FRAC))
    comps = raw.shape[-2]
    if comps > MAX_COMPONENTS:
        raise ValueError(f"{comps} mixture components, the exact numerics take at most {MAX_COMPONENTS}")
    total = np.zeros(raw.shape[:-2] + (tables.buckets,), dtype=_INT)
    for m in range(comps):     # components added in a fixed order (integer sums are exact anyway)
        u = floor_shift((tables.edges - mu[..., m, None]) * inv[..., m, None], INV_FRAC)
        total += weights[..., m, None] * _cdf_masses(tables.phi, u)
    return normalise_masses(total, WEIGHT_BITS + CDF_BITS + comps.bit_length())


def component_masses(joint: np.ndarray) -> np.ndarray:
    """Exact joint weights (B, K) (Python ints, any size, not all zero in a row) to masses (B, K) int64: each
    1 + its share of 2^MASS_BITS - K (so every component stays codable), the first largest taking the rest."""
    k = joint.shape[1]
    free = (1 << MASS_BITS) - k
    out = np.empty(joint.shape, dtype=_INT)
    for b in range(joint.shape[0]):
        total = int(sum(int(v) for v in joint[b]))
        row = [1 + (int(v) * free) // total for v in joint[b]]
        top = max(range(k), key=lambda i: (row[i], -i))     # the first largest
        row[top] += (1 << MASS_BITS) - sum(row)
        out[b] = row
    return out


def _head_picked(tables: LatentTables, buckets: np.ndarray) -> np.ndarray:
    """Each component's mass of each latent's bucket: (B, K, D) int64, P_k,d(z_d) (given z_<d for a full head)."""
    d, n = tables.dim, tables.buckets
    head = tables.head_full
    if head is None:
        return np.moveaxis(tables.head_masses[:, np.arange(d)[None, :], buckets], 0, 1)
    means = head.means(latent_values(tables, buckets))[..., None]              # (B, K, D, 1)
    ends = np.stack([buckets, buckets + 1], axis=-1)[:, None]                  # C at the bucket's two edges
    inner = tables.edges[np.arange(d)[:, None], np.clip(ends - 1, 0, n - 2)]   # (B, 1, D, 2)
    cdf = _chain_cdf(tables.phi, inner, ends, means, head.inv_scales[None, :, :, None], n)
    cdf = np.where(ends == 0, 0, np.where(ends == n, 1 << MASS_BITS, cdf))
    return cdf[..., 1] - cdf[..., 0]


def full_head_masses(tables: LatentTables, ks: np.ndarray, d: int, buckets: np.ndarray) -> np.ndarray:
    """A full head's masses (B, 2^b) of dimension d for components ks (B,), given the buckets (B, D) of the
    dimensions before d (the later ones are not read: the coefficients are strictly lower triangular)."""
    head, n = tables.head_full, tables.buckets
    ks = np.asarray(ks, dtype=_INT)
    m = head.mean(latent_values(tables, buckets), ks, d)[:, None]                        # (B, 1)
    inner = _chain_cdf(tables.phi, tables.edges[d][None, :], np.arange(1, n, dtype=_INT)[None, :], m,
                       head.inv_scales[ks, d, None], n)
    zeros, ones = np.zeros((len(ks), 1), _INT), np.full((len(ks), 1), 1 << MASS_BITS, _INT)
    return np.diff(np.concatenate([zeros, inner, ones], axis=1), axis=1)


def _head_joint(tables: LatentTables, buckets: np.ndarray) -> np.ndarray:
    """w_k prod_d P_k,d(z_d) (B, K) as Python ints, at 2^((D + 1) MASS_BITS)."""
    picked = _head_picked(tables, buckets)                                     # (B, K, D)
    return np.prod(picked.astype(object), axis=-1) * tables.head_weights.astype(object)[None, :]


def head_posterior_masses(tables: LatentTables, buckets: np.ndarray) -> np.ndarray:
    """q(k | z) of the head mixture given bucketed latents (B, D): (B, K) int64 masses.

    q(k | z) is proportional to w_k prod_d P_k,d(z_d); the products (up to (D + 1) * MASS_BITS bits) are taken in
    Python's arbitrary-precision ints, so the distribution is the exact one before the final normalisation.
    """
    buckets = np.asarray(buckets, dtype=_INT)
    check_dims(tables, buckets, -1, "buckets")
    return component_masses(_head_joint(tables, buckets))


def pointer_masses(tables: LatentTables, buckets: np.ndarray, neighbour_raw_int: np.ndarray) -> np.ndarray:
    """r(k | z) of the associative set order: (B, 1 + K) int64 masses over [the head mixture, p(z | c_1), ...,
    p(z | c_K)] for bucketed latents (B, D) and the prior network's raw outputs for K neighbours (B, K, D, M, 3).

    Proportional to each component's probability of the buckets: the head mixture's sum_k w_k prod_d P_k,d(z_d)
    and each neighbour's prod_d p_d(z_d | c_j), brought to one denominator and normalised in exact integers
    (as q(k | z) of the head), so the weights are the same bits on every machine.
    """
    buckets = np.asarray(buckets, dtype=_INT)
    check_dims(tables, buckets, -1, "buckets")
    raw = np.asarray(neighbour_raw_int, dtype=_INT)
    if raw.ndim != 5 or raw.shape[0] != buckets.shape[0]:
        raise ValueError(f"neighbour prior outputs must be (B, K, D, M, 3) for {buckets.shape[0]} latents, "
                         f"got {raw.shape}")
    masses = prior_masses(tables, raw)                                                  # (B, K, D, 2^b)
    picked = np.take_along_axis(masses, buckets[:, None, :, None], axis=-1)[..., 0]      # (B, K, D)
    conditional = np.prod(picked.astype(object), axis=-1) * (1 << MASS_BITS)            # at 2^((D + 1) MASS_BITS)
    head = _head_joint(tables, buckets).sum(axis=1)
    return component_masses(np.concatenate([head[:, None], conditional], axis=1))


def head_posterior(tables: LatentTables, buckets: np.ndarray) -> np.ndarray:
    """q(k | z) (B, K) as constriction-ready float64 probabilities."""
    return to_constriction(head_posterior_masses(tables, buckets))


def latent_values(tables: LatentTables, buckets: np.ndarray) -> np.ndarray:
    """Representative values of bucket indices (B, D): ints at CODE_FRAC, the decoder's latent input."""
    buckets = np.asarray(buckets, dtype=_INT)
    check_dims(tables, buckets, -1, "buckets")
    return tables.centres[np.arange(tables.dim), buckets]


# ----------------------------------------------------------------------------------------------------------------
# Pixels
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class PixelTables:
    """The exp table behind pixel probabilities; `levels` says binary (2: a Bernoulli) or categorical."""

    levels: int
    exp: LookupTable

    @classmethod
    def build(cls, levels: int) -> "PixelTables":
        if int(levels) < 2:
            raise ValueError(f"pixels need at least 2 levels, got {levels}")
        return cls(int(levels), exp_table(LOGIT_FRAC))

    def to_dict(self) -> dict:
        return {"levels": np.array(self.levels, dtype=_INT), **self.exp.to_dict("exp")}

    @classmethod
    def from_dict(cls, d: dict) -> "PixelTables":
        return cls(int(d["levels"]), LookupTable.from_dict(d, "exp"))


def pixel_masses(tables: PixelTables, logits_int: np.ndarray) -> np.ndarray:
    """Softmax masses of logits (..., L) ints at LOGIT_FRAC: (..., L) int64 summing to 2^MASS_BITS.
    For binary data pass the single logit of P(1) as (..., 1): masses of (0, 1) from the logits (0, l)."""
    logits = np.asarray(logits_int, dtype=_INT)
    if logits.shape[-1] == 1:
        logits = np.concatenate([np.zeros_like(logits), logits], axis=-1)
    e = tables.exp(logits - logits.max(-1, keepdims=True))
    return normalise_masses(e, EXP_BITS + 1)


def bernoulli_masses(tables: PixelTables, logit_int: np.ndarray) -> np.ndarray:
    """The mass of 1 under logits l (...,) at LOGIT_FRAC: exactly `pixel_masses(tables, l[..., None])[..., 1]`,
    in a few operations (one pixel step of binary data calls it once).

    With e = exp(-|l|) from the table, the two raw weights are 2^EXP_BITS (the likelier symbol) and e; the
    normalisation gives the less likely one 1 + floor(e F / (2^EXP_BITS + e)), F = 2^MASS_BITS - 2, and the
    likelier one the rest (at l = 0 both get 2^(MASS_BITS - 1) and nothing remains)."""
    logit = np.asarray(logit_int, dtype=_INT)
    e = tables.exp(-np.abs(logit))
    small = 1 + (e * ((1 << MASS_BITS) - 2)) // ((1 << EXP_BITS) + e)
    return np.where(logit > 0, (1 << MASS_BITS) - small, small)


def pixel_probs(tables: PixelTables, logits_int: np.ndarray) -> np.ndarray:
    """Constriction-ready float64 probabilities from logits (..., outputs) ints at LOGIT_FRAC: P(1) (...,) for
    binary data (one output, the logit of P(1)), a categorical (..., L) over L levels otherwise."""
    logits = np.asarray(logits_int, dtype=_INT)
    check_outputs(tables, logits.shape[-1])
    if tables.levels == 2:
        return to_constriction(bernoulli_masses(tables, logits[..., 0]))
    return to_constriction(pixel_masses(tables, logits))


def check_outputs(tables: PixelTables, outputs: int) -> None:
    """Logits of `outputs` per pixel channel fit the tables: one (of P(1)) for binary data, else one per level."""
    if tables.levels == 2 and outputs != 1:
        raise ValueError(f"binary pixels need one logit, got {outputs}")
    if tables.levels != 2 and outputs != tables.levels:
        raise ValueError(f"logits have {outputs} levels, tables {tables.levels}")
