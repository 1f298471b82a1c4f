"""The order in which the data are sent: a greedy tour through the codes (docs/DESIGN.md, "Order").

The tour is the greedy nearest-unvisited-neighbour path through the codes (the paper's greedy heuristic for
the Euclidean travelling salesman problem, K = 1), starting at datum 0, shortened by 2-opt (`two_opt`) and, given
what each step costs the archive, refined under that cost (`refined`, `tour_refine.py`). `coding/order.py` splits
it into chains and rounds. Only the sender builds a tour; the receiver never imports this module.

Definition of the tour (what "exact" means here). The codes are taken as float32 (what the encoder produces
and faiss searches). The distance between codes a and b is the float64 value
``np.sum((a.astype(float64) - b.astype(float64)) ** 2, axis=-1)``, computed with exactly that expression (see
`_sqdist`). From the current datum the tour moves to the unvisited datum with the smallest such distance;
ties go to the lowest index. `greedy_tour_reference` is this definition written as an O(N^2) loop.

How it is computed. faiss gives the K0 nearest codes of every code in one batched exact search (float32,
BLAS). Those candidates are re-ranked with the float64 distance, and the first unvisited one is taken when it
is provably the nearest unvisited datum overall: its float64 distance is below the K0-th faiss distance minus
a rigorous bound on faiss' float32 rounding error (so no code outside the list can be as near). Otherwise
(all K0 candidates visited, or a near tie at the edge of the list) a fallback searches a flat faiss index of
the unvisited codes for the nearest few, with the same re-ranking and the same proof, widening the search
until the proof holds or the whole index has been returned. The fallback index is rebuilt from the unvisited
codes whenever half of it has been visited, so its size stays within twice the number of unvisited codes and
the rebuilds cost O(N D) in all. Python work is O(N) steps of a few small numpy operations; the numeric work
is one batched K0-NN search plus one flat scan per fallback step.

The approximate tour (`approximate_tour`), for large N, where the exact K0-NN search and the flat fallback
scans (both O(N^2 D)) take too long. It follows the same greedy rule, but its neighbour lists and its fallback
come from a faiss inverted-file index (IVF-Flat, about sqrt(N) lists found by k-means, a few lists searched per
query), so a step may go to a code that is not the nearest unvisited one; there is no proof and no float64
re-ranking. When every candidate of the current code is visited, the next code is the nearest unvisited one
among the lists searched, found through a bitmap of the unvisited codes, searching more lists until one is
found (all lists hold every unvisited code, so one always is); the index is refilled with the unvisited codes
when half of its entries are visited. Identical codes are grouped as in the exact tour. The result is always
a permutation starting at 0, and the same for the same codes whatever the number of faiss threads (another
CPU or faiss build may round differently, and so may give another tour). `tour_for` is the
policy: the exact tour up to `APPROXIMATE_ABOVE` codes, the approximate one above (bench/tour_ann.py measures
both; results in bench/results/tour-ann.md).
"""

from __future__ import annotations

import math

import faiss
import numpy as np

from .jit import jit as _jit

#: Neighbours per code found up front. Larger lists make fallbacks rarer but the batched search slower.
CANDIDATES = 16
#: First width of a fallback search, multiplied by FALLBACK_GROWTH each time the proof fails.
FALLBACK_WIDTH = 16
FALLBACK_GROWTH = 4

