"""p(z) with full covariances: the float prior, its integer chain tables (`exact_tables.GaussianHead`), the head
codec that codes a latent one dimension at a time, and whole archives with it."""

import math

import numpy as np
import pytest
import torch

from acncodec import api, modelfile
from acncodec.buckets import BucketTable, HeadTables
from acncodec.coding import exact_tables as et
from acncodec.coding.codecs import DimByDim
from acncodec.coding.exact_numerics import ExactModel
from acncodec.prior import UnconditionalPrior
from acncodec.quantize import calibration_set, quantise_model
from acncodec.unconditional import fit_unconditional
from tests.helpers import SPECS, random_images, tiny_model
from tests.test_codecs import check_codec, filled_stack

TOTAL = 1 << et.MASS_BITS


def full_prior(dim: int, k: int, seed: int, correlation: float = 0.8) -> UnconditionalPrior:
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.5, 1.5, k)
    mix = rng.normal(size=(k, dim, dim)) * correlation
    cov = mix @ mix.transpose(0, 2, 1) + np.eye(dim) * 0.3
    return UnconditionalPrior(w / w.sum(), rng.normal(0, 0.8, (k, dim)), np.zeros((k, dim)), cov)


@pytest.fixture(scope="module")
def setting():
    prior = full_prior(dim=4, k=3, seed=0)
    table = BucketTable.from_reference(prior.marginal(), 6)
    return table, prior, et.LatentTables.build(table, prior, 6)


def buckets_of(table: BucketTable, z: np.ndarray) -> np.ndarray:
    """The bucket index of each coordinate of z (B, D)."""
    return np.stack([np.searchsorted(table.edges[d][1:-1], z[:, d], side="right") for d in range(z.shape[1])], 1)


def exact_joint_log2(tables, buckets) -> np.ndarray:
    """log2 p(z) of bucketed latents under the integer head: log2 sum_k w_k prod_d P_kd (exact ints, then log)."""
    joint = et._head_joint(tables, buckets).sum(axis=1)
    return np.array([math.log2(int(v)) for v in joint]) - (tables.dim + 1) * et.MASS_BITS


# -- the float prior ---------------------------------------------------------------------------------------------

def test_full_log_prob_is_the_gaussian_mixtures():
    prior = full_prior(dim=3, k=4, seed=1)
    z = torch.from_numpy(np.random.default_rng(2).normal(0, 2, (50, 3)))
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=torch.from_numpy(prior.weights)),
        torch.distributions.MultivariateNormal(torch.from_numpy(prior.means), torch.from_numpy(prior.covariances)))
    np.testing.assert_allclose(prior.log_prob(z).numpy(), mix.log_prob(z).numpy(), rtol=1e-10, atol=1e-10)
    assert prior.log_prob(z.reshape(5, 10, 3)).shape == (5, 10)
    assert np.array_equal(prior.variances, np.diagonal(prior.covariances, axis1=1, axis2=2))


def test_full_prior_draws_have_its_covariance_and_survive_the_dict():
    prior = full_prior(dim=3, k=1, seed=3)
    z = prior.sample(40_000, torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_allclose(np.cov(z.T), prior.covariances[0], atol=0.05 * np.abs(prior.covariances).max())
    again = UnconditionalPrior.from_dict(prior.to_dict())
    assert again.full and np.array_equal(again.covariances, prior.covariances)
    diag = UnconditionalPrior(prior.weights, prior.means, prior.variances)
    assert set(diag.to_dict()) == {"weights", "means", "variances"}   # a diagonal prior's dict is unchanged
    with pytest.raises(ValueError, match="exact numerics only"):
        HeadTables.from_prior(prior, BucketTable.from_reference(prior.marginal(), 4))


def test_full_fit_finds_a_correlation_the_diagonal_one_misses():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3000, 1))
    codes = np.concatenate([x, 0.9 * x + 0.2 * rng.normal(size=(3000, 1))], 1) * 3
    diag, _ = fit_unconditional(codes, candidates=(1, 2))
    full, sel = fit_unconditional(codes, candidates=(1, 2), covariance="full")
    assert full.full and not diag.full and sel["covariance"] == "full"
    z = torch.from_numpy(codes + rng.normal(size=codes.shape))
    assert full.log_prob(z).mean() > diag.log_prob(z).mean() + 0.3


# -- integer tables ----------------------------------------------------------------------------------------------

def test_chain_rows_are_masses_and_agree_with_the_posteriors_picks(setting):
    table, _, tables = setting
    rng = np.random.default_rng(5)
    buckets = rng.integers(0, table.buckets, (40, tables.dim))
    buckets[0], buckets[1] = 0, table.buckets - 1                    # both ends of every dimension
    picked = et._head_picked(tables, buckets)                        # (B, K, D)
    for k in range(len(tables.head_weights)):
        ks = np.full(len(buckets), k)
        for d in range(tables.dim):
            rows = et.full_head_masses(tables, ks, d, buckets)
            assert rows.min() >= 1 and np.all(rows.sum(-1) == TOTAL)
            assert np.array_equal(rows[np.arange(len(buckets)), buckets[:, d]], picked[:, k, d])
            later = buckets.copy()
            later[:, d:] = rng.integers(0, table.buckets, later[:, d:].shape)   # dimensions >= d are not read
            assert np.array_equal(et.full_head_masses(tables, ks, d, later), rows)


