"""Tests for acncodec.buckets: equal-mass tables, bucket probabilities, storage, discretisation cost."""

import io
import math

import numpy as np
import pytest
import torch

from acncodec.buckets import (PROBABILITY_FLOOR, BucketTable, discretised_kl, posterior_probabilities,
                              prior_probabilities)
from acncodec.prior import Mixture

torch.set_num_threads(1)
try:
    import faiss
    faiss.omp_set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


def random_mixture(shape, m, seed, mean_scale=1.0, min_scale=0.3):
    g = torch.Generator().manual_seed(seed)
    return Mixture(torch.log_softmax(torch.randn(*shape, m, generator=g, dtype=torch.float64), -1),
                   mean_scale * torch.randn(*shape, m, generator=g, dtype=torch.float64),
                   min_scale + torch.rand(*shape, m, generator=g, dtype=torch.float64))


def normalish_reference(dim):
    """A three-component mixture close to N(0, 1), per dimension."""
    return Mixture(torch.log(torch.tensor([0.3, 0.4, 0.3], dtype=torch.float64)).expand(dim, 3).clone(),
                   torch.tensor([-0.5, 0.0, 0.5], dtype=torch.float64).expand(dim, 3).clone(),
                   torch.full((dim, 3), 0.85, dtype=torch.float64))


def mixture_cdf(mix, z):
    """Reference CDF with math.erfc, per dimension: mix tensors (D, M), z (D, K) -> (D, K)."""
    w, mu, s = mix.log_weights.exp().numpy(), mix.means.numpy(), mix.scales.numpy()
    out = np.zeros(z.shape)
    for d in range(z.shape[0]):
        for k in range(z.shape[1]):
            out[d, k] = sum(w[d, m] * 0.5 * math.erfc(-(z[d, k] - mu[d, m]) / (s[d, m] * math.sqrt(2)))
                            for m in range(w.shape[1]))
    return out


def gauss_mass(lo, hi, c):
    """N(c, 1) mass of [lo, hi] with math.erfc on the side that keeps precision."""
    if lo >= c:
        return 0.5 * (math.erfc((lo - c) / math.sqrt(2)) - math.erfc((hi - c) / math.sqrt(2)))
    if hi <= c:
        return 0.5 * (math.erfc((c - hi) / math.sqrt(2)) - math.erfc((c - lo) / math.sqrt(2)))
    return 1 - 0.5 * (math.erfc((hi - c) / math.sqrt(2)) + math.erfc((c - lo) / math.sqrt(2)))


REF = random_mixture((3,), 4, seed=0)


# ---------------------------------------------------------------- the table

@pytest.mark.parametrize("bits", [1, 3, 6])
def test_edges_have_equal_reference_mass(bits):
    table = BucketTable.from_reference(REF, bits)
    n = 2 ** bits
    assert table.edges.shape == (3, n + 1) and table.centres.shape == (3, n)
    assert table.bits == bits and table.buckets == n
    assert np.all(table.edges[:, 0] == -np.inf) and np.all(table.edges[:, -1] == np.inf)
    assert np.all(np.diff(table.edges, axis=1) > 0)
    cdf = mixture_cdf(REF, table.edges[:, 1:-1])
    assert np.allclose(cdf, np.arange(1, n) / n, rtol=0, atol=1e-12)
    # the centre is the reference median of its bucket
    assert np.allclose(mixture_cdf(REF, table.centres), (np.arange(n) + 0.5) / n, rtol=0, atol=1e-12)
    assert np.all(table.centres > table.edges[:, :-1]) and np.all(table.centres < table.edges[:, 1:])


def test_reference_mass_per_bucket_with_large_table():
    table = BucketTable.from_reference(normalish_reference(2), 12)
    cdf = normalish_reference(2).cdf(torch.from_numpy(table.edges.T.copy())).T.numpy()
    assert np.allclose(np.diff(cdf, axis=1), 2.0 ** -12, rtol=1e-9, atol=0)


def test_table_is_deterministic_and_stored_exactly():
    a = BucketTable.from_reference(REF, 8)
    b = BucketTable.from_reference(REF, 8)
    assert np.array_equal(a.edges, b.edges) and np.array_equal(a.centres, b.centres)
    buf = io.BytesIO()
    torch.save({"buckets": a.to_dict()}, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)["buckets"]
    c = BucketTable.from_dict(loaded)
    d = a.to_dict()
    assert loaded["edges"].dtype == torch.float64 and loaded["centres"].dtype == torch.float64
    assert torch.equal(d["edges"], c.to_dict()["edges"]) and torch.equal(d["centres"], c.to_dict()["centres"])
    assert torch.equal(loaded["edges"], d["edges"]) and loaded["bits"] == 8
    assert np.array_equal(c.edges, a.edges) and np.array_equal(c.centres, a.centres)