#: Above this many codes `tour_for` uses the approximate tour (see `tour_for` for why this number).
APPROXIMATE_ABOVE = 200_000
#: IVF lists searched for each code's neighbour list in the approximate tour. On the 60,000 binarized-MNIST
#: codes (bench/results/tour-ann.md) 8 lists cost 0.006 nats/image of KL more than the exact tour and 16
#: lists 0.0003, for twice the time: the tour's time is small beside coding, the KL is paid in every archive.
APPROXIMATE_NPROBE = 16
#: Lists searched first by an approximate fallback, in multiples of APPROXIMATE_NPROBE.
APPROXIMATE_FALLBACK_WIDTH = 4
#: 2-opt after the tour (`two_opt`): neighbours of each code where moves are looked for, and most passes. On the
#: binarized-MNIST test codes 16 neighbours saved 0.005 nats/image more than 10, in 1.5x the time (both a few
#: seconds in Python; bench/results/tour-two-opt-binarized-mnist-test-*.md, with older models). Compiled, the
#: greedy tour and 2-opt take about 1 s on those 10,000 codes (the distance tour's row of
#: bench/results/tour-refine-*.md), before the refinement moves the tour further.
TWO_OPT_NEIGHBOURS = 10
TWO_OPT_MAX_PASSES = 20
#: faiss' k-means wants at least this many training points per list (it warns below).
_MIN_PER_LIST = 39


def _as_codes(codes: np.ndarray) -> np.ndarray:
    x = np.asarray(codes)
    if x.ndim != 2:
        raise ValueError(f"codes must be a 2-D array (N, D), got shape {x.shape}")
    if x.shape[1] < 1:
        raise ValueError("codes must have at least one dimension")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError("codes contain NaN or infinite values")
    return x


def _sqdist(x64: np.ndarray, i: int, js: np.ndarray) -> np.ndarray:
    """The tour's distance from code i to codes js: float64 squared Euclidean, one fixed expression."""
    diff = x64[js] - x64[i]
    return np.sum(diff * diff, axis=-1)


def greedy_tour_reference(codes: np.ndarray) -> np.ndarray:
    """The definition of the tour as a plain O(N^2) loop: for checking `greedy_tour` and for benchmarks."""
    x64 = _as_codes(codes).astype(np.float64)
    n = len(x64)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    visited = np.zeros(n, dtype=bool)
    tour = np.empty(n, dtype=np.int64)
    cur = 0
    for t in range(n):
        tour[t] = cur
        visited[cur] = True
        if t + 1 < n:
            d = _sqdist(x64, cur, np.arange(n))
            d[visited] = np.inf
            cur = int(np.argmin(d))  # first minimum: lowest index among ties
    return tour


class _UnvisitedIndex:
    """Exact nearest unvisited code, by a flat faiss index over the codes unvisited at the last rebuild."""

    def __init__(self, x32: np.ndarray, x64: np.ndarray, tol: np.ndarray, visited: np.ndarray):
        self.x32, self.x64, self.tol, self.visited = x32, x64, tol, visited
        self.index = None
        self.ids = np.empty(0, dtype=np.int64)
        self.rebuilds = 0
        self.searches = 0

    def _rebuild(self) -> None:
        self.ids = np.flatnonzero(~self.visited)
        self.index = faiss.IndexFlatL2(self.x32.shape[1])
        self.index.add(self.x32[self.ids])
        self.rebuilds += 1

    def nearest(self, cur: int, unvisited: int) -> int:
        if self.index is None or 2 * unvisited < self.index.ntotal:
            self._rebuild()
        query = self.x32[cur:cur + 1]
        width = FALLBACK_WIDTH
        while True:
            size = self.index.ntotal
            k = min(width, size)
            fd, fi = self.index.search(query, k)
            self.searches += 1
            cand = self.ids[fi[0]]
            cand = cand[~self.visited[cand]]
            if len(cand):
                d = _sqdist(self.x64, cur, cand)
                best = np.lexsort((cand, d))[0]
                # Every unvisited code is in the index; one not returned has a faiss distance >= fd[0, -1].
                if k == size or d[best] < fd[0, -1] - self.tol[cur]:
                    return int(cand[best])
            if k == size:  # every unvisited code is in the index, so this cannot happen
                raise AssertionError("no unvisited code found in the unvisited index")
            width *= FALLBACK_GROWTH


