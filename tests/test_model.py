"""Tests for the networks and densities: PixelCNN causality, encoder shapes, mixture priors, KLs, p(z) fitting."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from acncodec.acn import ACN, ModelConfig
from acncodec.encoder import Encoder
from acncodec.kl import kl_to_mixture, kl_to_unconditional, unit_gaussian_entropy
from acncodec.pixelcnn import GatedPixelCNN
from acncodec.prior import MIN_SCALE, ConditionalPrior, Mixture, UnconditionalPrior
from acncodec.unconditional import fit_unconditional

H, W = 6, 7
LATENT = 3

# (levels, image channels, kernel, layers)
NETS = [(2, 1, 3, 2), (17, 1, 5, 2), (17, 1, 3, 3), (256, 3, 3, 2), (2, 3, 5, 3), (17, 3, 3, 3)]


def make_net(levels, channels, kernel, layers, seed=0):
    torch.manual_seed(seed)
    net = GatedPixelCNN(channels, levels, LATENT, channels=8, layers=layers, kernel=kernel, height=H, width=W,
                        cond_channels=4).eval()
    # Non-zero biases everywhere so no path is silently switched off by an all-zero initialisation.
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() == 1:
                p.uniform_(-0.5, 0.5)
    return net


def random_images(n, channels, levels, seed=0, h=H, w=W):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, levels, (n, channels, h, w), generator=g)


def expected_field(i, j, c, channels, kernel, layers):
    """Pixels (channel, row, col) the output at (c, i, j) must depend on, from the documented layout:
    the vertical stack reads a rectangle of earlier rows that grows by kernel//2 columns each side per layer,
    the horizontal stack reads row i to the left, and channel c reads channels < c of its own pixel."""
    half = kernel // 2
    kh = half + 1
    field = np.zeros((channels, H, W), dtype=bool)
    rows_up = kh + (layers - 1) * (kh - 1)
    field[:, max(0, i - rows_up):i, max(0, j - layers * half):j + layers * half + 1] = True
    field[:, i, max(0, j - (layers * half + 1)):j] = True
    field[:c, i, j] = True
    return field


def dependency(net, x, z, c, i, j):
    """Which input pixels (channel, row, col) the logits at (c, i, j) have a non-zero gradient for."""
    xf = x.float().requires_grad_(True)   # scale_pixels keeps the float input's graph
    out = net.logits(xf, z)
    weights = torch.linspace(0.5, 1.5, out.shape[2])  # generic weights: no cancellation across outputs
    (grad,) = torch.autograd.grad((out[:, c, :, i, j] * weights[None, :]).sum(), xf)
    return (grad != 0).any(0).numpy()


@pytest.mark.parametrize("levels,channels,kernel,layers", NETS)
def test_pixelcnn_gradient_field_is_causal_and_has_no_blind_spot(levels, channels, kernel, layers):
    net = make_net(levels, channels, kernel, layers)
    x = random_images(3, channels, levels)
    z = torch.randn(3, LATENT, generator=torch.Generator().manual_seed(1))
    for c, i, j in itertools.product(range(channels), range(H), range(W)):
        dep = dependency(net, x, z, c, i, j)
        # Causal: nothing at (i, j) from channel c on, and nothing from any later pixel.
        assert not dep[c:, i, j].any(), (c, i, j)
        assert not dep[:, i, j + 1:].any(), (c, i, j)
        assert not dep[:, i + 1:, :].any(), (c, i, j)
        # Exactly the documented receptive field: no blind spot, nothing missing.
        np.testing.assert_array_equal(dep, expected_field(i, j, c, channels, kernel, layers),
                                      err_msg=f"receptive field of output {(c, i, j)}")


@pytest.mark.parametrize("levels,channels,kernel,layers", NETS)
def test_pixelcnn_earlier_pixels_matter(levels, channels, kernel, layers):
    """A network that ignores its input would pass the causality checks; this one would not."""
    net = make_net(levels, channels, kernel, layers)
    x = random_images(2, channels, levels)
    z = torch.randn(2, LATENT, generator=torch.Generator().manual_seed(1))
    for c, i, j in [(0, 0, 1), (0, 1, 0), (channels - 1, H - 1, W - 1), (0, 3, 3)]:
        dep = dependency(net, x, z, c, i, j)
        assert dep[:, :i].any() or dep[:, i, :j].any()
        assert dep[:, i, j - 1].all() if j else dep[:, i - 1, j].all()
    # The very first logit of the first channel sees no pixel at all.
    assert not dependency(net, x, z, 0, 0, 0).any()


@pytest.mark.parametrize("kernel,layers", [(3, 2), (3, 3), (5, 2)])
def test_pixelcnn_sees_up_and_to_the_right(kernel, layers):
    """The classic PixelCNN blind spot: pixels above and to the right of the current one."""
    net = make_net(17, 1, kernel, layers)
    x = random_images(2, 1, 17)
    z = torch.randn(2, LATENT)
    i, j = 3, 3
    dep = dependency(net, x, z, 0, i, j)
    assert dep[0, i - 1, j + 1]
    assert dep[0, i - 2, j + 2]
    assert dep[0, i - 1, j + 3] == (layers * (kernel // 2) >= 3)


@pytest.mark.parametrize("levels,channels,kernel,layers", NETS)
def test_pixelcnn_perturbation_leaves_earlier_logits_identical(levels, channels, kernel, layers):
    """Integer input through the real path: changing pixel (c, i, j) must leave every logit for that pixel's
    channels <= c and every earlier pixel bit for bit unchanged, and change some later logit."""
    net = make_net(levels, channels, kernel, layers)
    x = random_images(2, channels, levels, seed=3)
    z = torch.randn(2, LATENT, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        base = net.logits(x, z)
        for c, i, j in itertools.product(range(channels), range(H), range(W)):
            x2 = x.clone()
            x2[:, c, i, j] = (x2[:, c, i, j] + 1 + levels // 3) % levels
            out = net.logits(x2, z)
            flat_base = base.permute(0, 3, 4, 1, 2).reshape(2, H * W, channels, -1)
            flat_out = out.permute(0, 3, 4, 1, 2).reshape(2, H * W, channels, -1)
            pos = i * W + j
            assert torch.equal(flat_out[:, :pos], flat_base[:, :pos]), (c, i, j)
            assert torch.equal(flat_out[:, pos, :c + 1], flat_base[:, pos, :c + 1]), (c, i, j)
            if c < channels - 1 or pos < H * W - 1:
                later = torch.cat([flat_out[:, pos, c + 1:].flatten(1), flat_out[:, pos + 1:].flatten(1)], 1)
                later_base = torch.cat([flat_base[:, pos, c + 1:].flatten(1),
                                        flat_base[:, pos + 1:].flatten(1)], 1)
                assert not torch.equal(later, later_base), (c, i, j)


@pytest.mark.parametrize("levels,channels,h,w", [(2, 1, 2, 3), (2, 3, 1, 2), (17, 1, 1, 2), (5, 3, 1, 1)])
def test_pixelcnn_joint_distribution_sums_to_one(levels, channels, h, w):
    """Summing r(x|z) over every possible image gives 1 only for a proper autoregressive model."""
    torch.manual_seed(0)
    net = GatedPixelCNN(channels, levels, LATENT, channels=8, layers=2, kernel=3, height=h, width=w,
                        cond_channels=4).eval()
    values = torch.tensor(list(itertools.product(range(levels), repeat=channels * h * w)))
    x = values.view(-1, channels, h, w)
    for seed in range(2):
        z = torch.randn(1, LATENT, generator=torch.Generator().manual_seed(seed)).expand(len(x), -1)
        with torch.no_grad():
            lp = net.log_prob(x, z).double()
        assert lp.shape == (len(x),)
        assert (lp < 0).all()
        assert torch.logsumexp(lp, 0).item() == pytest.approx(0.0, abs=1e-5)


def test_pixelcnn_depends_on_latent():
    net = make_net(17, 1, 3, 2)
    x = random_images(2, 1, 17)
    with torch.no_grad():
        a = net.logits(x, torch.zeros(2, LATENT))
        b = net.logits(x, torch.ones(2, LATENT))
    assert not torch.allclose(a, b)


# -- encoder -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("h,w,c,levels", [(8, 8, 1, 17), (28, 28, 1, 2), (32, 32, 3, 256), (5, 9, 1, 256)])
def test_encoder_output_shape_and_batch_independence(h, w, c, levels):
    torch.manual_seed(0)
    enc = Encoder(h, w, c, levels, latent_dim=6, channels=8, hidden=16).eval()
    x = random_images(4, c, levels, h=h, w=w)
    with torch.no_grad():
        codes = enc(x)
        one = torch.cat([enc(x[k:k + 1]) for k in range(4)])
    assert codes.shape == (4, 6)
    assert codes.dtype == torch.float32
    assert torch.isfinite(codes).all()
    torch.testing.assert_close(codes, one, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(codes[0], codes[1])  # different images, different codes


# -- priors --------------------------------------------------------------------------------------------------

def random_mixture(shape, m, seed=0, scale_lo=0.5, scale_hi=2.0):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(m), size=shape)
    return Mixture(torch.from_numpy(np.log(w)), torch.from_numpy(rng.uniform(-3, 3, shape + (m,))),
                   torch.from_numpy(rng.uniform(scale_lo, scale_hi, shape + (m,))))


def test_conditional_prior_outputs_valid_mixtures():
    torch.manual_seed(0)
    prior = ConditionalPrior(latent_dim=4, components=3, hidden=16)
    codes = torch.randn(2, 5, 4)
    codes[0, 0] = 1e4
    codes[0, 1] = -1e4
    with torch.no_grad():
        mix = prior(codes)
    for t in (mix.log_weights, mix.means, mix.scales):
        assert t.shape == (2, 5, 4, 3)
        assert torch.isfinite(t).all()
    torch.testing.assert_close(mix.log_weights.exp().sum(-1), torch.ones(2, 5, 4))
    assert (mix.scales >= MIN_SCALE).all()
    assert (mix.scales > 0).all()
    # The mixture depends on the neighbour code.
    assert not torch.allclose(mix.means[1, 2], mix.means[1, 3])


def test_mixture_log_prob_matches_scipy():
    mix = random_mixture((3, 4), 5)
    z = torch.from_numpy(np.random.default_rng(1).uniform(-5, 5, (3, 4)))
    w, mu, s = (t.numpy() for t in (mix.log_weights.exp(), mix.means, mix.scales))
    ref = np.log((w * stats.norm.pdf(z.numpy()[..., None], mu, s)).sum(-1))
    got = mix.log_prob(z)
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12, atol=1e-12)
    # Far in a tail, where the naive density underflows, log_prob stays finite and close to the dominant term.
    far = mix.log_prob(torch.full((3, 4), 60.0, dtype=torch.float64))
    assert torch.isfinite(far).all()


def test_mixture_cdf_monotone_and_matches_integrated_density():
    mix = random_mixture((2,), 4, seed=2, scale_lo=0.1, scale_hi=1.5)
    grid = torch.linspace(-25, 25, 200001, dtype=torch.float64)
    z = grid[:, None].expand(-1, 2)
    cdf = mix.cdf(z)
    assert (cdf.diff(dim=0) >= 0).all()
    assert cdf[0].max().item() < 1e-12
    assert cdf[-1].min().item() == pytest.approx(1.0, abs=1e-12)
    dens = mix.log_prob(z).exp()
    integral = torch.cumulative_trapezoid(dens, grid, dim=0)
    for k in range(40000, 200000, 8000):
        np.testing.assert_allclose(cdf[k].numpy(), integral[k - 1].numpy(), atol=1e-7)


def test_unconditional_prior_log_prob_and_marginals():
    rng = np.random.default_rng(3)
    k, d = 3, 4
    prior = UnconditionalPrior(rng.dirichlet(np.ones(k)), rng.normal(0, 2, (k, d)), rng.uniform(0.3, 2, (k, d)))
    z = rng.normal(0, 2, (6, d))
    ref = np.log(sum(prior.weights[c] * stats.multivariate_normal.pdf(z, prior.means[c], np.diag(prior.variances[c]))
                     for c in range(k)))
    np.testing.assert_allclose(prior.log_prob(torch.from_numpy(z)).numpy(), ref, rtol=1e-10)
    marg = prior.marginal()
    ref_marg = np.log(sum(prior.weights[c] * stats.norm.pdf(z, prior.means[c], np.sqrt(prior.variances[c]))
                          for c in range(k)))
    np.testing.assert_allclose(marg.log_prob(torch.from_numpy(z)).numpy(), ref_marg, rtol=1e-10)
    back = UnconditionalPrior.from_dict(prior.to_dict())
    assert np.array_equal(back.means, prior.means) and np.array_equal(back.weights, prior.weights)


# -- KL divergences ------------------------------------------------------------------------------------------

def dense_kl(c, lw, mu, s):
    """KL(N(c, 1) || sum_m w_m N(mu_m, s_m^2)) by trapezoid integration on a dense grid."""
    z = np.linspace(c - 15, c + 15, 300001)
    logq = -0.5 * (z - c) ** 2 - 0.5 * math.log(2 * math.pi)
    comp = lw[:, None] + stats.norm.logpdf(z[None, :], mu[:, None], s[:, None])
    logp = np.logaddexp.reduce(comp, axis=0)
    return np.trapezoid(np.exp(logq) * (logq - logp), z)


def test_kl_to_mixture_matches_numerical_integration():
    n, d, m = 3, 4, 3
    prior = random_mixture((n, d), m, seed=5, scale_lo=0.5, scale_hi=2.5)
    codes = torch.from_numpy(np.random.default_rng(6).uniform(-3, 3, (n, d)))
    got = kl_to_mixture(codes, prior)
    assert got.shape == (n,) and got.dtype == torch.float64
    ref = np.array([sum(dense_kl(codes[a, b].item(), prior.log_weights[a, b].numpy(), prior.means[a, b].numpy(),
                                 prior.scales[a, b].numpy()) for b in range(d)) for a in range(n)])
    assert (ref > 0).all()
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-7)


def test_kl_to_mixture_single_gaussian_closed_form():
    rng = np.random.default_rng(7)
    codes = torch.from_numpy(rng.normal(0, 2, (5, 3)))
    mu = torch.from_numpy(rng.normal(0, 2, (5, 3, 1)))
    s = torch.from_numpy(rng.uniform(0.2, 3, (5, 3, 1)))
    got = kl_to_mixture(codes, Mixture(torch.zeros(5, 3, 1, dtype=torch.float64), mu, s))
    c, m, sd = codes.numpy(), mu.numpy()[..., 0], s.numpy()[..., 0]
    ref = (np.log(sd) + (1 + (c - m) ** 2) / (2 * sd ** 2) - 0.5).sum(-1)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9, atol=1e-10)
    # Same distribution: zero; float32 inputs are accepted and computed in float64.
    same = Mixture(torch.full((5, 3, 2), math.log(0.5)), torch.stack([codes.float()] * 2, -1), torch.ones(5, 3, 2))
    np.testing.assert_allclose(kl_to_mixture(codes.float(), same).numpy(), 0.0, atol=1e-6)


def test_kl_to_mixture_values_are_kl_to_mixture_without_the_gradient(monkeypatch):
    from acncodec import kl
    prior = random_mixture((700, 5), 4, seed=8, scale_lo=0.05, scale_hi=3.0)   # narrow components: skipped terms
    codes = torch.from_numpy(np.random.default_rng(9).uniform(-6, 6, (700, 5)))
    want = kl_to_mixture(codes, prior)
    got = kl.kl_to_mixture_values(codes, prior)
    assert got.dtype == torch.float64 and got.shape == (700,)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)
    monkeypatch.setattr(kl, "_compiled", None)                                 # without numba: torch's, in batches
    np.testing.assert_allclose(kl.kl_to_mixture_values(codes, prior, 8).numpy(), kl_to_mixture(codes, prior, 8).numpy(),
                               rtol=1e-13, atol=1e-13)


def test_one_sample_kl_in_loss_is_unbiased():
    """ACN.loss_terms' one-sample KL averages to the accurate KL; the reconstruction term is -log r >= 0."""
    torch.manual_seed(0)
    net = ACN(2, 2, 1, 3, ModelConfig(latent_dim=3, prior_components=2, prior_hidden=8, encoder_channels=4,
                                      encoder_hidden=8, decoder_channels=4, decoder_layers=1, decoder_kernel=3))
    n = 20000
    code = torch.tensor([[0.3, -1.0, 2.0]])
    neighbour = torch.tensor([[0.5, -0.5, 1.0]])
    x = torch.randint(0, 3, (n, 1, 2, 2))
    with torch.no_grad():
        kl, recon = net.loss_terms(x, code.expand(n, -1), neighbour.expand(n, -1))
        exact = kl_to_mixture(code, net.prior(neighbour)).item()
    assert kl.shape == recon.shape == (n,)
    assert (recon > 0).all()
    se = kl.double().std().item() / math.sqrt(n)
    assert abs(kl.double().mean().item() - exact) < 5 * se


