"""Tests for acncodec.tour: the greedy tour against a brute-force reference; the approximate tour and the
policy between them."""

import faiss
import numpy as np
import pytest
import torch

from acncodec import tour as tour_module
from acncodec.knn import nearest_others
from acncodec.tour import approximate_tour, greedy_tour, greedy_tour_reference, path_length, tour_for, two_opt

torch.set_num_threads(1)
faiss.omp_set_num_threads(1)


def brute_force_tour(codes):
    """The definition, written independently: from the current code go to the unvisited code at the smallest
    float64 squared distance, the lowest index among ties."""
    x = np.asarray(codes, dtype=np.float32).astype(np.float64)
    n = len(x)
    unvisited = list(range(1, n))
    tour = [0]
    while unvisited:
        rest = np.array(unvisited)
        diff = x[rest] - x[tour[-1]]
        d = np.sum(diff * diff, axis=-1)
        best = rest[d == d.min()].min()
        tour.append(int(best))
        unvisited.remove(best)
    return np.array(tour, dtype=np.int64)


def clustered(n, dim, seed):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, dim)) * 3
    label = rng.integers(0, 8, n)
    return (centres[label] + rng.uniform(0.05, 1.0, 8)[label, None] * rng.standard_normal((n, dim))).astype(
        np.float32)


def datasets():
    rng = np.random.default_rng(1)
    grid = np.stack(np.meshgrid(*[np.arange(8)] * 3, indexing="ij"), -1).reshape(-1, 3)
    grid = grid[rng.permutation(len(grid))].astype(np.float32)          # many exact ties between different codes
    base = rng.standard_normal((60, 5)).astype(np.float32)
    dups = base[rng.integers(0, 60, 1500)]                               # groups of ~25 identical codes
    near = dups.copy()
    bump = rng.random(near.shape) < 0.3                                  # 1-ulp neighbours of the duplicates
    near[bump] = np.nextafter(near[bump], np.float32(np.inf))
    signed = np.zeros((50, 2), np.float32)
    signed[::2, 0] = -0.0                                                # -0.0 and 0.0 are the same code
    return {
        "normal16": rng.standard_normal((2000, 16)).astype(np.float32),
        "clustered": clustered(1500, 16, 2),
        "grid": grid,
        "duplicates": dups,
        "near_duplicates": near,
        "offset": (1000 + 0.01 * rng.standard_normal((800, 8))).astype(np.float32),
        "one_dim": rng.standard_normal((700, 1)).astype(np.float32),
        "signed_zero": np.concatenate([signed, rng.standard_normal((30, 2)).astype(np.float32)]),
    }


DATA = datasets()


@pytest.mark.parametrize("name", sorted(DATA))
def test_tour_equals_brute_force(name):
    x = DATA[name]
    tour = greedy_tour(x)
    assert tour.dtype == np.int64
    assert np.array_equal(np.sort(tour), np.arange(len(x)))
    assert tour[0] == 0
    assert np.array_equal(tour, brute_force_tour(x))


@pytest.mark.parametrize("candidates", [1, 2, 5])
def test_short_candidate_lists_change_speed_not_result(candidates):
    # Short lists force the fallback on most steps, including its widening searches.
    for name in ("normal16", "near_duplicates", "grid"):
        x = DATA[name]
        stats = {}
        tour = greedy_tour(x, candidates=candidates, stats=stats)
        assert stats["fallback_steps"] > 0
        assert np.array_equal(tour, brute_force_tour(x)), name


def test_fallback_widening_is_exercised():
    # Codes one ulp apart are below faiss' float32 error, so the proof fails and searches widen.
    x = DATA["near_duplicates"]
    stats = {}
    tour = greedy_tour(x, stats=stats)
    assert stats["fallback_searches"] > stats["fallback_steps"] > 0
    assert np.array_equal(tour, brute_force_tour(x))


def test_duplicates_are_visited_together_in_index_order():
    x = DATA["duplicates"]
    stats = {}
    tour = greedy_tour(x, stats=stats)
    assert stats["distinct"] == len(np.unique(x, axis=0))
    keys = [x[i].tobytes() for i in tour]
    runs = [k for i, k in enumerate(keys) if i == 0 or k != keys[i - 1]]
    assert len(runs) == stats["distinct"]                    # each group is one run
    for k in set(keys):
        where = tour[[i for i, kk in enumerate(keys) if kk == k]]
        assert np.all(np.diff(where) > 0)


