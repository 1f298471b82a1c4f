"""Codecs as push/pop pairs over one ANS stack (constriction's AnsCoder), composed by small combinators.

A codec is an object with `push(stack, symbols)` and `pop(stack) -> symbols`, exact inverses of each other:
after `push(stack, s)`, `pop(stack)` returns `s` and leaves the stack as it was before the push. Models are
batched probability tables, so one call codes a whole round. Bigger codecs are compositions:
`autoregressive` codes pixels over a stepper, `bits_back` makes a latent-variable codec out of a prior,
a likelihood and a posterior (used both for the ACN's latent and for the unconditional mixture head).

Probabilities are float64 arrays that both sides compute identically (the seam, `numerics.py`, is
responsible for that); constriction quantises them deterministically (`perfect=False`, also much faster).
Popping from an empty stack is still exactly invertible in constriction (it yields a symbol without
consuming bits, and pushing it back restores the empty state), so a shortage of initial bits costs rate,
never correctness; the protocol puts seed words beneath the first pops so that rate is not wasted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import constriction
import numpy as np

_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
_BERNOULLI = constriction.stream.model.Bernoulli(perfect=False)


def new_stack(words: np.ndarray | None = None) -> constriction.stream.stack.AnsCoder:
    if words is None:
        return constriction.stream.stack.AnsCoder()
    return constriction.stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))


class StackExhausted(Exception):
    """A pop left the stack with less than one word. `round` and `decoded` say where (set by the protocol)."""

    def __init__(self, round: int = -1, decoded: int = 0):
        super().__init__(round, decoded)
        self.round, self.decoded = round, decoded


class GuardedStack:
    """An ANS stack that refuses a pop that leaves it with less than one word.

    The sender starts on the seed words, which hold a datum's bits-back pop with a word to spare, and checks
    after every pop; the receiver passes through exactly the sender's states, so on his side a drained stack
    means the payload is exhausted: a damaged or forged archive stops there rather than decoding zeros until
    the claimed count.
    """

    def __init__(self, stack):
        self.stack = stack

    def decode(self, *args):
        symbols = self.stack.decode(*args)
        if self.stack.num_valid_bits() < 32:
            raise StackExhausted
        return symbols

    def __getattr__(self, name):
        return getattr(self.stack, name)


def stack_bits(stack) -> int:
    """Size of the stack's compressed representation in bits (what an archive would store)."""
    return 32 * len(stack.get_compressed())


@dataclass(frozen=True)
class Categorical:
    """Independent categoricals: probs (..., K) code symbols (...,) in 0..K-1."""

    probs: np.ndarray

    def push(self, stack, symbols: np.ndarray) -> None:
        probs = np.asarray(self.probs)
        stack.encode_reverse(np.ascontiguousarray(symbols, dtype=np.int32).reshape(-1), _CATEGORICAL,
                             np.ascontiguousarray(probs, dtype=np.float64).reshape(-1, probs.shape[-1]))

    def pop(self, stack) -> np.ndarray:
        probs = np.asarray(self.probs)
        flat = np.ascontiguousarray(probs, dtype=np.float64).reshape(-1, probs.shape[-1])
        return stack.decode(_CATEGORICAL, flat).reshape(probs.shape[:-1]).astype(np.int64)


@dataclass(frozen=True)
class Bernoulli:
    """Independent bits: p_one (...) is P(symbol = 1)."""

    p_one: np.ndarray

    def push(self, stack, bits: np.ndarray) -> None:
        stack.encode_reverse(np.ascontiguousarray(bits, dtype=np.int32).reshape(-1), _BERNOULLI,
                             np.ascontiguousarray(self.p_one, dtype=np.float64).reshape(-1))

    def pop(self, stack) -> np.ndarray:
        flat = np.ascontiguousarray(self.p_one, dtype=np.float64).reshape(-1)
        return stack.decode(_BERNOULLI, flat).reshape(np.shape(self.p_one)).astype(np.int64)


def pixel_codec(probs: np.ndarray, binary: bool):
    """The codec of one pixel channel (or many): P(1) for binary data, a categorical over levels otherwise."""
    return Bernoulli(probs) if binary else Categorical(probs)


