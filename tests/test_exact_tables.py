"""The exact numerics' integer masses: close to the float computation, every mass >= 1, rows summing to exactly
2^MASS_BITS, independent of the batch they are computed in, stored losslessly, and codable at their own rate."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from acncodec.buckets import BucketTable, HeadTables, posterior_probabilities, prior_probabilities
from acncodec.coding import exact_tables as et
from acncodec.coding.codecs import Bernoulli, Categorical
from acncodec.coding.float_numerics import component_posterior
from acncodec.prior import MIN_SCALE, Mixture, UnconditionalPrior
from tests.test_codecs import check_codec, filled_stack

TOTAL = 1 << et.MASS_BITS
#: Largest KL(float || exact) per row allowed, in nats, beyond the floor's own cost: a row the float computation
#: makes nearly certain pays about (n - 1) 2^-MASS_BITS nats for the n - 1 masses of 1 (at most 1e-6 for n = 256).
#: On these inputs no row exceeds the floor's cost at all; the tolerances leave room for other inputs and are
#: far below what a rate comparison could see (0.5% of a rate of ~100 bits is 0.35 nats).
KL_TOLERANCE = {"posterior": 1e-8, "prior": 1e-6, "pixel": 1e-7, "head": 1e-6}


def kl_beyond_floor(p, q):
    return kl(p, q) - (p.shape[-1] - 1) * 2.0 ** -et.MASS_BITS


def unconditional(dim, k, seed):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.5, 1.5, k)
    return UnconditionalPrior(w / w.sum(), rng.normal(0, 0.8, (k, dim)), rng.uniform(0.2, 1.5, (k, dim)))


@pytest.fixture(scope="module")
def setting():
    prior = unconditional(dim=4, k=3, seed=0)
    table = BucketTable.from_reference(prior.marginal(), 6)
    return table, prior, et.LatentTables.build(table, prior, 6)


def kl(p, q):
    return np.sum(p * (np.log(p) - np.log(q)), axis=-1)


def check_masses(masses, n):
    assert masses.dtype == np.int64 and masses.shape[-1] == n
    assert masses.min() >= 1
    assert np.all(masses.sum(-1) == TOTAL)


def random_codes(rng, b, d):
    codes = rng.normal(0, 1.5, (b, d))
    codes[0, :] = [-9.0, 9.0, 0.0, 3.3][:d]     # far tails and the centre
    return np.round(codes * 2 ** et.CODE_FRAC).astype(np.int64)


def random_raw(rng, b, d, m):
    raw = rng.normal(size=(b, d, m, 3))
    raw[..., 0] *= 3.0                       # weight logits
    raw[..., 1] *= 1.5                       # means
    raw[..., 2] = raw[..., 2] * 3.0 - 1.0    # scale pre-activations: scales from ~MIN_SCALE to ~10
    raw[0, 0, :, 2] = -15.0                  # a row of near-spikes
    return np.round(raw * 2 ** et.CODE_FRAC).astype(np.int64)


def float_mixture(raw_int):
    r = torch.from_numpy(raw_int / 2 ** et.RAW_FRAC)
    return Mixture(F.log_softmax(r[..., 0], -1), r[..., 1], F.softplus(r[..., 2]) + MIN_SCALE)


def test_posterior_masses_match_float(setting):
    table, _, tables = setting
    codes = random_codes(np.random.default_rng(1), 50, table.dim)
    masses = et.posterior_masses(tables, codes)
    check_masses(masses, table.buckets)
    reference = posterior_probabilities(table, codes / 2 ** et.CODE_FRAC)
    assert kl_beyond_floor(reference, et.to_constriction(masses)).max() < KL_TOLERANCE["posterior"]


def test_prior_masses_match_float(setting):
    table, _, tables = setting
    raw = random_raw(np.random.default_rng(2), 40, table.dim, 5)
    masses = et.prior_masses(tables, raw)
    check_masses(masses, table.buckets)
    reference = prior_probabilities(table, float_mixture(raw))
    assert kl_beyond_floor(reference, et.to_constriction(masses)).max() < KL_TOLERANCE["prior"]


def test_head_tables_and_posterior_match_float(setting):
    table, prior, tables = setting
    head = HeadTables.from_prior(prior, table)
    check_masses(tables.head_masses, table.buckets)
    assert tables.head_weights.sum() == TOTAL and tables.head_weights.min() >= 1
    assert kl_beyond_floor(head.probs, et.to_constriction(tables.head_masses)).max() < KL_TOLERANCE["head"]
    buckets = np.random.default_rng(3).integers(0, table.buckets, (30, table.dim))
    masses = et.head_posterior_masses(tables, buckets)
    check_masses(masses, prior.components)
    reference = component_posterior(buckets, np.log(head.weights), np.log(head.probs))
    assert np.abs(reference - et.head_posterior(tables, buckets)).max() < 1e-6


def test_pixel_probs_match_float():
    rng = np.random.default_rng(4)
    for levels in (17, 256):
        logits = np.round(rng.normal(0, 4, (30, levels)) * 2 ** et.LOGIT_FRAC).astype(np.int64)
        logits[0, 0] = 40 << et.LOGIT_FRAC        # one near-certain level
        tables = et.PixelTables.build(levels)
        check_masses(et.pixel_masses(tables, logits), levels)
        reference = F.softmax(torch.from_numpy(logits / 2 ** et.LOGIT_FRAC), -1).numpy()
        assert kl_beyond_floor(reference, et.pixel_probs(tables, logits)).max() < KL_TOLERANCE["pixel"]
    logits = np.round(rng.normal(0, 6, (200, 1)) * 2 ** et.LOGIT_FRAC).astype(np.int64)
    logits[:2, 0] = [-60 << et.LOGIT_FRAC, 60 << et.LOGIT_FRAC]
    binary = et.PixelTables.build(2)
    p_one = et.pixel_probs(binary, logits)
    assert np.array_equal(et.bernoulli_masses(binary, logits[:, 0]), et.pixel_masses(binary, logits)[:, 1])
    edge = np.array([[0], [1], [-1]])          # the tie at 0 and its neighbours
    assert np.array_equal(et.bernoulli_masses(binary, edge[:, 0]), et.pixel_masses(binary, edge)[:, 1])
    assert p_one.shape == (200,)
    assert p_one.min() >= 2.0 ** -et.MASS_BITS and p_one.max() <= 1 - 2.0 ** -et.MASS_BITS
    reference = torch.sigmoid(torch.from_numpy(logits[:, 0] / 2 ** et.LOGIT_FRAC)).numpy()
    assert np.abs(reference - p_one).max() < 1e-6


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_rows_do_not_depend_on_the_batch(setting, batch):
    """A row's masses are the same whether computed alone, in a batch of 7 or of 64 (array_equal)."""
    table, _, tables = setting
    rng = np.random.default_rng(5)
    codes, raw = random_codes(rng, 64, table.dim), random_raw(rng, 64, table.dim, 4)
    buckets = rng.integers(0, table.buckets, (64, table.dim))
    pixel_tables = et.PixelTables.build(17)
    logits = np.round(rng.normal(0, 4, (64, 17)) * 2 ** et.LOGIT_FRAC).astype(np.int64)
    functions = [(lambda a: et.posterior_masses(tables, a), codes), (lambda a: et.prior_masses(tables, a), raw),
                 (lambda a: et.head_posterior_masses(tables, a), buckets),
                 (lambda a: et.latent_values(tables, a), buckets),
                 (lambda a: et.pixel_masses(pixel_tables, a), logits)]
    for fn, inputs in functions:
        whole = fn(inputs)
        pieces = np.concatenate([fn(inputs[i:i + batch]) for i in range(0, 64, batch)])
        assert np.array_equal(whole, pieces)


