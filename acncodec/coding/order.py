"""Chains and rounds: how a sequence of data is split for batched coding (docs/DESIGN.md, "Parallel chains").

The sequence (a tour, or the input order) is cut into B chains of consecutive data; round r holds datum r of
every chain still running, so every network call is batched over the round. Both sides rebuild the whole
layout from (n, B), which is all the archive stores.
"""

from __future__ import annotations

import math

import numpy as np

MAX_DEFAULT_CHAINS = 128
SEED = 0x41434E


def default_chains(n: int) -> int:
    """One chain per 32 data, at most 128 per round. The receiver decodes a round's data together, and bigger
    rounds decode faster; each chain head costs its unconditional KL instead of a neighbour's, and in the set
    orders the first rounds' draws need more seed words. Measured with the shipped exact models
    (bench/results/speed-chains-*.md): on 1,000 binarized-MNIST test images in tour order, with the compiled
    pixel step and the exact2 model, decompress ran at 142 images/s with 16 chains, 168 with 31 (this default),
    179 with 62 and 189 with 125, the bytes the same up to 62 chains and 0.43% more at 125; on digits in set
    order, +0.2% bytes from 17 to 56 chains, +0.8% at 112."""
    return int(np.clip(n // 32, 1, MAX_DEFAULT_CHAINS))


def chain_layout(n: int, chains: int) -> list[int]:
    """Chain lengths, non-increasing and staggered at the end so the rounds the sender codes first are small.

    The sender codes the last round first, on top of only the seed words. Chain b gets
    ceil(log2 B) - bit_length(b) extra data, so the last rounds hold 1, 2, 4, ... chains: each round's
    bits-back pops find enough bits under them from the rounds before.
    """
    chains = max(1, min(chains, n))
    while True:
        depth = (chains - 1).bit_length()
        extra = [depth - b.bit_length() for b in range(chains)]
        base, remainder = divmod(n - sum(extra), chains)
        if base >= 1 or chains == 1:
            return [base + e + (b < remainder) for b, e in enumerate(extra)]
        chains -= 1


def active_counts(lengths: list[int]) -> list[int]:
    """Round r holds datum r of every chain longer than r: with non-increasing lengths, a prefix of chains."""
    lengths = np.asarray(lengths)
    return [int((lengths > r).sum()) for r in range(int(lengths[0]))]


def chain_starts(lengths: list[int]) -> np.ndarray:
    """Position in the sequence of each chain's first datum."""
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


def round_positions(lengths: list[int]) -> list[np.ndarray]:
    """For each round, the positions in the sequence of the data it holds (one per active chain)."""
    starts = chain_starts(lengths)
    return [starts[:active] + r for r, active in enumerate(active_counts(lengths))]


def seed_word_count(latent_dim: int, bucket_bits: int) -> int:
    """Enough initial bits for one datum's bits-back pop (D latents of at most `bits` bits each)."""
    return math.ceil(latent_dim * bucket_bits / 32) + 2


def seed_words(count: int) -> np.ndarray:
    """Initial bits under the first datum the sender codes; the receiver checks they come back unchanged."""
    return np.random.Generator(np.random.PCG64(SEED)).integers(0, 2**32, count, dtype=np.uint64).astype(np.uint32)