def greedy_tour(codes: np.ndarray, candidates: int = CANDIDATES, stats: dict | None = None) -> np.ndarray:
    """The greedy nearest-unvisited-neighbour tour through `codes` (N, D), starting at index 0.

    Returns a permutation of range(N) (int64), exactly equal to `greedy_tour_reference` (see the module
    docstring for the distance and tie rule). `candidates` is the length of the neighbour list found up front;
    it changes the speed, never the result. If `stats` is a dict, counts of fallback steps, fallback searches
    and index rebuilds are written into it.
    """
    x = _as_codes(codes)
    if candidates < 1:
        raise ValueError("candidates must be at least 1")
    return _grouped(x, lambda distinct: _distinct_tour(distinct, candidates, stats), stats)


def _grouped(x: np.ndarray, tour_distinct, stats: dict | None) -> np.ndarray:
    """A tour of float32 codes `x` made by `tour_distinct` on the distinct codes, identical codes in a row."""
    n = len(x)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    # Identical codes are at distance 0 from each other, so once the tour reaches a group of them it takes
    # them all, in increasing index order, before moving on, and it reaches a group at its lowest index.
    # So tour the distinct codes (each represented by its lowest index; ties between groups still go to
    # the lowest index) and expand the groups afterwards. -0.0 is made 0.0 first; it changes no distance.
    # Rows compared as bytes group as np.unique(axis=0) does (no NaN, no -0.0 left), three times faster.
    x = x + np.float32(0.0)
    rows = x.view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if len(first) == n:
        return tour_distinct(x)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    group = rank[inverse]                                   # group of each datum, groups ordered by first index
    reps = np.sort(first)
    order = tour_distinct(x[reps])
    if stats is not None:
        stats["distinct"] = len(first)
    visit = np.empty(len(first), dtype=np.int64)
    visit[order] = np.arange(len(first))                   # when each group is reached
    return np.argsort(visit[group], kind="stable")         # stable: increasing index within a group


def _distinct_tour(x: np.ndarray, candidates: int, stats: dict | None) -> np.ndarray:
    """greedy_tour for float32 codes that are all different."""
    n, dim = x.shape
    x64 = x.astype(np.float64)
    # faiss works on centred float32 copies: distances do not change, and the rounding error bound below
    # scales with the norms, which centring keeps small.
    xc = np.ascontiguousarray((x64 - x64.mean(0)).astype(np.float32))
    norms = np.sqrt(np.sum(xc.astype(np.float64) ** 2, axis=1))
    # faiss' float32 squared distance (|a|^2 + |b|^2 - 2ab with BLAS, or a direct sum) differs from the
    # float64 distance of the original codes by at most about (D + 3) u (|a| + |b|)^2, u = 2^-24, plus
    # 3 u (|a| + |b|)^2 from centring in float32. Use twice the sum as the margin, with max |b|.
    tol = 2.0 * (dim + 8) * 2.0 ** -24 * (norms + norms.max()) ** 2 + 1e-300

    k0 = min(candidates, n)
    fd, fi = faiss.knn(xc, xc, k0)
    if k0 == n:
        limit = np.full(n, np.inf)  # every code is in every list
    else:
        limit = fd[:, -1].astype(np.float64) - tol
    # Re-rank each list by (float64 distance, index): the first unvisited entry is then the nearest
    # unvisited candidate, ties to the lowest index.
    exact = np.empty(fi.shape, dtype=np.float64)
    for s in range(0, n, 4096):
        diff = x64[fi[s:s + 4096]] - x64[s:s + 4096, None, :]
        exact[s:s + 4096] = np.sum(diff * diff, axis=-1)
    order = np.lexsort((fi, exact), axis=-1)
    fi = np.take_along_axis(fi, order, axis=1)
    exact = np.take_along_axis(exact, order, axis=1)

    visited = np.zeros(n, dtype=bool)
    fallback = _UnvisitedIndex(xc, x64, tol, visited)
    tour = np.empty(n, dtype=np.int64)
    cur = 0
    tour[0] = 0
    visited[0] = True
    fallbacks = 0
    for t in range(1, n):
        cand = fi[cur]
        free = ~visited[cand]
        j = int(free.argmax())
        if free[j] and exact[cur, j] < limit[cur]:
            cur = int(cand[j])
        else:
            cur = fallback.nearest(cur, n - t)
            fallbacks += 1
        tour[t] = cur
        visited[cur] = True
    if stats is not None:
        stats.update(fallback_steps=fallbacks, fallback_searches=fallback.searches, rebuilds=fallback.rebuilds)
    return tour