def closed_form_gauss_kl(codes, mean, var):
    return 0.5 * (1 / var + (codes - mean) ** 2 / var - 1 + np.log(var)).sum(-1)


@pytest.mark.parametrize("samples", [1024, 20000])
def test_kl_to_unconditional_single_component_matches_closed_form(samples):
    rng = np.random.default_rng(8)
    d = 4
    mean, var = rng.normal(0, 1, (1, d)), rng.uniform(0.5, 2.0, (1, d))
    prior = UnconditionalPrior(np.ones(1), mean, var)
    codes = rng.normal(0, 1.5, (40, d))
    got = kl_to_unconditional(torch.from_numpy(codes), prior, samples=samples).numpy()
    ref = closed_form_gauss_kl(codes, mean, var)
    # Monte-Carlo standard error of the cross-entropy: Var[(X^2)/(2v)] with X ~ N(c - mu, 1) is (2 + 4 d^2) / 4v^2.
    se = np.sqrt(((2 + 4 * (codes - mean) ** 2) / (4 * var ** 2)).sum(-1) / samples)
    assert np.all(np.abs(got - ref) < 5 * se)
    assert np.mean(np.abs(got - ref)) < 2 * np.mean(se)
    # A duplicated component is the same distribution.
    twin = UnconditionalPrior(np.array([0.25, 0.75]), np.repeat(mean, 2, 0), np.repeat(var, 2, 0))
    np.testing.assert_allclose(kl_to_unconditional(torch.from_numpy(codes), twin, samples=samples).numpy(), got,
                               rtol=1e-10, atol=1e-10)


