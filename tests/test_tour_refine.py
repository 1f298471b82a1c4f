"""Tests for acncodec.tour_refine: the tour refined under a directed step cost, against brute force; and the
codec sending its images along the refined tour."""

import numpy as np
import pytest
import torch

from acncodec import codec, tour as tour_module
from acncodec.kl import kl_to_mixture, step_costs
from acncodec.tour import greedy_tour, tour_for, two_opt
from acncodec.tour_refine import path_cost, refine

from helpers import SPECS, random_images, tiny_model

torch.set_num_threads(1)


def twisted(codes, seed=0):
    """A directed cost: from a, the step to b costs |x_b - W x_a|^2 + |x_b| (W a random matrix near I), so a
    path short in distance is not the cheapest, and a -> b and b -> a differ."""
    x = np.asarray(codes, dtype=np.float64)
    w = np.eye(x.shape[1]) + 0.4 * np.random.default_rng(seed).normal(size=(x.shape[1], x.shape[1]))

    def cost(a, b):
        a, b = np.asarray(a), np.asarray(b)
        return np.sum((x[b] - x[a] @ w.T) ** 2, axis=-1) + np.linalg.norm(x[b], axis=-1)
    return cost


def matrix(cost, n):
    a, b = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return cost(a.ravel(), b.ravel()).reshape(n, n)


def total(m, path):
    path = list(path)
    return sum(m[a, b] for a, b in zip(path[:-1], path[1:]))


def improving_moves(m, path):
    """Every relocation (a piece of 1-3 moved elsewhere, in its direction), reversal and exchange of two adjacent
    pieces that keeps the first datum first and lowers the cost by more than 1e-9: written independently."""
    path, n, base = list(path), len(path), total(m, path)
    found = []
    for s in range(1, n):
        for length in (1, 2, 3):
            if s + length > n:
                break
            piece, rest = path[s:s + length], path[:s] + path[s + length:]
            for at in range(1, len(rest) + 1):
                new = rest[:at] + piece + rest[at:]
                if new != path and base - total(m, new) > 1e-9:
                    found.append(("relocate", s, length, at))
    for i in range(1, n):
        for j in range(i + 1, n):
            new = path[:i] + path[i:j + 1][::-1] + path[j + 1:]
            if base - total(m, new) > 1e-9:
                found.append(("reverse", i, j))
    for lo in range(0, n):
        for mid in range(lo + 2, n):
            for hi in range(mid, n):
                new = path[:lo + 1] + path[mid:hi + 1] + path[lo + 1:mid] + path[hi + 1:]
                if base - total(m, new) > 1e-9:
                    found.append(("exchange", lo, mid, hi))
    return found


def test_refined_tour_is_a_local_optimum_of_every_move_under_brute_force():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(24, 3))
    cost = twisted(x)
    m = matrix(cost, len(x))
    start = two_opt(x, greedy_tour(x))
    assert improving_moves(m, start), "the case must start with moves to make"
    stats = {}
    out = refine(x, start, cost, candidates=len(x) - 1, prune=False, stats=stats)
    assert sorted(out.tolist()) == list(range(len(x))) and out[0] == start[0]
    assert improving_moves(m, out) == []
    assert total(m, out) < total(m, start) - 1e-6
    assert stats["relocations"] + stats["reversals"] + stats["exchanges"] > 0


@pytest.mark.parametrize("candidates", [1, 4, 10])
def test_refine_keeps_a_permutation_lowers_the_cost_and_asks_each_step_once(candidates):
    x = np.random.default_rng(candidates).normal(size=(300, 4)).astype(np.float32)
    cost = twisted(x, seed=candidates)
    asked, calls = [], []

    def counted(a, b):
        calls.append(len(a))
        asked.extend(zip(np.asarray(a).tolist(), np.asarray(b).tolist()))
        return cost(a, b)
    start = tour_for(x)
    stats = {}
    out = refine(x, start, counted, candidates=candidates, stats=stats)
    assert sorted(out.tolist()) == list(range(len(x))) and out[0] == start[0]
    assert path_cost(out, cost) < path_cost(start, cost)
    assert len(asked) == len(set(asked)) == stats["steps_computed"]
    assert len(calls) <= 3 * stats["rounds"] + 1 + stats["rounds"]   # batched: a few calls per round
    # the result is a function of the input alone
    assert np.array_equal(refine(x, start, cost, candidates=candidates), out)


