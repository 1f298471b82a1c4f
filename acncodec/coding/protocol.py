"""The bits-back protocol over the seam: one round is one `BitsBack` codec, a stream is rounds on one stack.

The receiver, for the B data of a round (datum r of every active chain) with previous codes ĉ:
  1. pop the latent buckets under p(z|ĉ) (the unconditional mixture for chain heads);
  2. pop the pixels under r(x|z), step by step;
  3. c = E(x); push the latent buckets under q(z|x) (the bits back).
That is `BitsBack(prior, likelihood, posterior).pop`; the sender runs its `push`, rounds in reverse order
(ANS is a stack), on the same batches, so every probability is the one the receiver will compute.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from .codecs import BitsBack, Categorical, GuardedStack, StackExhausted, new_stack, pixels
from .numerics import ProbabilityModel
from .order import round_positions, seed_words


class Round:
    """The codec of one round of `batch` data. `previous_codes` None: chain heads under the unconditional
    mixture. `codes`: E(x) of the round's data when already known (the sender); otherwise computed from the
    decoded pixels (the receiver) and kept in `self.codes` to condition the next round."""

    def __init__(self, pm: ProbabilityModel, batch: int, previous_codes: np.ndarray | None,
                 codes: np.ndarray | None = None, meter: list | None = None):
        self.pm, self.codes = pm, codes
        prior = (pm.head_codec(batch) if previous_codes is None
                 else Categorical(pm.prior_probs(previous_codes)))
        self.codec = BitsBack(
            prior=prior,
            likelihood=lambda buckets: pixels(pm, buckets, batch, meter),
            posterior=self._posterior)

    def _posterior(self, x: np.ndarray) -> Categorical:
        if self.codes is None:
            self.codes = self.pm.encode(x)
        return Categorical(self.pm.posterior_probs(self.codes))


def encode_stream(pm: ProbabilityModel, x: np.ndarray, lengths: list[int], conditional: bool,
                  seed_count: int, rounds: Callable[[Iterable], Iterable] = iter,
                  codes: np.ndarray | None = None, meter: list | None = None) -> np.ndarray:
    """Code images x (N, C, H, W) (levels, in sequence order: chain after chain) as one stream of uint32
    words. `conditional`: each datum's prior is conditioned on the previous datum of its chain (tour order);
    otherwise every datum is coded under the unconditional mixture. `rounds` may wrap the round loop (a
    progress bar). `codes`: E(x) (N, D) in sequence order when already computed; used only when the numerics
    are batch-invariant (otherwise a round's codes must come from the round's own batch, as the receiver's).
    `meter`: a list that receives each round's pixel information (see `codecs.Autoregressive.meter`)."""
    positions = round_positions(lengths)
    if meter is not None:
        meter.clear()   # a restart on more seed words codes everything again
    # The sender needs every round's codes before coding backwards.
    if codes is not None and pm.batch_invariant:
        codes = [codes[p] for p in positions]
    else:
        codes = [pm.encode(x[p]) for p in positions]
    stack = GuardedStack(new_stack(seed_words(seed_count)))
    for r in rounds(range(len(positions) - 1, -1, -1)):
        p = positions[r]
        previous = codes[r - 1][:len(p)] if r > 0 and conditional else None
        try:
            Round(pm, len(p), previous, codes[r], meter).codec.push(stack, x[p])
        except StackExhausted:
            raise StackExhausted(round=r) from None
    return stack.get_compressed()


def decode_stream(pm: ProbabilityModel, words: np.ndarray, lengths: list[int], conditional: bool,
                  rounds: Callable[[Iterable], Iterable] = iter) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of `encode_stream`: images (N, C, H, W) uint8 in sequence order, and the words left on
    the stack (the seed words when nothing diverged). A pop that drains the stack raises StackExhausted: the
    payload ran out before the data it claims."""
    channels, height, width = pm.shape
    positions = round_positions(lengths)
    out = np.zeros((sum(lengths), channels, height, width), dtype=np.uint8)
    stack = GuardedStack(new_stack(words))
    previous, decoded = None, 0
    for r, p in enumerate(rounds(positions)):
        prev = previous[:len(p)] if previous is not None and conditional else None
        step = Round(pm, len(p), prev)
        try:
            out[p] = step.codec.pop(stack)
        except StackExhausted:
            raise StackExhausted(round=r, decoded=decoded) from None
        previous, decoded = step.codes, decoded + len(p)
    return out, stack.get_compressed()