def approximate_tour(codes: np.ndarray, candidates: int = CANDIDATES, nprobe: int = APPROXIMATE_NPROBE,
                     stats: dict | None = None) -> np.ndarray:
    """A greedy tour through `codes` (N, D) from approximate neighbours (module docstring), starting at 0.

    Returns a permutation of range(N) (int64); each step goes to a near unvisited code, usually the nearest.
    `candidates` is the neighbour list length, `nprobe` the IVF lists searched for it: more of either is
    slower and nearer the exact tour. If `stats` is a dict, the number of lists, fallback steps, fallback
    searches and refills are written into it.
    """
    x = _as_codes(codes)
    if candidates < 1 or nprobe < 1:
        raise ValueError("candidates and nprobe must be at least 1")
    return _grouped(x, lambda distinct: _approximate_distinct_tour(distinct, candidates, nprobe, stats), stats)


def two_opt(codes: np.ndarray, tour: np.ndarray, neighbours: int = TWO_OPT_NEIGHBOURS,
            max_passes: int = TWO_OPT_MAX_PASSES, stats: dict | None = None) -> np.ndarray:
    """`tour` shortened by 2-opt moves: a path through `codes` whose Euclidean length (the sum of float64
    distances between consecutive codes) is at most the input's, with the same first datum.

    A greedy tour takes each datum's nearest unvisited neighbour, so it ends with long jumps between the codes
    that were left (on the binarized-MNIST test split, 80% of its 300 costliest steps are in its last tenth). A
    2-opt move removes two steps of the path and reconnects it by reversing the piece between them; it is made
    when the path gets shorter. Moves are looked for where a new step joins a code to one of its `neighbours`
    nearest codes, in index order, in passes until one finds none (at most `max_passes`). The KL of a step
    grows with the distance it spans, so a shorter path costs less (bench/results/tour-two-opt-*.md).
    """
    x = _as_codes(codes).astype(np.float64)
    path = np.array(tour, dtype=np.int64)
    n = len(path)
    moves = passes = 0
    if n > 3 and neighbours >= 1:
        from .knn import nearest_others
        near = nearest_others(x, np.arange(n), x, min(neighbours, n - 1)).astype(np.int64)
        pos = np.empty(n, dtype=np.int64)
        pos[path] = np.arange(n)
        moves, passes = _two_opt_passes(x, path, pos, near, max_passes)
    if stats is not None:
        stats.update(two_opt_moves=int(moves), two_opt_passes=int(passes))
    return path


@_jit
def _distance(x, a, b):
    """The Euclidean distance between codes a and b: the float64 squares summed in dimension order, then rounded
    square root. IEEE operations in a fixed order, so the same bits on every machine, compiled or not."""
    s = 0.0
    for d in range(x.shape[1]):
        t = x[a, d] - x[b, d]
        s += t * t
    return math.sqrt(s)


@_jit
def _step(x, path, k):
    """The length of the path's step from position k to k + 1; 0 past either end."""
    return _distance(x, path[k], path[k + 1]) if 0 <= k < len(path) - 1 else 0.0


@_jit
def _reverse(path, pos, i, j):
    """path[i..j] reversed in place, and the positions of the data in it updated."""
    while i < j:
        path[i], path[j] = path[j], path[i]
        pos[path[i]], pos[path[j]] = i, j
        i, j = i + 1, j - 1