def test_the_gain_criterion_prices_fewer_steps_and_still_improves():
    x = np.random.default_rng(7).normal(size=(400, 4)).astype(np.float32)
    cost = twisted(x, seed=7)
    start = tour_for(x)
    pruned, full = {}, {}
    a = refine(x, start, cost, candidates=16, stats=pruned)
    b = refine(x, start, cost, candidates=16, prune=False, stats=full)
    assert pruned["steps_computed"] < full["steps_computed"]
    assert path_cost(a, cost) < path_cost(start, cost) and path_cost(b, cost) < path_cost(start, cost)
    assert sorted(a.tolist()) == sorted(b.tolist()) == list(range(len(x)))


def test_refine_leaves_tiny_tours_and_keeps_the_first_datum():
    x = np.random.default_rng(0).normal(size=(3, 2))
    assert refine(x, np.array([2, 0, 1]), twisted(x)).tolist() == [2, 0, 1]
    assert refine(np.zeros((0, 2)), np.zeros(0, dtype=np.int64), twisted(np.zeros((0, 2)))).tolist() == []


def test_refined_is_skipped_above_the_exact_tour_limit(monkeypatch):
    x = np.random.default_rng(1).normal(size=(200, 3)).astype(np.float32)
    start = tour_for(x)
    assert not np.array_equal(tour_module.refined(x, start, twisted(x)), start)
    monkeypatch.setattr(tour_module, "APPROXIMATE_ABOVE", 100)
    assert np.array_equal(tour_module.refined(x, start, twisted(x)), start)


def test_step_costs_are_the_kl_of_each_step_under_the_prior():
    model = tiny_model(SPECS["binary"], seed=2)
    codes = torch.randn(40, model.net.config.latent_dim, generator=torch.Generator().manual_seed(0))
    a = np.array([0, 5, 7, 39, 12]), np.array([1, 5, 30, 0, 13])
    got = step_costs(model.net.prior, codes, points=64)(*a)
    with torch.no_grad():
        want = kl_to_mixture(codes[a[1]], model.net.prior(codes[a[0]]))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)
    quick = step_costs(model.net.prior, codes)(*a)
    assert np.abs(quick - got).max() < 0.05 * np.abs(got).max() + 0.01


def test_compiled_step_costs_are_torchs_to_float_rounding_on_any_thread_count(monkeypatch):
    from acncodec import kl
    pytest.importorskip("numba")
    model = tiny_model(SPECS["binary"], seed=3)
    codes = 2.0 * torch.randn(60, model.net.config.latent_dim, generator=torch.Generator().manual_seed(1))
    rng = np.random.default_rng(4)
    steps = rng.integers(0, 60, 3000), rng.integers(0, 60, 3000)
    for points in (8, 64):
        compiled = step_costs(model.net.prior, codes, points)(*steps)
        before = torch.get_num_threads()
        try:
            torch.set_num_threads(2)
            monkeypatch.setattr(kl, "_STEPS_PER_THREAD", 100)
            assert np.array_equal(step_costs(model.net.prior, codes, points)(*steps), compiled)   # split in two
        finally:
            torch.set_num_threads(before)
        with monkeypatch.context() as m:
            m.setattr(kl, "_compiled", None)
            want = step_costs(model.net.prior, codes, points)(*steps)
        np.testing.assert_allclose(compiled, want, rtol=1e-12, atol=1e-12)
    with pytest.raises(IndexError):
        step_costs(model.net.prior, codes)(np.array([0]), np.array([60]))


def test_the_codec_sends_the_images_along_the_refined_tour():
    spec = SPECS["binary"]
    model = tiny_model(spec, seed=4)
    images = random_images(spec, 60, seed=8)
    archive, report, sequence = codec.compress_archive(images, model, order="tour", progress=False)
    pm = codec.probability_model(model)
    x = codec.channels_first(images.images)
    codes = codec.encode_all(pm, x)
    floats = codec.analysis_codes(model, pm, x, codes)
    distance = tour_for(codes)
    cost = step_costs(model.net.prior, floats)
    assert np.array_equal(sequence, tour_for(codes, step_cost=cost))
    assert path_cost(sequence, cost) < path_cost(distance, cost)
    out, _ = codec.decompress(archive.to_bytes(), model, progress=False)
    assert np.array_equal(out.images, images.images[sequence])


