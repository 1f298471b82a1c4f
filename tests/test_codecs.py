"""Every codec is a push/pop pair: pop inverts push exactly (symbols and stack), and push costs what the
model says, -sum log2 P of the coded symbols, to within a small stated tolerance."""

import numpy as np
import pytest

from acncodec.coding.codecs import Autoregressive, Bernoulli, BitsBack, Categorical, mixture, new_stack
from acncodec.coding.raster import raster

#: ANS rate overhead allowed: 0.5% of the information content (constriction quantises probabilities to
#: 24 bits; perfect=False rounding) plus 64 bits for the coder's state and word granularity.
RELATIVE_SLACK, ABSOLUTE_SLACK = 0.005, 64


def filled_stack(words: int = 64, seed: int = 0):
    """A stack with random words beneath, so bits-back pops have real bits to take."""
    return new_stack(np.random.default_rng(seed).integers(0, 2**32, words, dtype=np.uint64).astype(np.uint32))


def check_codec(codec, symbols, information_bits: float, stack=None):
    """push then pop: same symbols, same stack; the growth in valid bits is -sum log2 P within tolerance."""
    stack = stack or filled_stack()
    before_words, before_bits = stack.get_compressed().copy(), stack.num_valid_bits()
    codec.push(stack, symbols)
    grown = stack.num_valid_bits() - before_bits
    assert abs(grown - information_bits) <= RELATIVE_SLACK * information_bits + ABSOLUTE_SLACK, \
        (grown, information_bits)
    decoded = codec.pop(stack)
    assert np.array_equal(decoded, symbols)
    assert np.array_equal(stack.get_compressed(), before_words)
    return grown


def random_probs(rng, shape, k):
    p = rng.gamma(0.5, size=shape + (k,)) + 1e-3
    return p / p.sum(-1, keepdims=True)


def test_categorical_round_trip_and_rate():
    rng = np.random.default_rng(1)
    probs = random_probs(rng, (40, 16), 9)
    symbols = np.array([[rng.choice(9, p=row) for row in block] for block in probs])
    info = -np.log2(np.take_along_axis(probs, symbols[..., None], -1)).sum()
    check_codec(Categorical(probs), symbols, info)


def test_bernoulli_round_trip_and_rate():
    rng = np.random.default_rng(2)
    p = rng.uniform(0.02, 0.98, (30, 50))
    bits = (rng.uniform(size=p.shape) < p).astype(np.int64)
    info = -np.log2(np.where(bits == 1, p, 1 - p)).sum()
    check_codec(Bernoulli(p), bits, info)


class CountingStepper:
    """A toy autoregressive model: P(next pixel) depends on the sum of everything before it in the batch row
    and on the channel, so replay and decoding must visit pixels in the same order to agree."""

    def __init__(self, batch, channels, levels):
        self.total = np.zeros(batch, dtype=np.int64)
        self.levels = levels
        self.log = []

    def predict(self, i, j, c, pixel):
        seen = self.total + pixel[:, :c].sum(1) + 3 * c + i
        logits = -0.3 * np.abs(np.arange(self.levels)[None, :] - (seen[:, None] % self.levels))
        p = np.exp(logits)
        return p / p.sum(1, keepdims=True)

    def set_pixel(self, i, j, pixel):
        self.log.append((i, j))
        self.total += pixel.sum(1)


def autoregressive_information(x, levels):
    stepper, info = CountingStepper(x.shape[0], x.shape[1], levels), [0.0]

    def pick(p, i, j, c):
        info[0] -= np.log2(p[np.arange(len(p)), x[:, c, i, j]]).sum()
        return x[:, c, i, j]
    raster(stepper, x.shape[0], x.shape[1:], pick)
    return info[0], stepper.log


def test_autoregressive_round_trip_rate_and_raster_order():
    rng = np.random.default_rng(3)
    levels, shape = 5, (3, 4, 5)
    x = rng.integers(0, levels, (6,) + shape)
    info, visited = autoregressive_information(x, levels)
    assert visited == [(i, j) for i in range(4) for j in range(5)]
    codec = Autoregressive(lambda: CountingStepper(6, 3, levels), 6, shape, binary=False)
    check_codec(codec, x, info)


def exact_posterior_model(rng, batch, ny, nx):
    """A latent-variable model with its exact posterior: bits-back then costs exactly -log2 p(x) per item."""
    prior = random_probs(rng, (), ny)                       # p(y)
    like = random_probs(rng, (ny,), nx)                     # p(x | y)
    joint = prior[:, None] * like                           # (ny, nx)
    marginal = joint.sum(0)
    posterior = (joint / marginal).T                        # p(y | x): (nx, ny)
    codec = BitsBack(prior=Categorical(np.broadcast_to(prior, (batch, ny))),
                     likelihood=lambda y: Categorical(like[y]),
                     posterior=lambda x: Categorical(posterior[x]))
    return codec, marginal


def test_bits_back_costs_minus_log_marginal():
    rng = np.random.default_rng(4)
    codec, marginal = exact_posterior_model(rng, 200, ny=6, nx=7)
    x = rng.choice(7, size=200, p=marginal)
    check_codec(codec, x, -np.log2(marginal[x]).sum(), stack=filled_stack(400))


def test_bits_back_without_initial_bits_still_inverts():
    """On an empty stack the posterior pop has no bits to take: the rate suffers, never correctness."""
    rng = np.random.default_rng(5)
    codec, marginal = exact_posterior_model(rng, 20, ny=6, nx=7)
    x = rng.choice(7, size=20, p=marginal)
    stack = new_stack()
    codec.push(stack, x)
    assert np.array_equal(codec.pop(stack), x) and stack.is_empty()


@pytest.mark.parametrize("k", [1, 4])
def test_mixture_costs_minus_log_mixture_probability(k):
    rng = np.random.default_rng(6 + k)
    d, nb, batch = 5, 8, 100
    weights = random_probs(rng, (), k)
    comps = random_probs(rng, (k, d), nb)

    def posterior(buckets):
        joint = weights[None, :] * np.prod(comps[:, np.arange(d), buckets], axis=-1).T   # (B, K)
        return joint / joint.sum(1, keepdims=True)

    ks = rng.choice(k, size=batch, p=weights)
    z = np.array([[rng.choice(nb, p=comps[kk, dd]) for dd in range(d)] for kk in ks])
    p_z = (weights[None, :] * np.prod(comps[:, np.arange(d), z], axis=-1).T).sum(1)
    check_codec(mixture(weights, comps, posterior, batch), z, -np.log2(p_z).sum(), stack=filled_stack(400))


def test_check_codec_catches_a_wasteful_codec():
    """The rate check is not vacuous: a codec that codes under the wrong probabilities still round-trips,
    and the check fails it."""
    rng = np.random.default_rng(7)
    probs = random_probs(rng, (200,), 8)
    symbols = np.array([rng.choice(8, p=row) for row in probs])
    info = -np.log2(probs[np.arange(200), symbols]).sum()
    uniform = Categorical(np.full((200, 8), 1 / 8))
    with pytest.raises(AssertionError):
        check_codec(uniform, symbols, info)