@_jit
def _two_opt_passes(x, path, pos, near, max_passes):
    """`two_opt`'s passes over `path` (changed in place, `pos` its inverse): returns the moves made and the passes
    run."""
    n = len(path)
    moves = passes = 0
    for passes in range(1, max_passes + 1):
        found = 0
        for a in range(n):
            for c in near[a]:
                lo, hi = min(pos[a], pos[c]), max(pos[a], pos[c])
                if hi - lo < 2:
                    continue
                joined = _distance(x, a, c)
                # steps (lo, lo+1) and (hi, hi+1) become (lo, hi) and (lo+1, hi+1): lo+1..hi reversed
                after = _distance(x, path[lo + 1], path[hi + 1]) if hi + 1 < n else 0.0
                if _step(x, path, lo) + _step(x, path, hi) - joined - after > 1e-12:
                    _reverse(path, pos, lo + 1, hi)
                    found += 1
                    continue
                # steps (lo-1, lo) and (hi-1, hi) become (lo-1, hi-1) and (lo, hi): lo..hi-1 reversed
                if lo >= 1 and (_step(x, path, lo - 1) + _step(x, path, hi - 1) - joined
                                - _distance(x, path[lo - 1], path[hi - 1]) > 1e-12):
                    _reverse(path, pos, lo, hi - 1)
                    found += 1
        moves += found
        if not found:
            break
    return moves, passes


def path_length(codes: np.ndarray, tour: np.ndarray) -> float:
    """The Euclidean length of a path through `codes` (float64)."""
    x = _as_codes(codes).astype(np.float64)[np.asarray(tour)]
    return float(np.sqrt(((x[1:] - x[:-1]) ** 2).sum(-1)).sum())


def tour_for(codes: np.ndarray, approximate_above: int | None = None, step_cost=None) -> np.ndarray:
    """The tour the codec sends the images in: `greedy_tour` up to `approximate_above` codes (default
    APPROXIMATE_ABOVE) shortened by `two_opt` and, given `step_cost(prev, next)` (what a step costs the archive,
    `kl.step_costs`), refined under it by `tour_refine.refine`; `approximate_tour` above (where 2-opt's exact
    neighbour lists would cost as much as the exact tour).

    Why 200,000 (bench/results/tour-ann.md, one core): the approximate tour is faster from the sizes
    measured up (2.4x on the 60,000 binarized-MNIST codes) and costs almost no KL there (0.0003 nats/image
    more, of about 76), but the exact tour is the defined order, the same on every machine, so it is kept
    while its time does not matter. It grows about as N^1.9: 61 s at 200,000 codes, under 2% of compressing
    them at about 60 images/s, and about 21 minutes extrapolated to 1,000,000, where the approximate tour
    takes under 3.
    """
    limit = APPROXIMATE_ABOVE if approximate_above is None else approximate_above
    x = _as_codes(codes)
    if len(x) > limit:
        return approximate_tour(x)
    tour = two_opt(x, greedy_tour(x))
    return tour if step_cost is None else refined(x, tour, step_cost)


def refined(codes: np.ndarray, tour: np.ndarray, step_cost) -> np.ndarray:
    """`tour` refined under `step_cost` (`tour_refine.refine`) up to APPROXIMATE_ABOVE codes, as it is above:
    the refinement's time grows with N as coding does (about 1.5 ms per code on binarized MNIST), and
    its cost table would hold N prior mixtures at once."""
    if len(tour) > APPROXIMATE_ABOVE:
        return np.asarray(tour)
    from .tour_refine import refine
    return refine(_as_codes(codes), tour, step_cost)