def test_module_reference_agrees():
    x = DATA["clustered"][:600]
    assert np.array_equal(greedy_tour_reference(x), brute_force_tour(x))


def test_tiny_inputs():
    assert greedy_tour(np.zeros((0, 4), np.float32)).tolist() == []
    assert greedy_tour(np.ones((1, 4), np.float32)).tolist() == [0]
    assert greedy_tour(np.array([[0.0], [5.0]], np.float32)).tolist() == [0, 1]
    assert greedy_tour(np.array([[1.0], [1.0]], np.float32)).tolist() == [0, 1]
    x = np.array([[0.0], [3.0], [-1.0], [1.0], [3.0]], np.float32)
    # From 0.0, -1.0 (index 2) and 1.0 (index 3) tie at distance 1: the lower index wins. Then 1.0, then the
    # two 3.0s in index order.
    assert greedy_tour(x).tolist() == [0, 2, 3, 1, 4]
    assert greedy_tour(x).tolist() == brute_force_tour(x).tolist()


def test_bad_input():
    with pytest.raises(ValueError):
        greedy_tour(np.zeros(5, np.float32))
    with pytest.raises(ValueError):
        greedy_tour(np.array([[0.0], [np.nan]], np.float32))
    with pytest.raises(ValueError):
        greedy_tour(np.zeros((3, 2), np.float32), candidates=0)




# The approximate tour (IVF neighbour lists and fallback).

def assert_tour(tour, n):
    assert tour.dtype == np.int64
    assert np.array_equal(np.sort(tour), np.arange(n))
    assert n == 0 or tour[0] == 0


def sq_length(x, tour):
    x = x.astype(np.float64)
    step = x[tour[1:]] - x[tour[:-1]]
    return float(np.sum(step * step))


@pytest.mark.parametrize("name", sorted(DATA))
def test_approximate_tour_is_a_permutation(name):
    x = DATA[name]
    stats = {}
    assert_tour(approximate_tour(x, stats=stats), len(x))
    assert_tour(approximate_tour(x, candidates=1, nprobe=1), len(x))   # dead ends and widening on most steps


def test_approximate_tour_tiny_and_degenerate():
    rng = np.random.default_rng(3)
    cases = [np.zeros((0, 4), np.float32), np.ones((1, 4), np.float32), np.array([[0.0], [5.0]], np.float32),
             np.array([[1.0], [1.0]], np.float32), np.ones((3000, 8), np.float32),          # all identical
             rng.standard_normal((38, 4)).astype(np.float32),                                # below one list
             rng.standard_normal((39, 1)).astype(np.float32),                                # one list, D = 1
             rng.integers(0, 2, (3000, 3)).astype(np.float32),                               # 8 distinct codes
             rng.standard_normal((5000, 1)).astype(np.float32)]
    for x in cases:
        assert_tour(approximate_tour(x), len(x))
    assert approximate_tour(np.zeros((5, 2), np.float32)).tolist() == [0, 1, 2, 3, 4]
    # Identical codes stay together in index order, as in the exact tour.
    x = DATA["duplicates"]
    tour = approximate_tour(x)
    keys = [x[i].tobytes() for i in tour]
    assert sum(1 for i, k in enumerate(keys) if i == 0 or k != keys[i - 1]) == len(np.unique(x, axis=0))


def test_approximate_tour_fallback_widens_and_refills():
    x = clustered(4000, 16, 3)
    stats = {}
    assert_tour(approximate_tour(x, candidates=2, nprobe=1, stats=stats), len(x))
    assert stats["lists"] > 1
    assert stats["fallback_searches"] > stats["fallback_steps"] > 0
    assert stats["rebuilds"] > 0


def test_approximate_tour_is_reproducible():
    x = clustered(3000, 16, 4)
    first = approximate_tour(x)
    assert np.array_equal(first, approximate_tour(x.copy()))
    faiss.omp_set_num_threads(2)        # k-means and the searches give the same index and lists with more threads
    try:
        assert np.array_equal(first, approximate_tour(x))
    finally:
        faiss.omp_set_num_threads(1)


@pytest.mark.parametrize("seed", [0, 3])
def test_approximate_tour_is_nearly_as_short_as_exact(seed):
    # Measured on these data: the default is within 0.1% of the exact tour's squared length, one list and two
    # candidates within 2.5%; a random order is over 30 times longer.
    x = clustered(4000, 16, seed)
    exact = sq_length(x, greedy_tour(x))
    assert sq_length(x, approximate_tour(x)) <= 1.01 * exact
    rough = sq_length(x, approximate_tour(x, candidates=2, nprobe=1))
    assert rough <= 1.10 * exact
    assert sq_length(x, np.random.default_rng(0).permutation(len(x))) > 10 * rough