def test_tables_survive_the_model_file(setting):
    _, _, tables = setting
    from acncodec.modelfile import pack_arrays, unpack_arrays
    loaded = {name: unpack_arrays(*pack_arrays(part, narrow=True))
              for name, part in (("latent", tables.to_dict()), ("pixel", et.PixelTables.build(5).to_dict()))}
    again = et.LatentTables.from_dict(loaded["latent"])
    raw = random_raw(np.random.default_rng(6), 8, tables.dim, 3)
    assert np.array_equal(et.prior_masses(again, raw), et.prior_masses(tables, raw))
    assert np.array_equal(again.head_masses, tables.head_masses)
    pixel = et.PixelTables.from_dict(loaded["pixel"])
    assert pixel.levels == 5 and np.array_equal(pixel.exp.values, et.PixelTables.build(5).exp.values)


def test_tables_reject_float_storage(setting):
    _, _, tables = setting
    stored = tables.to_dict()
    stored["edges"] = stored["edges"].astype(np.float64)
    with pytest.raises(ValueError, match="int64"):
        et.LatentTables.from_dict(stored)


def test_lookup_table_is_monotone_and_hits_its_grid():
    phi = et.phi_table()
    u = np.arange(phi.start - 5000, phi.stop + 5000, 37, dtype=np.int64)
    values = phi(u)
    assert np.all(np.diff(values) >= 0) and values[0] == 0 and values[-1] == 1 << et.CDF_BITS
    grid = phi.start + (np.arange(len(phi.values)) << (phi.in_frac - phi.grid_frac))
    assert np.array_equal(phi(grid), phi.values)
    x = np.array([-1.0, 0.0, 0.7])
    approx = phi(np.round(x * 2 ** et.EDGE_FRAC).astype(np.int64)) / 2 ** et.CDF_BITS
    assert np.abs(approx - [0.5 * math.erfc(v / -math.sqrt(2)) for v in x]).max() < 1e-7