def test_chain_rows_are_the_gaussians_conditionals(setting):
    """P_kd(bucket | earlier buckets) is the float conditional N(m_kd, s_kd^2) of the prior's Gaussian, within
    the integer formats' precision."""
    table, prior, tables = setting
    rng = np.random.default_rng(6)
    buckets = rng.integers(0, table.buckets, (30, tables.dim))
    values = tables.centres[np.arange(tables.dim), buckets] / 2.0 ** et.CODE_FRAC
    for k in range(prior.components):
        mu, cov = prior.means[k], prior.covariances[k]
        for d in range(tables.dim):
            rows = et.full_head_masses(tables, np.full(len(buckets), k), d, buckets) / TOTAL
            gain = cov[d, :d] @ np.linalg.inv(cov[:d, :d]) if d else np.zeros(0)
            mean = mu[d] + (values[:, :d] - mu[:d]) @ gain
            scale = math.sqrt(cov[d, d] - (gain @ cov[:d, d] if d else 0.0))
            cdf = 0.5 * np.vectorize(math.erfc)(-(table.edges[d][None, :] - mean[:, None]) / scale / math.sqrt(2))
            want = np.maximum(np.diff(cdf, axis=1), 1e-300)
            kl = np.sum(want * (np.log(want) - np.log(rows)), axis=1)
            assert kl.max() < 1e-5, (k, d, kl.max())


def test_crafted_full_head_tables_are_refused(setting):
    _, _, tables = setting
    good = tables.to_dict()
    assert "head_masses" not in good and et.LatentTables.from_dict(good).head_full is not None
    for key, change in [("head_coefs", lambda a: a + np.triu(np.ones_like(a))),     # reads a later dimension
                        ("head_coefs", lambda a: a + (1 << et.COEF_LIMIT_BITS)),
                        ("head_inv_scales", lambda a: a * 0),
                        ("head_offsets", lambda a: a[:, :-1])]:
        bad = dict(good, **{key: change(good[key].copy())})
        with pytest.raises(ValueError):
            et.LatentTables.from_dict(bad)


# -- the head codec ------------------------------------------------------------------------------------------------

def test_one_components_chain_codes_at_its_rate(setting):
    table, prior, tables = setting
    rng = np.random.default_rng(7)
    z = prior.sample(60, torch.Generator().manual_seed(1)).numpy()
    buckets = buckets_of(table, z)
    ks = rng.integers(0, prior.components, len(buckets))
    codec = DimByDim(lambda d, b: et.to_constriction(et.full_head_masses(tables, ks, d, b)), len(ks), tables.dim)
    picked = et._head_picked(tables, buckets)[np.arange(len(ks)), ks]          # (B, D)
    check_codec(codec, buckets, float(np.sum(et.MASS_BITS - np.log2(picked))))


def test_full_head_codes_latents_at_minus_log_p(setting):
    """With bits back on the component the net cost is -log2 p(z) of the integer mixture, not -log2 w_k p(z|k)."""
    table, prior, tables = setting
    pm = ExactModel.__new__(ExactModel)                  # the head codec needs only the latent tables
    pm.latent, pm.latent_dim = tables, tables.dim
    pm.head_weights = et.to_constriction(tables.head_weights)
    z = prior.sample(300, torch.Generator().manual_seed(2)).numpy()
    buckets = buckets_of(table, z)
    check_codec(pm.head_codec(len(buckets)), buckets, float(-exact_joint_log2(tables, buckets).sum()),
                stack=filled_stack(4096))


def test_full_head_saves_what_the_covariances_are_worth(setting):
    """On latents drawn from a correlated p(z), the integer full head saves over the integer diagonal head
    (the same means and variances) what the continuous densities say it should: 0.363 bits a latent here."""
    table, prior, full = setting
    diagonal = UnconditionalPrior(prior.weights, prior.means, prior.variances)
    diag = et.LatentTables.build(table, diagonal, 6)
    z = prior.sample(2000, torch.Generator().manual_seed(3))
    buckets = buckets_of(table, z.numpy())
    saved = (exact_joint_log2(full, buckets) - exact_joint_log2(diag, buckets)).mean()
    should = ((prior.log_prob(z) - diagonal.log_prob(z)).mean().item()) / math.log(2)
    assert should > 0.3 and abs(saved - should) < 0.05, (saved, should)


# -- whole archives ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def full_model():
    spec = SPECS["digits-like"]
    model = tiny_model(spec, seed=3)
    codes = np.random.default_rng(8).normal(size=(400, model.config.latent_dim)) @ np.array(
        [[1.0, 0.8, 0.0], [0.0, 0.6, 0.5], [0.0, 0.0, 0.7]])
    prior, selection = fit_unconditional(codes, candidates=(1, 2), covariance="full")
    exact = quantise_model(model, calibration_set(random_images(spec, 32, seed=9)), prior, selection)
    return spec, exact


@pytest.mark.parametrize("order", ["tour", "original", "set", "associative"])
def test_archives_with_a_full_head_restore_every_pixel(full_model, order, tmp_path):
    spec, exact = full_model
    path = tmp_path / "full.acn"
    modelfile.save(exact, path)
    loaded = modelfile.load(path)
    assert loaded.unconditional.full and ExactModel(loaded).latent.head_full is not None
    images = random_images(spec, 70, seed=11)
    blob, report = api.compress(images, loaded, order=order, chains=4, baseline=False)
    out, _ = api.decompress(blob, loaded)
    if order == "original":
        assert np.array_equal(out.images, images.images)
    else:
        key = lambda a: sorted(x.tobytes() for x in a)
        assert key(out.images) == key(images.images)
    # Within a few % of the estimate: at 70 images the seed words and the chains' ends weigh 1-3 nats an image.
    assert 0.98 < report["payload_nats_per_image"] / report["estimate_nats_per_image"] < 1.08, report
