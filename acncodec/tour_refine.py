"""The tour refined against what each step costs the archive: local search on a directed step cost.

`tour.tour_for` makes a path that is short in Euclidean distance between codes. What the archive pays for a
step a -> b is KL(q(z|x_b) || p(z|c_a)) (`kl.step_costs`): it is directed (a -> b and b -> a cost different
amounts) and not a function of the distance. `refine` starts from the distance tour and makes improving moves
under the step cost until none is left:

- relocation (Or-opt): a piece of one to three consecutive data moved between two others elsewhere, in its
  own direction;
- reversal (2-opt): the piece between two steps reversed, priced at the reversed steps' own costs;
- exchange: two adjacent pieces swapped, the 3-opt move that keeps every step's direction.

Moves are looked for only where a new step joins a datum to one of its `candidates` nearest codes (as its
predecessor or as its successor), and, as in Lin and Kernighan's search, only while the gain so far is positive: a
move that starts by replacing a datum's step with a candidate step is tried only if the candidate step costs less
than the one it replaces, and its second new step only if the gain is still positive after it. The candidates are
sorted by cost, so each search stops at the first that fails. The first datum stays first (it is coded under the
unconditional prior). The cost is asked for in batches, each step at most once: the candidate steps and the path's
own steps up front, then, after each pass, the steps the pass needed and did not know (a move needing an unknown
step is not made in that pass). A round is one pass of each move; with don't-look bits, a round looks only from
the data the round before touched, and rounds go on until one that looks from every datum makes no move and needs
no new step, or `max_rounds`.
Every move lowers the total by more than 1e-9, so the result never costs more than the input.

On the binarized-MNIST test codes (bench/results/tour-refine-*.md) this takes the tour's KL from 6.49 to 6.31
nats/image in about 21 s, where the assignment bound (each datum given a predecessor, each used once, cycles
allowed) is 5.90. It is the sender's choice alone: the receiver decodes any order. The step costs are float
arithmetic, so another CPU or library build may price a near tie the other way and refine to another tour
(another archive, decoded as exactly); on one machine the same input gives the same tour.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

#: Nearest codes of each datum where moves are looked for (as predecessors and successors). On the binarized-MNIST
#: test codes 32 gave a lower KL than 16 or 48, in about the time 16 took without the gain criterion
#: (bench/results/tour-refine-*.md).
CANDIDATES = 32
#: Most rounds of the three passes (the binarized-MNIST test split's 10,000 codes take about 50).
MAX_ROUNDS = 200
#: Longest piece a relocation moves.
RELOCATE_LONGEST = 3
_GAIN = 1e-9

StepCost = Callable[[np.ndarray, np.ndarray], np.ndarray]


class _Steps:
    """Known step costs, keyed by a * n + b; unknown ones asked for are remembered and computed in a batch."""

    def __init__(self, cost: StepCost, n: int):
        self.cost, self.n = cost, n
        self.known: dict[int, float] = {}
        self.wanted: set[int] = set()
        self.computed = 0

    def getter(self):
        known, wanted, n = self.known, self.wanted, self.n

        def g(a: int, b: int) -> float:
            v = known.get(a * n + b)
            if v is None:
                wanted.add(a * n + b)
                return math.inf
            return v
        return g

    def fill(self, keys=None) -> None:
        """Compute the wanted steps (or `keys`) not known yet."""
        keys = self.wanted if keys is None else keys
        new = np.fromiter((k for k in set(keys) if k not in self.known), dtype=np.int64)
        self.wanted.clear()
        if len(new):
            new.sort()
            values = np.asarray(self.cost(new // self.n, new % self.n), dtype=np.float64)
            self.known.update(zip(new.tolist(), values.tolist()))
            self.computed += len(new)


def path_cost(tour: np.ndarray, cost: StepCost) -> float:
    """The sum of the step costs along `tour`."""
    tour = np.asarray(tour, dtype=np.int64)
    return float(np.asarray(cost(tour[:-1], tour[1:]), dtype=np.float64).sum()) if len(tour) > 1 else 0.0


def refine(codes: np.ndarray, tour: np.ndarray, cost: StepCost, candidates: int = CANDIDATES,
           max_rounds: int = MAX_ROUNDS, prune: bool = True, stats: dict | None = None) -> np.ndarray:
    """`tour` (a permutation of range(len(codes))) improved under the directed step cost `cost(prev, next)`
    (int arrays in, float64 costs out), with the same first datum; see the module docstring. `prune` applies
    the gain criterion (module docstring); without it every move through the candidates is tried. If `stats`
    is a dict, the moves of each kind, the rounds and the steps computed are written into it."""
    path = [int(v) for v in tour]
    n = len(path)
    counts = {"relocations": 0, "reversals": 0, "exchanges": 0}
    rounds = 0
    steps = _Steps(cost, max(n, 1))
    k = min(candidates, n - 1)
    if n > 3 and k >= 1:
        from .knn import nearest_others
        near = nearest_others(codes, np.arange(n), codes, k)
        a = np.repeat(np.arange(n, dtype=np.int64), k)
        b = near.reshape(-1).astype(np.int64)
        p = np.asarray(path, dtype=np.int64)
        steps.fill(np.concatenate([a * n + b, b * n + a, p[:-1] * n + p[1:]]).tolist())
        # Each datum's candidates in order of what the step costs: cheapest predecessors and successors first.
        g = steps.getter()
        before = [sorted(row, key=lambda c, i=i: (g(c, i), c)) for i, row in enumerate(near.tolist())]
        after = [sorted(row, key=lambda c, i=i: (g(i, c), c)) for i, row in enumerate(near.tolist())]
        # Don't-look bits: a round looks from the data a move touched in the round before, and from those whose
        # look needed a step not known then; when that finds nothing, a round looks from every datum, and only
        # such a round ending empty stops.
        look, full = range(n), True
        for rounds in range(1, max_rounds + 1):
            touched: set[int] = set()
            for make in (_relocate, _reverse, _exchange):
                counts[_NAMES[make]] += make(path, g, before, after, steps, look, touched, prune)
                steps.fill()
            if touched:
                look, full = sorted(touched), False
            elif full:
                break
            else:
                look, full = range(n), True
    if stats is not None:
        stats.update(counts, rounds=rounds, steps_computed=steps.computed)
    return np.asarray(path, dtype=np.int64)


def _relocate(path: list[int], g, before, after, steps: _Steps, look, touched: set, prune: bool) -> int:
    """One pass of relocations of pieces starting at the data in `look`; `path` is rewritten in place, and the
    data whose neighbours changed are added to `touched`."""
    n = len(path)
    succ, pred = [-1] * n, [-1] * n
    for i in range(n - 1):
        succ[path[i]], pred[path[i + 1]] = path[i + 1], path[i]
    wanted = steps.wanted
    moves = 0
    for first in look:
        p = pred[first]
        if p < 0:
            continue                     # the first datum stays first
        asked = len(wanted)
        seg = [first]
        for _ in range(RELOCATE_LONGEST):
            if len(seg) > 1:
                if succ[seg[-1]] < 0:
                    break
                seg.append(succ[seg[-1]])
            last = seg[-1]
            q = succ[last]
            # taking the piece out: p -> first and last -> q become p -> q
            out = g(p, first) + (g(last, q) - g(p, q) if q >= 0 else 0.0)
            if not out > _GAIN:
                continue
            best, where = _GAIN, -1
            limit = g(p, first) if prune else math.inf
            for c in before[first]:      # c -> first: the piece goes between c and succ(c)
                if g(c, first) >= limit:
                    break
                if c == p or c in seg:
                    continue
                v = succ[c]
                gain = out - g(c, first) - (g(last, v) - g(c, v) if v >= 0 else 0.0)
                if gain > best:
                    best, where = gain, c
            limit = g(last, q) if prune and q >= 0 else math.inf
            for c in after[last]:        # last -> c: the piece goes between pred(c) and c
                if g(last, c) >= limit:
                    break
                u = pred[c]
                if c == q or c in seg or u < 0 or u in seg:
                    continue
                gain = out - g(u, first) - g(last, c) + g(u, c)
                if gain > best:
                    best, where = gain, u
            if where >= 0:
                succ[p] = q
                if q >= 0:
                    pred[q] = p
                v = succ[where]
                succ[where], pred[first] = first, where
                succ[last] = v
                if v >= 0:
                    pred[v] = last
                touched.update((p, q, first, last, where, v))
                moves += 1
                break
        if len(wanted) > asked:
            touched.add(first)
    if moves:
        cur = path[0]
        for i in range(n):
            path[i] = cur
            cur = succ[cur]
    touched.discard(-1)
    return moves


def _reverse(path: list[int], g, before, after, steps: _Steps, look, touched: set, prune: bool) -> int:
    """One pass of reversals: for each datum a and candidate successor c later on the path, the piece that
    makes a -> c a step (or a -> c the step after it) reversed when that lowers the cost."""
    n = len(path)
    pos = [0] * n
    for i, v in enumerate(path):
        pos[v] = i
    steps.fill([path[i + 1] * n + path[i] for i in range(n - 1)])    # every step's reverse, to price reversed pieces
    wanted = steps.wanted
    forward = np.array([g(path[i], path[i + 1]) for i in range(n - 1)])
    backward = np.array([g(path[i + 1], path[i]) for i in range(n - 1)])
    moves = 0
    for a in look:
        asked = len(wanted)
        limit = g(a, path[pos[a] + 1]) if prune and pos[a] + 1 < n else math.inf
        for c in after[a]:
            if g(a, c) >= limit:
                break
            # new steps P[i] -> P[j] and P[i+1] -> P[j+1], P[i+1..j] reversed; a -> c is the first or the second
            for i, j in ((pos[a], pos[c]), (pos[a] - 1, pos[c] - 1)):
                if i < 0 or j <= i + 1:
                    continue
                tail = j + 1 < n
                old = forward[i] + (forward[j] if tail else 0.0) + forward[i + 1:j].sum()
                new = (g(path[i], path[j]) + (g(path[i + 1], path[j + 1]) if tail else 0.0)
                       + backward[i + 1:j].sum())
                if old - new > _GAIN:
                    touched.update(path[m] for m in (i, i + 1, j, j + 1) if m < n)
                    path[i + 1:j + 1] = path[i + 1:j + 1][::-1]
                    for m in range(i + 1, j + 1):
                        pos[path[m]] = m
                    for m in range(i, min(j + 1, n - 1)):
                        forward[m] = g(path[m], path[m + 1])
                        backward[m] = g(path[m + 1], path[m])
                    moves += 1
                    break
            else:
                continue
            break
        if len(wanted) > asked:
            touched.add(a)
    return moves


def _exchange(path: list[int], g, before, after, steps: _Steps, look, touched: set, prune: bool) -> int:
    """One pass of exchanges of two adjacent pieces, looked for from each datum x in `look` along a new step
    x -> d."""
    n = len(path)
    pos = [0] * n
    for i, v in enumerate(path):
        pos[v] = i
    wanted = steps.wanted
    moves = 0
    for x in look:
        asked = len(wanted)
        i = pos[x]
        best, move = _GAIN, None
        y = path[i + 1] if i + 1 < n else -1
        limit = g(x, y) if prune and y >= 0 else math.inf
        for d in after[x]:
            if g(x, d) >= limit:
                break
            j = pos[d]
            if j > i + 1:
                # x -> b..c -> d..e -> z  becomes  x -> d..e -> b..c -> z
                b, c = path[i + 1], path[j - 1]
                base = g(x, b) + g(c, d) - g(x, d)
                for e in before[b]:
                    if prune and g(e, b) >= base:
                        break
                    k = pos[e]
                    if k < j:
                        continue
                    z = path[k + 1] if k + 1 < n else -1
                    gain = base - g(e, b) + (g(e, z) - g(c, z) if z >= 0 else 0.0)
                    if gain > best:
                        best, move = gain, (i, j, k)
            elif 1 <= j < i:
                # p -> d..w -> w2..x -> y  becomes  p -> w2..x -> d..w -> y
                p = path[j - 1]
                base = g(p, d) - g(x, d) + (g(x, y) if y >= 0 else 0.0)
                for w2 in after[p]:
                    if prune and g(p, w2) >= base:
                        break
                    m = pos[w2]
                    if not j < m <= i:
                        continue
                    w = path[m - 1]
                    gain = base + g(w, w2) - g(p, w2) - (g(w, y) if y >= 0 else 0.0)
                    if gain > best:
                        best, move = gain, (j - 1, m, i)
        if move is not None:
            lo, mid, hi = move            # path[lo+1..mid-1] and path[mid..hi] swap places
            touched.update(path[m] for m in (lo, lo + 1, mid - 1, mid, hi, hi + 1) if m < n)
            path[lo + 1:hi + 1] = path[mid:hi + 1] + path[lo + 1:mid]
            for m in range(lo + 1, hi + 1):
                pos[path[m]] = m
            moves += 1
        if len(wanted) > asked:
            touched.add(x)
    return moves


_NAMES = {_relocate: "relocations", _reverse: "reversals", _exchange: "exchanges"}