def test_from_dict_rejects_bad_tables():
    d = BucketTable.from_reference(REF, 3).to_dict()
    with pytest.raises(ValueError):                             # ends not -inf / +inf
        BucketTable.from_dict(dict(d, edges=d["edges"].flip(-1)))
    swapped = d["edges"].clone()
    swapped[:, [2, 3]] = swapped[:, [3, 2]]
    with pytest.raises(ValueError):                             # inner edges out of order
        BucketTable.from_dict(dict(d, edges=swapped))
    equal = d["edges"].clone()
    equal[:, 3] = equal[:, 2]
    centres = d["centres"].clone()
    centres[:, 2] = equal[:, 2]                                 # centres all inside their (closed) buckets
    with pytest.raises(ValueError):                             # an empty bucket
        BucketTable.from_dict(dict(d, edges=equal, centres=centres))
    with pytest.raises(ValueError):
        BucketTable.from_dict(dict(d, bits=4))
    with pytest.raises(ValueError):
        BucketTable.from_dict(dict(d, centres=d["centres"][:, :-1]))
    with pytest.raises(ValueError):
        BucketTable.from_reference(REF, 0)


def test_narrow_component_still_gives_increasing_edges():
    ref = Mixture(torch.log(torch.tensor([[0.9, 0.1]], dtype=torch.float64)),
                  torch.tensor([[0.0, 3.0]], dtype=torch.float64), torch.tensor([[1e-3, 1.0]], dtype=torch.float64))
    table = BucketTable.from_reference(ref, 10)
    assert np.all(np.diff(table.edges, axis=1) > 0)


def test_index_of_and_values():
    table = BucketTable.from_reference(REF, 5)
    assert np.array_equal(table.index_of(table.centres.T), np.tile(np.arange(32), (3, 1)).T)
    z = np.random.default_rng(0).standard_normal((100, 3)) * 3
    k = table.index_of(z)
    lo = np.take_along_axis(table.edges.T[None].repeat(100, 0), k[:, None, :], 1)[:, 0]
    assert np.all(lo <= z) and np.all(table.values(k) == table.centres[np.arange(3), k])


# ---------------------------------------------------------------- probabilities

def test_prior_probabilities_match_cdf_differences():
    table = BucketTable.from_reference(REF, 6)
    mix = random_mixture((5, 3), 4, seed=1)
    p = prior_probabilities(table, mix)
    assert p.shape == (5, 3, 64) and p.dtype == np.float64
    assert np.all(p > 0)
    assert np.allclose(p.sum(-1), 1.0, rtol=0, atol=1e-12)
    for i in range(5):
        one = Mixture(mix.log_weights[i], mix.means[i], mix.scales[i])
        want = np.diff(mixture_cdf(one, table.edges[:, 1:-1]), axis=1, prepend=0.0, append=1.0)
        assert np.allclose(p[i], want, rtol=1e-9, atol=1e-15)


def test_probabilities_do_not_depend_on_the_batch():
    table = BucketTable.from_reference(REF, 6)
    mix = random_mixture((7, 3), 4, seed=2)
    p = prior_probabilities(table, mix)
    codes = np.random.default_rng(2).standard_normal((7, 3)).astype(np.float32)
    q = posterior_probabilities(table, codes)
    for i in range(7):
        one = Mixture(mix.log_weights[i:i + 1], mix.means[i:i + 1], mix.scales[i:i + 1])
        assert np.array_equal(prior_probabilities(table, one)[0], p[i])
        assert np.array_equal(posterior_probabilities(table, codes[i:i + 1])[0], q[i])


def test_posterior_probabilities_accurate_in_both_tails():
    # Around a code at 0 the outer buckets hold 1.3e-12 to 3.9e-11: above the floor, and small enough that a
    # CDF computed as 1 - something (or an upper-tail mass as a difference of CDFs near 1) would be off by
    # ~1e-6 relative. Codes at 12 and +-40 put most buckets below the floor.
    cuts = np.array([-np.inf, -7.0, -6.5, -1.0, 0.5, 3.0, 6.5, 7.0, np.inf])
    centres = np.array([-7.5, -6.8, -4, -0.2, 2.0, 4.0, 6.8, 7.5])
    table = BucketTable(np.stack([cuts, cuts]), np.stack([centres, centres]))
    for c in (0.0, 12.0, -40.0, 40.0):
        q = posterior_probabilities(table, np.array([[c, c]]))[0, 0]
        assert np.all(np.isfinite(q)) and np.all(q > 0) and abs(q.sum() - 1) < 1e-12
        for k in range(8):
            want = max(gauss_mass(cuts[k], cuts[k + 1], c), PROBABILITY_FLOOR)
            assert q[k] == pytest.approx(want, rel=1e-10, abs=0), (c, k)
    q0 = posterior_probabilities(table, np.array([[0.0, 0.0]]))[0, 0]
    assert q0[0] > PROBABILITY_FLOOR and q0[-1] > PROBABILITY_FLOOR      # the checks above were not floored