def test_dense_tables_read_like_interpolated_ones(monkeypatch):
    """Small tables are expanded to one value per input when loaded: the same function, only faster."""
    dense = et.exp_table(et.LOGIT_FRAC)
    monkeypatch.setattr(et, "DENSE_LIMIT", 0)
    sparse = et.exp_table(et.LOGIT_FRAC)
    x = np.arange(dense.start - 100, dense.stop + 100, dtype=np.int64)
    assert dense._dense is not None and sparse._dense is None
    assert np.array_equal(dense(x), sparse(x))


def test_normalise_masses_edge_cases():
    masses = et.normalise_masses(np.array([[0, 0, 0], [5, 0, 0], [3, 3, 0]]), 3)
    check_masses(masses, 3)
    assert masses[0, 1] == masses[0, 2] and 0 <= masses[0, 0] - masses[0, 1] < 3     # empty row: uniform
    assert masses[1, 1] == masses[1, 2] == 1                                         # zero weight: the floor, 1
    assert masses[2, 0] == masses[2, 1] + 1 and masses[2, 2] == 1                    # a tie: remainder to the first
    with pytest.raises(ValueError, match="too many buckets"):
        edges = np.array([[-np.inf, -1.0, 0.0, 1e-9, np.inf]])
        centres = np.array([[-2.0, -0.5, 5e-10, 1.0]])
        et.LatentTables.build(BucketTable(edges, centres), unconditional(1, 1, 0))


def test_exact_masses_code_at_their_rate(setting):
    """Constriction codes the exact masses at -sum log2(m / 2^MASS_BITS) (tests/test_codecs.py's tolerance)."""
    table, _, tables = setting
    rng = np.random.default_rng(7)
    masses = et.prior_masses(tables, random_raw(rng, 30, table.dim, 4))
    probs = et.to_constriction(masses)
    symbols = np.array([[rng.choice(table.buckets, p=row) for row in rows] for rows in probs])
    picked = np.take_along_axis(masses, symbols[..., None], -1)[..., 0]
    check_codec(Categorical(probs), symbols, float(np.sum(et.MASS_BITS - np.log2(picked))))
    logits = np.round(rng.normal(0, 3, (40, 25, 1)) * 2 ** et.LOGIT_FRAC).astype(np.int64)
    p_one = et.pixel_probs(et.PixelTables.build(2), logits)
    bits = (rng.uniform(size=p_one.shape) < p_one).astype(np.int64)
    check_codec(Bernoulli(p_one), bits, float(-np.log2(np.where(bits == 1, p_one, 1 - p_one)).sum()))


def constriction_probability(masses: np.ndarray, i: int) -> int:
    """The 24-bit probability constriction gives symbol i of a row of exact masses (docs/NUMERICS.md):
    left(i) = floor(c_i (2^24 - n) / 2^MASS_BITS) + i, c_i the masses before i; the last symbol ends at 2^24."""
    n, cum = len(masses), np.concatenate([[0], np.cumsum(masses)]).astype(object)
    left = [int(cum[k] * (2 ** 24 - n) // 2 ** et.MASS_BITS) + k for k in range(n)] + [2 ** 24]
    return left[i + 1] - left[i]


@pytest.mark.parametrize("model,symbol", [("categorical", 0), ("categorical", 1), ("categorical", 3),
                                          ("bernoulli", 1)])
def test_constriction_quantises_exact_masses_as_documented(model, symbol):
    """Coding one symbol many times costs -log2(q / 2^24) each, with q from the documented formula; q is small
    (2 to 9), so a q one off would change the total by hundreds of bits."""
    masses = np.array([80, 1, TOTAL - 200, 119]) if model == "categorical" else np.array([TOTAL - 37, 37])
    q, copies = constriction_probability(masses, symbol), 3000
    assert 2 <= q <= 9 and copies * math.log2((q + 1) / q) > 300
    probs = et.to_constriction(masses)
    codec = Categorical(np.tile(probs, (copies, 1))) if model == "categorical" else Bernoulli(np.full(copies, probs[1]))
    stack = filled_stack()
    before = stack.num_valid_bits()
    codec.push(stack, np.full(copies, symbol))
    assert abs(stack.num_valid_bits() - before - copies * (24 - math.log2(q))) < 64


def test_floor_shift_is_the_floor_for_both_signs():
    x = np.array([-(2 ** 61) - 3, -17, -16, -1, 0, 1, 15, 16, 2 ** 61 + 5], dtype=np.int64)
    for shift in (0, 1, 4, 20):
        assert [int(v) for v in et.floor_shift(x, shift)] == [int(v) // 2 ** shift for v in x]