@dataclass(frozen=True)
class Autoregressive:
    """Pixels (B, C, H, W) coded in raster order (row, column, channel), each under the stepper's
    prediction given everything before it. `stepper()` makes a fresh stepper (see `raster.py`).

    push needs every pixel's probabilities given the true pixels before it. `score(x)`, when given, computes
    them in one full pass ((B, C, H, W) P(1), or (B, C, H, W, levels)); it may stand in for the stepper only
    when the numerics make the two agree bit for bit (`ProbabilityModel.full_pass_exact`). Otherwise push
    replays the receiver's steps with the true pixels. Either way every symbol is pushed in one call. pop
    decodes step by step, which is the only way the receiver can.
    """

    stepper: Callable[[], object]
    batch: int
    shape: tuple[int, int, int]     # (C, H, W)
    binary: bool
    score: Callable[[np.ndarray], np.ndarray] | None = None
    #: When a list, push appends each datum's -ln P(x) under the probabilities it codes with (B,) float64:
    #: the reconstruction term of the estimate, measured on the coding pass itself.
    meter: list | None = None

    def push(self, stack, x: np.ndarray) -> None:
        channels, height, width = self.shape
        steps = channels * height * width
        if self.score is not None:
            p = self.score(x)
            probs = p.transpose((2, 3, 1, 0) + tuple(range(4, p.ndim))).reshape((steps,) + p.shape[:1] + p.shape[4:])
        else:
            from .raster import raster
            replayed = []

            def replay(p, i, j, c):
                replayed.append(p)
                return x[:, c, i, j]

            raster(self.stepper(), self.batch, self.shape, replay)
            probs = np.stack(replayed)
        symbols = np.ascontiguousarray(x.transpose(2, 3, 1, 0)).reshape(steps, -1)  # (i, j, c) outer
        pixel_codec(probs, self.binary).push(stack, symbols)
        if self.meter is not None:
            self.meter.append(information_nats(probs, symbols, self.binary))

    def pop(self, stack) -> np.ndarray:
        from .raster import raster
        return raster(self.stepper(), self.batch, self.shape,
                      lambda p, i, j, c: pixel_codec(p, self.binary).pop(stack))


def information_nats(probs: np.ndarray, symbols: np.ndarray, binary: bool) -> np.ndarray:
    """-ln P of symbols (steps, B) under probs (steps, B) P(1) or (steps, B, K), summed over steps: (B,)."""
    if binary:
        p = np.where(symbols == 1, probs, 1.0 - probs)
    else:
        p = np.take_along_axis(probs, symbols[..., None].astype(np.int64), axis=-1)[..., 0]
    return -np.log(p).sum(axis=0)


def pixels(pm, buckets: np.ndarray, batch: int, meter: list | None = None) -> Autoregressive:
    """The pixel codec of a round given its latent buckets: the stepper, and the full pass where it is exact.
    `meter`: see `Autoregressive.meter`."""
    score = (lambda x: pm.score(x, buckets)) if pm.full_pass_exact else None
    return Autoregressive(lambda: pm.stepper(buckets), batch, pm.shape, pm.binary, score, meter)


@dataclass(frozen=True)
class BitsBack:
    """Bits-back coding of x with a latent y (Frey and Hinton 1997; Townsend et al. 2019, BB-ANS).

    prior: a codec for y; likelihood(y): a codec for x given y; posterior(x): a codec for y given x.
    push: pop y under the posterior (taking bits back), push x under the likelihood, push y under the prior.
    pop: the exact inverse. The net cost is -log p(x|y) - log p(y) + log q(y|x), so KL(q||p) for the latent.
    """

    prior: object
    likelihood: Callable[[np.ndarray], object]
    posterior: Callable[[np.ndarray], object]

    def push(self, stack, x: np.ndarray) -> None:
        y = self.posterior(x).pop(stack)
        self.likelihood(y).push(stack, x)
        self.prior.push(stack, y)

    def pop(self, stack) -> np.ndarray:
        y = self.prior.pop(stack)
        x = self.likelihood(y).pop(stack)
        self.posterior(x).push(stack, y)
        return x


@dataclass(frozen=True)
class DimByDim:
    """Symbols (B, D) coded one dimension at a time: dimension d under the categoricals probs(d, symbols) (B, K),
    which may read only symbols[:, :d]. pop decodes d = 0, 1, ... and passes the symbols decoded so far (the
    later columns zero); push codes the dimensions in reverse, so that the stack gives them back in order."""

    probs: Callable[[int, np.ndarray], np.ndarray]
    batch: int
    dims: int

    def push(self, stack, symbols: np.ndarray) -> None:
        symbols = np.asarray(symbols, dtype=np.int64)
        for d in reversed(range(self.dims)):
            Categorical(self.probs(d, symbols)).push(stack, symbols[:, d])

    def pop(self, stack) -> np.ndarray:
        out = np.zeros((self.batch, self.dims), dtype=np.int64)
        for d in range(self.dims):
            out[:, d] = Categorical(self.probs(d, out)).pop(stack)
        return out


def components(weights: np.ndarray, likelihood: Callable, component_posterior: Callable, batch: int):
    """A latent under a mixture with bits back on its component k: weights (K,), likelihood(ks) a codec for the
    latents given components ks (B,), component_posterior(latents) -> q(k|z) (B, K). One component carries no
    information (and constriction cannot code a one-symbol alphabet): z is then coded under it alone."""
    if len(weights) == 1:
        return likelihood(np.zeros(batch, dtype=np.int64))
    return BitsBack(prior=Categorical(np.broadcast_to(weights, (batch, len(weights)))),
                    likelihood=likelihood, posterior=lambda z: Categorical(component_posterior(z)))


def mixture(weights: np.ndarray, component_probs: np.ndarray, component_posterior: Callable, batch: int):
    """Bucketed latents (B, D) under the joint mixture sum_k w_k prod_d P_k,d, with bits back on k.

    weights (K,), component_probs (K, D, nbuckets); component_posterior(buckets) -> q(k|z) (B, K). Costs
    -log p(z) on average, not -log w_k p(z|k). A single component carries no information (and constriction
    cannot code a one-symbol alphabet): z is then coded under it alone.
    """
    return components(weights, lambda ks: Categorical(component_probs[ks]), component_posterior, batch)