def test_prior_probabilities_accurate_in_both_tails():
    cuts = np.array([-np.inf, -7.0, -6.5, 0.0, 6.5, 7.0, 7.5, np.inf])
    cuts = np.concatenate([cuts[:4], [0.1], cuts[4:]])
    table = BucketTable(cuts[None], np.array([[-7.5, -6.8, -3.0, 0.05, 3.0, 6.8, 7.2, 8.0]]))
    mix = Mixture(torch.log(torch.tensor([[[0.5, 0.5]]], dtype=torch.float64)),
                  torch.tensor([[[0.0, -1.0]]], dtype=torch.float64),
                  torch.tensor([[[1.0, 0.5]]], dtype=torch.float64))
    p = prior_probabilities(table, mix)[0, 0]
    for k in range(8):
        lo, hi = cuts[k], cuts[k + 1]
        want = 0.5 * gauss_mass(lo, hi, 0.0) + 0.5 * gauss_mass(2 * lo + 2, 2 * hi + 2, 0.0)   # N(0,1), N(-1,.5)
        assert p[k] == pytest.approx(max(want, PROBABILITY_FLOOR), rel=1e-10, abs=0), k
    assert p[5] > 1e-11 and p[1] > 1e-11                     # [6.5, 7] and [-7, -6.5]: real tail masses


def test_far_tail_code_is_well_formed_with_real_table():
    table = BucketTable.from_reference(normalish_reference(2), 10)
    q = posterior_probabilities(table, np.array([[25.0, -1e4]]))
    assert np.all(np.isfinite(q)) and np.all(q > 0)
    assert np.allclose(q.sum(-1), 1, atol=1e-12)
    assert q[0, 0, -1] > 1 - 1e-9 and q[0, 1, 0] > 1 - 1e-9
    assert q.min() >= PROBABILITY_FLOOR / 2


def test_floor_applies_only_to_tiny_masses():
    table = BucketTable.from_reference(REF, 4)
    q = posterior_probabilities(table, np.zeros((1, 3)))
    assert q.min() > PROBABILITY_FLOOR * 10          # nothing near the floor here: all buckets are reachable
    q = posterior_probabilities(table, np.full((1, 3), 60.0))
    assert np.isclose(q.min(), PROBABILITY_FLOOR, rtol=1e-9)


# ---------------------------------------------------------------- discretised KL

def continuous_kl(codes, mix):
    """KL(N(c, 1) || mixture) per datum by a fine 1-D Riemann sum per dimension."""
    z = torch.linspace(-20, 20, 80001, dtype=torch.float64)
    c = torch.as_tensor(codes, dtype=torch.float64).unsqueeze(-1)
    logq = -0.5 * (z - c) ** 2 - 0.5 * math.log(2 * math.pi)
    wide = Mixture(mix.log_weights.unsqueeze(-2), mix.means.unsqueeze(-2), mix.scales.unsqueeze(-2))
    logp = wide.log_prob(z.expand(*c.shape[:-1], -1))
    return ((logq.exp() * (logq - logp)).sum(-1) * (z[1] - z[0])).sum(-1).numpy()


def test_discretised_kl_basic():
    table = BucketTable.from_reference(REF, 6)
    codes = np.random.default_rng(3).standard_normal((4, 3))
    q = posterior_probabilities(table, codes)
    assert np.allclose(discretised_kl(q, q), 0.0, atol=1e-15)
    p = prior_probabilities(table, random_mixture((4, 3), 4, seed=3))
    kl = discretised_kl(q, p)
    assert kl.shape == (4,) and np.all(kl > 0)
    with pytest.raises(ValueError):
        discretised_kl(q, p[:2])


def test_discretised_kl_approaches_continuous_kl():
    dim, n = 3, 40
    ref = normalish_reference(dim)
    codes = np.random.default_rng(4).standard_normal((n, dim)) * 0.8
    mix = random_mixture((n, dim), 4, seed=4, mean_scale=0.7, min_scale=0.5)
    cont = continuous_kl(codes, mix)
    gaps = {}
    for bits in (4, 6, 8, 10, 12):
        table = BucketTable.from_reference(ref, bits)
        disc = discretised_kl(posterior_probabilities(table, codes), prior_probabilities(table, mix))
        assert np.all(disc <= cont + 1e-6)                      # discretising never adds information
        gaps[bits] = float(np.mean(cont - disc))
    assert all(gaps[a] > gaps[b] for a, b in zip((4, 6, 8, 10), (6, 8, 10, 12))), gaps
    assert gaps[12] < 0.05 * gaps[4], gaps
    assert gaps[12] < 5e-3 * dim, gaps
