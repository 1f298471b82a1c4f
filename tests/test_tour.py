"""Tests for acncodec.tour: the greedy tour against a brute-force reference, chains and rounds."""

import faiss
import numpy as np
import pytest
import torch

from acncodec.tour import greedy_tour, greedy_tour_reference

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