def test_pairwise_sum_adds_as_numpy_does_to_the_last_bit():
    from acncodec.tour_refine import _pairwise_sum
    rng = np.random.default_rng(5)
    for count in [*range(0, 300), 1000, 1023, 4099, 9000, 20001]:
        a = rng.normal(size=count + 7) * 10.0 ** rng.uniform(-3, 3, size=count + 7)
        lo = int(rng.integers(0, 7))
        assert _pairwise_sum(a, lo, count) == a[lo:lo + count].sum(), count


def test_step_table_keeps_every_cost_as_it_grows():
    from acncodec import tour_refine as tr
    n = 200
    steps = tr._Steps(lambda a, b: a * 1000.0 + b + 0.25, n)
    rng = np.random.default_rng(2)
    pairs = rng.integers(0, n, size=(5000, 2))
    for a, b in pairs:                       # asked for: unknown, so inf, and wanted once each
        steps.tab = tr._room(steps.tab, 1)
        assert tr._g(steps.tab, a, b) == np.inf
    distinct = {(int(a), int(b)) for a, b in pairs}
    assert steps.tab[4][1] == len(distinct) and len(steps.tab[0]) > 1024      # it grew
    steps.fill()
    assert steps.computed == len(distinct) and steps.tab[4][1] == 0
    keys = np.array([a * n + b for a, b in sorted(distinct)], dtype=np.int64)
    assert np.array_equal(tr._lookup(steps.tab, keys), keys // n * 1000.0 + keys % n + 0.25)
    assert not tr._unknown(steps.tab, keys).any()
    absent = next(a * n + b for a in range(n) for b in range(n) if (a, b) not in distinct)
    assert tr._unknown(steps.tab, np.array([absent], np.int64)).all()


def test_compiled_passes_make_the_moves_of_the_same_passes_run_as_python(monkeypatch):
    from acncodec import tour_refine as tr
    pytest.importorskip("numba")
    x = np.random.default_rng(11).normal(size=(120, 3)).astype(np.float32)
    cost, start = twisted(x, seed=11), tour_for(x)
    compiled = {prune: (refine(x, start, cost, candidates=6, prune=prune, stats=(s := {})), s)
                for prune in (True, False)}
    for name in dir(tr):
        f = getattr(tr, name)
        if hasattr(f, "py_func"):
            monkeypatch.setattr(tr, name, f.py_func)
    for prune, (out, stats) in compiled.items():
        python_stats = {}
        assert np.array_equal(refine(x, start, cost, candidates=6, prune=prune, stats=python_stats), out)
        assert python_stats == stats and stats["relocations"] + stats["reversals"] + stats["exchanges"] > 0


def test_the_reversal_screen_leaves_the_moves_of_the_exact_sums(monkeypatch):
    """`_screen` lets `_reverse` skip the exact sums of reversals that cannot gain: the same moves as without it,
    with fewer exact sums (run as Python, so that the screen can be switched off)."""
    from acncodec import tour_refine as tr
    for name in dir(tr):
        f = getattr(tr, name)
        if hasattr(f, "py_func"):
            monkeypatch.setattr(tr, name, f.py_func)
    x = np.random.default_rng(12).normal(size=(150, 3)).astype(np.float32)
    start, cost = two_opt(x, greedy_tour(x)), twisted(x, seed=2)
    sums = []
    summed = tr._pairwise_sum
    monkeypatch.setattr(tr, "_pairwise_sum", lambda a, lo, count: sums.append(count) or summed(a, lo, count))
    runs = {}
    for screened in (True, False):
        if not screened:
            screen = tr._screen
            # no piece counted unknown, and a NaN slack, against which no comparison holds: every sum exact
            monkeypatch.setattr(tr, "_screen", lambda f, b: (screen(f, b)[0], np.zeros(len(f) + 1, np.int64), np.nan))
        sums.clear()
        runs[screened] = refine(x, start, cost, candidates=6, stats=(stats := {})), stats, len(sums)
    (path, stats, screened_sums), (exact_path, exact_stats, exact_sums) = runs[True], runs[False]
    assert np.array_equal(path, exact_path) and stats == exact_stats and stats["reversals"] > 0
    assert screened_sums < exact_sums / 2
