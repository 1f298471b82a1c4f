"""The multiset order codec: exact inverse pairs, and the rate it gains is the order's information."""

import math

import numpy as np
import pytest

from acncodec.coding.multiset import (MultisetOrder, SortedMultiset, canonical_order, image_keys,
                                      order_information_nats, pop_order, push_order)
from acncodec.coding.codecs import new_stack

LOG2E = 1 / math.log(2)


def keys_with_duplicates(n: int, distinct: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [bytes(rng.integers(0, 256, 3, dtype=np.uint8)) if distinct == 0 else
            bytes([int(v), 7]) for v in rng.integers(0, max(distinct, 1), n)]


def rounds_of(keys: list[bytes], sizes: list[int]) -> list[list[bytes]]:
    bounds = np.cumsum([0] + sizes)
    return [keys[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


@pytest.mark.parametrize("n,distinct,sizes", [(1, 1, [1]), (2, 1, [1, 1]), (2, 2, [2]), (7, 3, [3, 2, 1, 1]),
                                              (40, 0, [16, 8, 8, 4, 4]), (40, 4, [10] * 4)])
def test_push_then_pop_returns_the_keys_and_restores_the_stack(n, distinct, sizes):
    keys = keys_with_duplicates(n, distinct)
    seed = np.random.default_rng(5).integers(0, 2**32, 6, dtype=np.uint64).astype(np.uint32)
    stack = new_stack(seed)
    held = SortedMultiset([b"\x00\x01", b"\xff"])          # keys held before the first round
    before = list(held.keys)
    rounds = rounds_of(keys, sizes)
    for r in rounds:
        push_order(stack, held, r)
    assert sorted(held.keys) == sorted(before + keys)
    for r in reversed(rounds):
        assert MultisetOrder(held, len(r)).pop(stack) == r
    assert held.keys == before
    assert np.array_equal(stack.get_compressed(), seed)


def test_pop_first_draws_then_push_restores_the_stack():
    """Alice's side first, as in compress: pops from seed words, then Bob's pushes give the words back."""
    keys = keys_with_duplicates(30, 5, seed=3)
    seed = np.random.default_rng(9).integers(0, 2**32, 8, dtype=np.uint64).astype(np.uint32)
    stack = new_stack(seed)
    alice = SortedMultiset(keys)
    drawn = [pop_order(stack, alice, size) for size in reversed([8, 8, 8, 4, 2])][::-1]
    assert len(alice) == 0
    assert sorted(k for r in drawn for k in r) == sorted(keys)
    bob = SortedMultiset()
    for r in drawn:
        push_order(stack, bob, r)
    assert sorted(bob.keys) == sorted(keys)
    assert np.array_equal(stack.get_compressed(), seed)


@pytest.mark.parametrize("distinct", [0, 5])
def test_refund_is_log_n_factorial_minus_multiplicities(distinct):
    """Pushing N keys grows the stack by log2 N! - sum log2 m_i! bits; popping them shrinks it as much.

    Tolerance: 0.2% plus 64 bits (the stack's word granularity and constriction's rounding of uniform models
    to 24-bit precision, about 1e-4 bits per symbol). With 5 distinct keys the order is worth 4.5 kbit,
    against log2(2000!) = 19 kbit when the multiplicities are ignored, so a codec that ignored them fails."""
    n = 2000
    keys = keys_with_duplicates(n, distinct, seed=11)
    expected = order_information_nats(keys) * LOG2E
    if distinct:
        assert expected < 0.3 * math.lgamma(n + 1) * LOG2E
    seed = np.random.default_rng(1).integers(0, 2**32, 4, dtype=np.uint64).astype(np.uint32)
    stack = new_stack(seed)
    start = stack.num_valid_bits()
    held = SortedMultiset()
    sizes = [64] * (n // 64) + [n % 64]
    for r in rounds_of(keys, sizes):
        push_order(stack, held, r)
    grown = stack.num_valid_bits() - start
    assert abs(grown - expected) <= 0.002 * expected + 64
    # Drawing them again (in rounds, so the stack never runs dry mid-round) takes the same bits off.
    alice = SortedMultiset(keys)
    shrink_start = stack.num_valid_bits()
    for size in reversed(sizes):
        pop_order(stack, alice, size)
    assert abs(shrink_start - stack.num_valid_bits() - expected) <= 0.002 * expected + 64


def test_canonical_order_sorts_images_by_pixels_and_keeps_ties_in_input_order():
    images = np.array([[[[3]]], [[[1]]], [[[3]]], [[[2]]]], dtype=np.uint8)
    keys = image_keys(images)
    assert canonical_order(keys).tolist() == [1, 3, 0, 2]


def test_drawing_more_than_held_is_refused():
    with pytest.raises(ValueError):
        pop_order(new_stack(), SortedMultiset([b"a"]), 2)