def test_tour_for_switches_at_the_threshold(monkeypatch):
    x = DATA["normal16"]
    calls = []

    def spy(codes, *args, **kwargs):
        calls.append(len(codes))
        return approximate_tour(codes, *args, **kwargs)

    monkeypatch.setattr(tour_module, "approximate_tour", spy)
    exact = two_opt(x, greedy_tour(x))
    assert np.array_equal(tour_for(x), exact) and calls == []                 # 2,000 < APPROXIMATE_ABOVE
    monkeypatch.setattr(tour_module, "APPROXIMATE_ABOVE", len(x))
    assert np.array_equal(tour_for(x), exact) and calls == []                 # at the threshold: still exact
    monkeypatch.setattr(tour_module, "APPROXIMATE_ABOVE", len(x) - 1)
    assert_tour(tour_for(x), len(x))
    assert calls == [len(x)]
    assert_tour(tour_for(x, approximate_above=10), len(x))
    assert calls == [len(x)] * 2
    assert np.array_equal(tour_for(x, approximate_above=len(x)), exact) and len(calls) == 2


@pytest.mark.parametrize("seed", [0, 1])
def test_two_opt_shortens_the_greedy_tour_until_no_move_is_left(seed):
    x = clustered(1500, 8, seed)
    greedy = greedy_tour(x)
    stats = {}
    better = two_opt(x, greedy, stats=stats)
    assert_tour(better, len(x))
    assert stats["two_opt_moves"] > 0
    assert path_length(x, better) < 0.99 * path_length(x, greedy)
    assert np.array_equal(two_opt(x, greedy), better)                        # the same path every time
    # a 2-opt local optimum: no move joining a code to one of its neighbours shortens the path any more
    d = lambda a, b: float(np.sqrt(((x[a].astype(np.float64) - x[b]) ** 2).sum()))
    pos = np.empty(len(x), np.int64)
    pos[better] = np.arange(len(x))
    step = lambda k: d(better[k], better[k + 1]) if 0 <= k < len(x) - 1 else 0.0
    for a, near in enumerate(nearest_others(x, np.arange(len(x)), x, 10)):
        for c in near:
            lo, hi = sorted((pos[a], pos[c]))
            if hi - lo < 2:
                continue
            after = d(better[lo + 1], better[hi + 1]) if hi + 1 < len(x) else 0.0
            assert step(lo) + step(hi) - d(a, c) - after <= 1e-9
            if lo >= 1:
                assert step(lo - 1) + step(hi - 1) - d(a, c) - d(better[lo - 1], better[hi - 1]) <= 1e-9


def test_compiled_two_opt_makes_the_moves_of_the_same_passes_run_as_python(monkeypatch):
    pytest.importorskip("numba")
    x = clustered(600, 6, 3)
    greedy = greedy_tour(x)
    compiled = two_opt(x, greedy, stats=(stats := {}))
    for name in dir(tour_module):
        f = getattr(tour_module, name)
        if hasattr(f, "py_func"):
            monkeypatch.setattr(tour_module, name, f.py_func)
    assert np.array_equal(two_opt(x, greedy, stats=(python_stats := {})), compiled)
    assert python_stats == stats and stats["two_opt_moves"] > 0


def test_two_opt_on_tiny_and_duplicate_codes():
    for n in range(0, 5):
        x = np.random.default_rng(n).normal(size=(n, 3)).astype(np.float32)
        assert_tour(two_opt(x, greedy_tour(x)), n)
    x = np.repeat(clustered(50, 4, 2), 3, axis=0)                              # every code three times
    tour = two_opt(x, greedy_tour(x))
    assert_tour(tour, len(x)) and path_length(x, tour) <= path_length(x, greedy_tour(x)) + 1e-9


def test_approximate_bad_input():
    with pytest.raises(ValueError):
        approximate_tour(np.zeros(5, np.float32))
    with pytest.raises(ValueError):
        approximate_tour(np.array([[0.0], [np.inf]], np.float32))
    with pytest.raises(ValueError):
        approximate_tour(np.zeros((3, 2), np.float32), candidates=0)
    with pytest.raises(ValueError):
        approximate_tour(np.zeros((3, 2), np.float32), nprobe=0)
