"""The set orders: the data sent as a multiset, the order of each round drawn from the stack.

The order is coded by the multiset codec (multiset.py): the sender draws each round's data from the data
still to send by popping their ranks, the receiver pushes them back once he has decoded the round, so the
stream is shorter by log N! - sum_i log m_i! (m_i the multiplicities of identical images). Rounds are laid
out as in the other orders (order.py: chain_layout), only which data fill them is drawn.

- set: every latent under the unconditional mixture, as in the original order.
- associative: a latent of a round with H data already held goes under a mixture with equal weights over
  H + 1 components: the unconditional mixture and p(z | c_j) for each held datum j (its rank in the held
  multiset), with bits back on the component. The latent variable is then y = (k, z):
    prior      p(k) p(z | k): k uniform over H + 1, z under component k's bucket tables;
    likelihood r(x | z);
    posterior  q(z | x) r(k | z, x): r a categorical over the unconditional component and the NEIGHBOURS
               held data whose codes are nearest the datum's own code (ProbabilityModel.pointer_weights),
  one `BitsBack` codec. Pointing costs log(H + 1), about what the order's refund gives back, so the net cost
  of a latent approaches its KL to the nearest decoded neighbours' priors (bench/associative_set.py).
  The codes that index and condition (the held data's, and each datum's own for the neighbour search) are
  computed one image at a time: the sender needs them for data whose round she has not drawn yet, so they
  cannot depend on a round's batch. Nearest: smallest float64 squared distance, ties to the lower rank.
A first round (H = 0) codes under the unconditional mixture alone. Data come back in canonical order.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from .codecs import BitsBack, Categorical, GuardedStack, StackExhausted, new_stack, pixels
from .multiset import UNIFORM, MultisetOrder, SortedMultiset, image_keys
from .numerics import ProbabilityModel
from .order import active_counts, seed_words

#: Components r(k | z, x) keeps besides the unconditional one: the held data nearest the datum by code.
NEIGHBOURS = 16


def image_codes(pm: ProbabilityModel, x: np.ndarray) -> np.ndarray:
    """E(x) of each image (n, C, H, W) as if computed on its own: the same whatever round it is in. Batch-
    invariant numerics give that in one call (they block the work themselves); otherwise one image per call."""
    if not len(x):
        return np.empty((0, pm.latent_dim), dtype=np.float32)
    if pm.batch_invariant:
        return pm.encode(x)
    return np.concatenate([pm.encode(x[i:i + 1]) for i in range(len(x))])


def nearest(held: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """Ranks (n, min(k, H)) of the held codes nearest each code: float64 squared distance, ties to the lower rank."""
    h64 = held.astype(np.float64)
    out = np.empty((len(codes), min(k, len(held))), dtype=np.int64)
    for i, c in enumerate(codes.astype(np.float64)):
        diff = h64 - c
        out[i] = np.argsort(np.sum(diff * diff, axis=1), kind="stable")[:out.shape[1]]
    return out


def keys_to_images(keys: list[bytes], shape: tuple[int, int, int]) -> np.ndarray:
    """Keys (pixel bytes, (H, W, C) row-major) back to images (n, C, H, W) uint8."""
    channels, height, width = shape
    hwc = np.stack([np.frombuffer(k, dtype=np.uint8).reshape(height, width, channels) for k in keys])
    return np.ascontiguousarray(hwc.transpose(0, 3, 1, 2))


class Held:
    """The held multiset (the receiver's data so far; the sender's data still to draw), with image codes."""

    def __init__(self, keys=(), code_of: dict | None = None):
        self.multiset = SortedMultiset(keys)
        self.code_of = {} if code_of is None else code_of

    def __len__(self) -> int:
        return len(self.multiset)

    def codes(self, dim: int) -> np.ndarray:
        """Codes in rank order, (H, D)."""
        if not len(self.multiset):
            return np.empty((0, dim), dtype=np.float32)
        return np.stack([self.code_of[k] for k in self.multiset.keys])


class PointerPrior:
    """p(k) p(z | k) for y = (k, buckets): k uniform over H + 1, 0 the unconditional mixture, j >= 1 the
    held datum of rank j - 1. Rows pointing at a datum are coded first, then the unconditional ones."""

    def __init__(self, pm: ProbabilityModel, batch: int, held_codes: np.ndarray):
        self.pm, self.batch, self.held_codes = pm, batch, held_codes
        self.sizes = np.full(batch, len(held_codes) + 1, dtype=np.int32)

    def _groups(self, k):
        return np.flatnonzero(k > 0), np.flatnonzero(k == 0)

    def push(self, stack, y) -> None:
        k, buckets = y
        pointed, alone = self._groups(k)
        pm = self.pm
        if len(alone):
            pm.head_codec(len(alone)).push(stack, buckets[alone])
        if len(pointed):
            Categorical(pm.prior_probs(self.held_codes[k[pointed] - 1])).push(stack, buckets[pointed])
        stack.encode_reverse(k.astype(np.int32), UNIFORM, self.sizes)

    def pop(self, stack):
        k = stack.decode(UNIFORM, self.sizes).astype(np.int64)
        pointed, alone = self._groups(k)
        pm = self.pm
        buckets = np.empty((self.batch, pm.latent_dim), dtype=np.int64)
        if len(pointed):
            buckets[pointed] = Categorical(pm.prior_probs(self.held_codes[k[pointed] - 1])).pop(stack)
        if len(alone):
            buckets[alone] = pm.head_codec(len(alone)).pop(stack)
        return k, buckets


class PointerPosterior:
    """q(z | x) r(k | z, x) for y = (k, buckets): z under the posterior, then the component among the
    unconditional one and the datum's nearest held neighbours. `codes`: the round's E(x) (batch), `own`: each
    datum's code computed on its own (for the neighbour search)."""

    def __init__(self, pm: ProbabilityModel, codes: np.ndarray, own: np.ndarray, held_codes: np.ndarray):
        self.pm, self.codes, self.held_codes = pm, codes, held_codes
        self.near = nearest(held_codes, own, NEIGHBOURS)

    def _weights(self, buckets) -> Categorical:
        return Categorical(self.pm.pointer_weights(buckets, self.held_codes[self.near]))

    def pop(self, stack):
        buckets = Categorical(self.pm.posterior_probs(self.codes)).pop(stack)
        slot = self._weights(buckets).pop(stack)
        rows = np.arange(len(slot))
        k = np.where(slot == 0, 0, self.near[rows, np.maximum(slot - 1, 0)] + 1)
        return k, buckets

    def push(self, stack, y) -> None:
        k, buckets = y
        hit = k[:, None] == self.near + 1
        if not ((k == 0) | hit.any(axis=1)).all():   # a component no sender could have drawn: damage
            raise StackExhausted
        slot = np.where(k == 0, 0, hit.argmax(axis=1) + 1)
        self._weights(buckets).push(stack, slot)
        Categorical(self.pm.posterior_probs(self.codes)).push(stack, buckets)