def _approximate_distinct_tour(x: np.ndarray, candidates: int, nprobe: int, stats: dict | None) -> np.ndarray:
    """approximate_tour for float32 codes that are all different."""
    n, dim = x.shape
    if n < _MIN_PER_LIST:  # too few codes to train even one list; the exact tour is cheaper than an index
        return _distinct_tour(x, candidates, stats)
    # Centred, as in the exact tour: the coarse quantizer's float32 |a|^2 + |b|^2 - 2ab then loses less.
    xc = np.ascontiguousarray((x - x.mean(0, dtype=np.float64)).astype(np.float32))
    # IVF rather than HNSW (bench/results/tour-ann.md): for 16 neighbours of each of 1,000,000 codes IVF
    # took 113 s at recall 0.98, HNSW (M 16, efSearch 32) 122 s at 0.95, half of it building the graph;
    # on the 60,000 real codes 1.7 s against 3.0 s. Besides, a search over every list is exhaustive (so
    # the fallback always finds a code), and k-means with faiss' fixed seed plus per-query searches give the
    # same index and tour for any number of threads, which HNSW's parallel insertion does not. About
    # sqrt(N) lists, so that choosing the lists and scanning them cost about the same.
    nlist = max(1, min(round(np.sqrt(n)), n // _MIN_PER_LIST))
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, nlist)
    index.train(xc)
    index.add(xc)
    index.nprobe = min(nprobe, nlist)
    _, cand_lists = index.search(xc, min(candidates, n))
    # A list can come back short (-1); the code itself stands in, and it is visited when its list is read.
    cand_lists = np.where(cand_lists < 0, np.arange(n)[:, None], cand_lists)

    visited = np.zeros(n, dtype=bool)
    fallback = _UnvisitedIVF(index, xc, nprobe * APPROXIMATE_FALLBACK_WIDTH)
    tour = np.empty(n, dtype=np.int64)
    cur = 0
    tour[0] = 0
    visited[0] = True
    fallbacks = 0
    synced = 0
    for t in range(1, n):
        cand = cand_lists[cur]
        free = ~visited[cand]
        j = int(free.argmax())
        if free[j]:
            cur = int(cand[j])
        else:
            fallback.mark_visited(tour[synced:t])
            synced = t
            cur = fallback.nearest(cur, visited, n - t)
            fallbacks += 1
        tour[t] = cur
        visited[cur] = True
    if stats is not None:
        stats.update(lists=nlist, fallback_steps=fallbacks, fallback_searches=fallback.searches,
                     rebuilds=fallback.rebuilds)
    return tour


class _UnvisitedIVF:
    """A near unvisited code, from the IVF index searched through a bitmap of the unvisited codes.

    Filtering by bitmap rather than removing codes: faiss' remove_ids scans the whole index on every call,
    while the bitmap costs one bit per visited code. Visited entries still cost time when a searched list
    is scanned, so the index is refilled with the unvisited codes when half of its entries are visited:
    the refills add up to about N codes in all. The first search already looks at more lists than the
    neighbour lists did (APPROXIMATE_FALLBACK_WIDTH): a dead end is in a visited region, so the nearest
    unvisited code is usually farther than a nearest neighbour. On the 60,000 binarized-MNIST codes
    (bench/results/tour-ann.md) width 1 costs 0.0087 nats/image more than the exact tour, width 4 0.0003.
    """

    def __init__(self, index: faiss.IndexIVFFlat, xc: np.ndarray, width: int):
        self.index, self.xc, self.width = index, xc, width
        self.bitmap = np.full((len(xc) + 7) // 8, 255, dtype=np.uint8)   # bit i % 8 of byte i // 8: i unvisited
        self.selector = faiss.IDSelectorBitmap(len(self.bitmap), faiss.swig_ptr(self.bitmap))
        self.rebuilds = 0
        self.searches = 0

    def mark_visited(self, ids: np.ndarray) -> None:
        np.bitwise_and.at(self.bitmap, ids >> 3, ~np.left_shift(1, ids & 7).astype(np.uint8))

    def nearest(self, cur: int, visited: np.ndarray, unvisited: int) -> int:
        if 2 * unvisited < self.index.ntotal:
            ids = np.flatnonzero(~visited)
            self.index.reset()
            self.index.add_with_ids(self.xc[ids], ids)
            self.rebuilds += 1
        nlist = self.index.nlist
        width = min(self.width, nlist)
        while True:
            params = faiss.SearchParametersIVF(sel=self.selector, nprobe=width)
            _, found = self.index.search(self.xc[cur:cur + 1], 1, params=params)
            self.searches += 1
            if found[0, 0] >= 0:
                return int(found[0, 0])
            if width == nlist:  # every list searched, and every unvisited code is in one: cannot happen
                raise AssertionError("no unvisited code found in the unvisited index")
            width = min(width * FALLBACK_GROWTH, nlist)