def test_kl_to_unconditional_is_deterministic_and_uses_exact_entropy():
    prior = UnconditionalPrior(np.ones(1), np.zeros((1, 3)), np.ones((1, 3)))
    codes = torch.zeros(70, 3)  # more than one chunk of 32
    a = kl_to_unconditional(codes, prior, samples=4000, seed=3)
    b = kl_to_unconditional(codes, prior, samples=4000, seed=3)
    assert a.shape == (70,) and torch.equal(a, b)
    assert torch.equal(a, a[0].expand(70))  # same code, same fixed samples, same value
    assert abs(a[0].item()) < 0.1
    assert unit_gaussian_entropy(3) == pytest.approx(1.5 * math.log(2 * math.pi * math.e))


# -- unconditional prior fit ---------------------------------------------------------------------------------

CENTRES = np.array([[8.0, 8.0], [8.0, -8.0], [-8.0, 8.0], [-8.0, -8.0]])


def test_fit_unconditional_finds_clusters():
    rng = np.random.default_rng(1)
    codes = np.repeat(CENTRES, 100, 0) + 0.3 * rng.standard_normal((400, 2))
    prior, sel = fit_unconditional(codes, seed=0, candidates=(1, 2, 4, 8))
    assert sel["components"] > 1
    assert sel["components"] >= 4
    assert sel["components"] == max(sel["validation_loglik"], key=sel["validation_loglik"].get)
    assert set(sel["validation_loglik"]) == {1, 2, 4, 8}
    assert prior.components == sel["components"]
    assert prior.weights.sum() == pytest.approx(1.0, abs=1e-9)
    assert prior.means.shape == prior.variances.shape == (prior.components, 2)
    assert (prior.variances > 0).all()
    for centre in CENTRES:  # every cluster is covered by a component
        assert np.linalg.norm(prior.means - centre, axis=1).min() < 1.0
    # Fitted to z ~ q(z|x) = N(c, I): component variances are about 1 + 0.3^2, not 0.3^2.
    assert prior.variances.min() > 0.5
    # The fitted density puts much more mass on the clusters than between them.
    lp = prior.log_prob(torch.from_numpy(np.vstack([CENTRES, np.zeros((1, 2))])))
    assert (lp[:4] > lp[4] + 10).all()


def test_fit_unconditional_single_gaussian_uses_few_components():
    codes = np.random.default_rng(2).standard_normal((400, 3))
    prior, sel = fit_unconditional(codes, seed=0, candidates=(1, 2, 4, 8))
    assert sel["components"] <= 2
    assert prior.weights.sum() == pytest.approx(1.0, abs=1e-9)
    assert sel["validation_size"] == 40


def test_a_model_travels_as_its_files_bytes():
    """How a model reaches worker processes: the bytes `save` would write, loaded by hash on the other side."""
    from acncodec import modelfile
    from acncodec.errors import AcnError
    from helpers import SPECS, tiny_exact_model, tiny_model
    for model in (tiny_model(SPECS["grey"]), tiny_exact_model(SPECS["grey"])):
        blob, digest = modelfile.to_bytes(model)
        back = modelfile.from_bytes(blob, "sent")
        assert digest == model.hash == back.hash and back.numerics == model.numerics
        damaged = bytearray(blob)
        damaged[len(blob) // 2] ^= 0xFF
        with pytest.raises(AcnError, match="sent"):
            modelfile.from_bytes(bytes(damaged), "sent")