class SetRound:
    """The codec of one round of `batch` data in a set order, given what is held before it.

    Set order, or nothing held yet: the chain-head codec (every latent under the unconditional mixture).
    Associative with H >= 1 held: BitsBack over y = (k, z) with `PointerPrior` and `PointerPosterior`.
    `codes` (the round's E(x), batch) and `own` (each image's own code) are computed from x when not given."""

    def __init__(self, pm: ProbabilityModel, batch: int, held: Held, associative: bool, meter: list | None = None):
        self.pm, self.batch, self.associative, self.codes, self.own = pm, batch, associative, None, None
        likelihood = lambda buckets: pixels(pm, buckets, batch, meter)
        if associative and len(held):
            held_codes = held.codes(pm.latent_dim)
            self.codec = BitsBack(prior=PointerPrior(pm, batch, held_codes),
                                  likelihood=lambda y: likelihood(y[1]),
                                  posterior=lambda x: PointerPosterior(pm, *self._codes(x), held_codes))
        else:
            self.codec = BitsBack(prior=pm.head_codec(batch),
                                  likelihood=likelihood,
                                  posterior=lambda x: Categorical(pm.posterior_probs(self._codes(x)[0])))

    def _codes(self, x: np.ndarray):
        if self.codes is None:
            self.codes = self.pm.encode(x)
            if self.associative:
                self.own = self.codes if self.pm.batch_invariant else image_codes(self.pm, x)
        return self.codes, self.own


def encode_set_stream(pm: ProbabilityModel, images: np.ndarray, lengths: list[int], associative: bool,
                      seed_count: int, rounds: Callable[[Iterable], Iterable] = iter,
                      meter: list | None = None) -> np.ndarray:
    """Code images (N, H, W, C) uint8 levels as a multiset in one stream of uint32 words; rounds of the sizes
    `active_counts(lengths)`. The decoder returns them in canonical order (sorted by pixel bytes). `meter`:
    as in `protocol.encode_stream`.

    The rounds the sender codes first also draw their data, log2 N bits per datum on top of the latents'
    bits-back pop, which the staggered chain layout does not always cover: a pop that would drain the stack
    raises StackExhausted (the caller starts again on more seed words)."""
    keys = image_keys(images)
    shape = (images.shape[3], images.shape[1], images.shape[2])
    code_of = {}
    if associative or pm.batch_invariant:   # each datum's code, computed once
        codes = image_codes(pm, np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        code_of = dict(zip(keys, codes))
    counts = active_counts(lengths)
    if meter is not None:
        meter.clear()   # a restart on more seed words codes everything again
    held = Held(keys, code_of)
    stack = GuardedStack(new_stack(seed_words(seed_count)))
    for r in rounds(range(len(counts) - 1, -1, -1)):
        try:
            drawn = MultisetOrder(held.multiset, counts[r]).pop(stack)
            x = keys_to_images(drawn, shape)
            step = SetRound(pm, counts[r], held, associative, meter)
            if code_of:
                own = np.stack([code_of[k] for k in drawn])
                step.codes = own if pm.batch_invariant else pm.encode(x)
                step.own = own if associative else None
            step.codec.push(stack, x)
        except StackExhausted:
            raise StackExhausted(round=r) from None
    return stack.get_compressed()


def decode_set_stream(pm: ProbabilityModel, words: np.ndarray, lengths: list[int], associative: bool,
                      rounds: Callable[[Iterable], Iterable] = iter) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of `encode_set_stream`: images (N, C, H, W) uint8 in canonical order, and the words left."""
    held = Held()
    stack = GuardedStack(new_stack(words))
    decoded = 0
    for r, count in enumerate(rounds(active_counts(lengths))):
        step = SetRound(pm, count, held, associative)
        try:
            x = step.codec.pop(stack).astype(np.uint8)
            keys = image_keys(x.transpose(0, 2, 3, 1))
            if associative:
                for key, code in zip(keys, step.own):
                    held.code_of.setdefault(key, code)
            MultisetOrder(held.multiset, count).push(stack, keys)
        except StackExhausted:
            raise StackExhausted(round=r, decoded=decoded) from None
        decoded += count
    return keys_to_images(held.multiset.keys, pm.shape), stack.get_compressed()
