"""The multiset order codec: bits back on the order of data whose order carries no information.

Severo, Townsend, Khisti, Makhzani, Ullrich 2021, "Compressing multisets with large alphabets" (the idea; the
code here is the project's own). The data are kept in a canonical total order, the order of their keys (for
images: the pixel bytes, so identical images are identical keys). A datum's *rank* among the held multiset is
a number in [start, start + m), where start counts the held keys smaller than it and m is how many copies of it
are held.

- push (the decoding side, growing the multiset): insert the key; pop an offset o in [0, m) under a uniform
  model (bits back on which copy it was), then push the rank start + o under a uniform model over the n keys
  held. Net: log(n / m) pushed.
- pop (the encoding side, shrinking it): pop a rank under uniform(n): that draws the next datum without
  replacement from the multiset; remove it, and push its offset among the copies under uniform(m).

Pushing a whole multiset of N keys one after the other therefore costs log N! - sum_i log m_i! in total (m_i
the multiplicities), the information in the order minus the orders of identical items, which carry none.
Alice (compress) pops, so she gains those bits; Bob (decompress) pushes them back.

A round of several keys is coded with one vectorised call per stack operation: all offsets, then all ranks.
The ranks' alphabet sizes depend only on how many keys are held, never on which, so the pop side can draw a
round's ranks before it knows any of the keys. A size-1 alphabet carries no information and is skipped
(constriction cannot code it).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections import Counter

import numpy as np
import constriction

UNIFORM = constriction.stream.model.Uniform()


def image_keys(images: np.ndarray) -> list[bytes]:
    """Canonical keys of images (N, H, W, C) uint8: each image's pixel bytes in row-major order."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    return [images[i].tobytes() for i in range(len(images))]


def canonical_order(keys: list[bytes]) -> np.ndarray:
    """Indices that sort the keys; identical keys keep their input order."""
    return np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)


class SortedMultiset:
    """A multiset of byte-string keys kept sorted, for ranks and lookups by rank."""

    def __init__(self, keys=()):
        self.keys = sorted(keys)

    def __len__(self) -> int:
        return len(self.keys)

    def span(self, key: bytes) -> tuple[int, int]:
        """(start, m): how many held keys are smaller than `key`, and how many equal it."""
        start = bisect_left(self.keys, key)
        return start, bisect_right(self.keys, key, lo=start) - start

    def insert(self, key: bytes) -> None:
        insort(self.keys, key)

    def remove_at(self, rank: int) -> tuple[bytes, int, int]:
        """Remove the key at `rank`; returns it with its (start, m) as they were before the removal."""
        key = self.keys[rank]
        start, m = self.span(key)
        del self.keys[rank]
        return key, start, m


def _push_uniform(stack, symbols: list[int], sizes: list[int]) -> None:
    keep = [i for i, s in enumerate(sizes) if s > 1]
    if keep:
        stack.encode_reverse(np.array([symbols[i] for i in keep], dtype=np.int32), UNIFORM,
                             np.array([sizes[i] for i in keep], dtype=np.int32))


def _pop_uniform(stack, sizes: list[int]) -> list[int]:
    out = [0] * len(sizes)
    keep = [i for i, s in enumerate(sizes) if s > 1]
    if keep:
        drawn = stack.decode(UNIFORM, np.array([sizes[i] for i in keep], dtype=np.int32))
        for i, v in zip(keep, drawn):
            out[i] = int(v)
    return out


class MultisetOrder:
    """The order codec over a multiset, in the push/pop style of `codecs.py`: push(stack, keys) inserts the
    keys into `multiset` pushing their ranks, pop(stack) draws `count` keys from it; exact inverses."""

    def __init__(self, multiset: SortedMultiset, count: int):
        self.multiset, self.count = multiset, count

    def push(self, stack, keys: list[bytes]) -> None:
        push_order(stack, self.multiset, keys)

    def pop(self, stack) -> list[bytes]:
        return pop_order(stack, self.multiset, self.count)


def push_order(stack, multiset: SortedMultiset, keys: list[bytes]) -> None:
    """Insert `keys` into `multiset` one after the other, pushing each one's rank among the keys then held.

    Costs log(n / m) per key (n held after inserting it, m of them equal to it); `pop_order` is the inverse.
    """
    held, starts, copies = [], [], []
    for key in keys:
        multiset.insert(key)
        start, m = multiset.span(key)
        starts.append(start)
        copies.append(m)
        held.append(len(multiset))
    offsets = _pop_uniform(stack, copies)
    ranks = [s + o for s, o in zip(starts, offsets)]
    _push_uniform(stack, ranks, held)


def pop_order(stack, multiset: SortedMultiset, count: int) -> list[bytes]:
    """Draw `count` keys without replacement from `multiset` (removing them): the inverse of `push_order`.

    Returns the keys in the order `push_order` was given them: the last one drawn is the first one pushed.
    """
    if not 0 <= count <= len(multiset):
        raise ValueError(f"cannot draw {count} keys from a multiset of {len(multiset)}")
    base = len(multiset) - count
    ranks = _pop_uniform(stack, [base + j + 1 for j in range(count)])
    keys, offsets, copies = [None] * count, [0] * count, [1] * count
    for j in range(count - 1, -1, -1):
        keys[j], start, copies[j] = multiset.remove_at(ranks[j])
        offsets[j] = ranks[j] - start
    _push_uniform(stack, offsets, copies)
    return keys


def order_information_nats(keys: list[bytes]) -> float:
    """log N! - sum_i log m_i!: what the order of these keys is worth, in nats (what `pop_order` gains)."""
    return math.lgamma(len(keys) + 1) - sum(math.lgamma(m + 1) for m in Counter(keys).values())
