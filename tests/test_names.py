import math
import random

import pytest

from acncodec.errors import AcnError
from acncodec.names import decode_names, encode_names, from_lehmer, lehmer


@pytest.mark.parametrize("n", [1, 2, 3, 17, 500])
def test_names_round_trip_in_any_order(n):
    names = [f"scan {i:04d} é.png" for i in range(n)]
    rng = random.Random(n)
    shuffled = names[:]
    rng.shuffle(shuffled)
    for case in (names, shuffled, names[::-1]):
        assert decode_names(encode_names(case), n, "x") == case


def test_sorted_order_costs_nothing_and_a_permutation_about_log2_n_factorial():
    names = [f"{i:05d}.png" for i in range(2000)]
    shuffled = names[:]
    random.Random(0).shuffle(shuffled)
    extra_bits = 8 * (len(encode_names(shuffled)) - len(encode_names(names)))
    bound = sum(math.log2(i) for i in range(1, 2001))
    assert bound <= extra_bits <= bound + 100


def test_lehmer_inverts():
    perm = list(range(300))
    random.Random(3).shuffle(perm)
    code = lehmer(perm)
    assert all(0 <= c < 300 - i for i, c in enumerate(code))
    assert from_lehmer(code) == perm


@pytest.mark.parametrize("cut", [0, 3, 10, -1])
def test_damaged_names_section_is_refused(cut):
    blob = encode_names(["b.png", "a.png", "c.png"])
    with pytest.raises(AcnError):
        decode_names(blob[:cut] if cut else b"\x07" + blob[1:], 3, "x")
