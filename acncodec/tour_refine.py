"""The tour refined against what each step costs the archive: local search on a directed step cost.

`tour.tour_for` makes a path that is short in Euclidean distance between codes. What the archive pays for a
step a -> b is KL(q(z|x_b) || p(z|c_a)) (`kl.step_costs`): it is directed (a -> b and b -> a cost different
amounts) and not a function of the distance. `refine` starts from the distance tour and makes improving moves
under the step cost until none is left:

- relocation (Or-opt): one datum (or a piece of up to `RELOCATE_LONGEST` consecutive data) moved between two
  others elsewhere, in its own direction;
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
nats/image, where the assignment bound (each datum given a predecessor, each used once, cycles allowed) is 5.90.
It is the sender's choice alone: the receiver decodes any order. The step costs are float arithmetic, so another
CPU or library build may price a near tie the other way and refine to another tour (another archive, decoded as
exactly); on one machine the same input gives the same tour.

The passes run compiled (numba) on a table of the known steps; the prices of reversed pieces are summed as numpy
sums them (`_pairwise_sum`), so the moves are those of the Python passes this replaced, to the last bit (the same
tours on the binarized-MNIST test codes, 1,000 and 10,000: the archives kept their bytes). A reversal is summed
that way only when prefix sums, within a proven slack of those sums, say it may gain (`_screen`). The steps are
priced compiled too (`kl.step_costs`), and a candidate step's cost is read from an array beside the candidates,
not from the table. On the 10,000 the refinement took 6.4 s
(bench/results/tour-refine-binarized-mnist-test-62fb637865fe.md, at 93d719d; 6.5 s at e079f22, with the arrays),
against 9.9 s without the screen, 16.5 s with the pricing in torch and 20.6 s with the Python passes (the
records before it).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .jit import jit as _jit

#: Nearest codes of each datum where moves are looked for (as predecessors and successors). On the binarized-MNIST
#: test codes 32 gave a lower KL than 16 or 48, in about the time 16 took without the gain criterion
#: (bench/results/tour-refine-*.md).
CANDIDATES = 32
#: Most rounds of the three passes (the binarized-MNIST test split's 10,000 codes take about 50).
MAX_ROUNDS = 200
#: Longest piece a relocation moves. Longer pieces are left to exchanges (a piece moved is an exchange with what lies
#: between): on the binarized-MNIST test codes, pieces of up to 3 gave 6.3166 nats/image against 6.3198 for single
#: data on the 10,000, in 26% more time, and 8.977 against 8.971 on the first 1,000.
RELOCATE_LONGEST = 1
_GAIN = 1e-9

StepCost = Callable[[np.ndarray, np.ndarray], np.ndarray]


class _Steps:
    """Known step costs, and the steps asked for and not known yet (wanted), which are computed in a batch between
    passes. They live in one open-addressing table of step keys a * n + b (`_table`), which the passes read and
    add to compiled; numba's own dictionaries would cost a third of a second to set up in every process."""

    def __init__(self, cost: StepCost, n: int):
        self.cost, self.n = cost, n
        self.tab = _table(1024, n)
        self.computed = 0

    def fill(self, keys: np.ndarray | None = None) -> None:
        """Compute the wanted steps, or else (between passes, nothing wanted) `keys`, those not known yet, in
        increasing order of key."""
        if keys is not None and self.tab[4][1]:
            raise RuntimeError("steps are wanted: fill them before others")
        new = np.unique(_wanted_keys(self.tab) if keys is None else np.asarray(keys, dtype=np.int64))
        new = new[_unknown(self.tab, new)]
        if len(new):
            values = np.asarray(self.cost(new // self.n, new % self.n), dtype=np.float64)
            self.tab = _room(self.tab, len(new))
            _learn(self.tab, new, values)
            self.computed += len(new)
        self.tab[4][1] = 0          # nothing wanted


@_jit
def _table(capacity: int, n: int):
    """An empty table of `capacity` (a power of two) slots: keys (-1 where empty), costs, whether known, the
    wanted slots in the order asked, and (entries, wanted, n)."""
    meta = np.zeros(3, np.int64)
    meta[2] = n
    return (np.full(capacity, -1, np.int64), np.zeros(capacity), np.zeros(capacity, np.bool_),
            np.zeros(capacity, np.int64), meta)


@_jit
def _slot(keys: np.ndarray, key: int) -> int:
    """Where key is, or the empty slot where it would go (linear probing; keys below 2^36 hash without
    overflow)."""
    mask = len(keys) - 1
    h = key * 40503
    i = (h ^ (h >> 21)) & mask
    while keys[i] != -1 and keys[i] != key:
        i = (i + 1) & mask
    return i


@_jit
def _room(tab, margin: int):
    """The table, or a copy twice as large (or more), so that `margin` more entries leave it at most half full."""
    keys, costs, known, wanted, meta = tab
    capacity = len(keys)
    while 2 * (meta[0] + margin) > capacity:
        capacity *= 2
    if capacity == len(keys):
        return tab
    grown = _table(capacity, meta[2])
    for i in range(len(keys)):
        if keys[i] != -1:
            j = _slot(grown[0], keys[i])
            grown[0][j], grown[1][j], grown[2][j] = keys[i], costs[i], known[i]
    for t in range(meta[1]):
        grown[3][t] = _slot(grown[0], keys[wanted[t]])
    grown[4][:2] = meta[:2]
    return grown


@_jit
def _g(tab, a: int, b: int) -> float:
    """The cost of step a -> b where known; else inf, and the step is wanted (computed after the pass). The
    table must have room for it (`_room`)."""
    keys, costs, known, wanted, meta = tab
    key = a * meta[2] + b
    i = _slot(keys, key)
    if keys[i] == key:
        return costs[i] if known[i] else np.inf
    keys[i] = key
    wanted[meta[1]] = i
    meta[0] += 1
    meta[1] += 1
    return np.inf


@_jit
def _wanted_keys(tab) -> np.ndarray:
    keys, _, _, wanted, meta = tab
    return keys[wanted[:meta[1]]]


@_jit
def _unknown(tab, keys: np.ndarray) -> np.ndarray:
    out = np.empty(len(keys), np.bool_)
    for t in range(len(keys)):
        i = _slot(tab[0], keys[t])
        out[t] = tab[0][i] != keys[t] or not tab[2][i]
    return out


@_jit
def _learn(tab, keys: np.ndarray, values: np.ndarray) -> None:
    for t in range(len(keys)):
        i = _slot(tab[0], keys[t])
        if tab[0][i] != keys[t]:
            tab[0][i] = keys[t]
            tab[4][0] += 1
        tab[1][i], tab[2][i] = values[t], True


@_jit
def _lookup(tab, keys: np.ndarray) -> np.ndarray:
    out = np.empty(len(keys))
    for t in range(len(keys)):
        out[t] = tab[1][_slot(tab[0], keys[t])]
    return out


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
    path = np.array(tour, dtype=np.int64)
    n = len(path)
    counts = {"relocations": 0, "reversals": 0, "exchanges": 0}
    rounds = 0
    steps = _Steps(cost, max(n, 1))
    k = min(candidates, n - 1)
    if n > 3 and k >= 1:
        from .knn import nearest_others
        near = nearest_others(codes, np.arange(n), codes, k).astype(np.int64)
        a = np.repeat(np.arange(n, dtype=np.int64), k)
        b = near.reshape(-1)
        steps.fill(np.concatenate([a * n + b, b * n + a, path[:-1] * n + path[1:]]))
        # Each datum's candidates in order of what the step costs, ties by index: cheapest predecessors and
        # successors first.
        into = _lookup(steps.tab, b * n + a).reshape(n, k)
        out_of = _lookup(steps.tab, a * n + b).reshape(n, k)
        order = np.lexsort((near, into), axis=-1)
        before = np.ascontiguousarray(np.take_along_axis(near, order, -1))
        # and what those steps cost, side by side: the passes read a candidate step there, not in the table
        # (the same numbers: they are known from here on)
        into = np.ascontiguousarray(np.take_along_axis(into, order, -1))
        order = np.lexsort((near, out_of), axis=-1)
        after = np.ascontiguousarray(np.take_along_axis(near, order, -1))
        out_of = np.ascontiguousarray(np.take_along_axis(out_of, order, -1))
        before, after = (before, into), (after, out_of)
        # Don't-look bits: a round looks from the data a move touched in the round before, and from those whose
        # look needed a step not known then; when that finds nothing, a round looks from every datum, and only
        # such a round ending empty stops.
        look, full = np.arange(n, dtype=np.int64), True
        # the most steps one datum's look may ask for, which the table keeps room for
        margin = 2 * n + 8 * k * (k + RELOCATE_LONGEST + 2)
        for rounds in range(1, max_rounds + 1):
            touched = np.zeros(n, np.bool_)
            moves, steps.tab = _relocate(path, steps.tab, before, after, look, touched, prune, RELOCATE_LONGEST,
                                         margin)
            counts["relocations"] += moves
            steps.fill()
            steps.fill(path[1:] * n + path[:-1])    # every step's reverse, to price reversed pieces
            moves, steps.tab = _reverse(path, steps.tab, before, after, look, touched, prune, margin)
            counts["reversals"] += moves
            steps.fill()
            moves, steps.tab = _exchange(path, steps.tab, before, after, look, touched, prune, margin)
            counts["exchanges"] += moves
            steps.fill()
            if touched.any():
                look, full = np.flatnonzero(touched).astype(np.int64), False
            elif full:
                break
            else:
                look, full = np.arange(n, dtype=np.int64), True
    if stats is not None:
        stats.update(counts, rounds=rounds, steps_computed=steps.computed)
    return path


@_jit
def _holds(seg, size: int, v: int) -> bool:
    for t in range(size):
        if seg[t] == v:
            return True
    return False


@_jit
def _relocate(path, tab, before, after, look, touched, prune: bool, longest: int, margin: int):
    """One pass of relocations of pieces of up to `longest` data starting at the data in `look`; `path` is
    rewritten in place, and the data whose neighbours changed are marked in `touched`. `before` and `after`: each
    datum's candidates (n, k) and what their steps into it and out of it cost, as `refine` makes them."""
    (into, into_cost), (out_of, out_of_cost) = before, after
    k = into.shape[1]
    n = len(path)
    succ = np.full(n, -1, np.int64)
    pred = np.full(n, -1, np.int64)
    for i in range(n - 1):
        succ[path[i]], pred[path[i + 1]] = path[i + 1], path[i]
    seg = np.empty(longest, np.int64)
    moves = 0
    for first in look:
        tab = _room(tab, margin)
        p = pred[first]
        if p < 0:
            continue                     # the first datum stays first
        asked = tab[4][1]
        seg[0] = first
        size = 1
        for grow in range(longest):
            if grow > 0:
                if succ[seg[size - 1]] < 0:
                    break
                seg[size] = succ[seg[size - 1]]
                size += 1
            last = seg[size - 1]
            q = succ[last]
            # taking the piece out: p -> first and last -> q become p -> q
            out = _g(tab, p, first) + (
                _g(tab, last, q) - _g(tab, p, q) if q >= 0 else 0.0)
            if not out > _GAIN:
                continue
            best, where = _GAIN, -1
            limit = _g(tab, p, first) if prune else np.inf
            for t in range(k):           # c -> first: the piece goes between c and succ(c)
                c, c_first = into[first, t], into_cost[first, t]
                if c_first >= limit:
                    break
                if c == p or _holds(seg, size, c):
                    continue
                v = succ[c]
                gain = out - c_first - (
                    _g(tab, last, v) - _g(tab, c, v) if v >= 0 else 0.0)
                if gain > best:
                    best, where = gain, c
            limit = _g(tab, last, q) if prune and q >= 0 else np.inf
            for t in range(k):           # last -> c: the piece goes between pred(c) and c
                c, last_c = out_of[last, t], out_of_cost[last, t]
                if last_c >= limit:
                    break
                u = pred[c]
                if c == q or _holds(seg, size, c) or u < 0 or _holds(seg, size, u):
                    continue
                gain = out - _g(tab, u, first) - last_c + _g(tab, u, c)
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
                for m in (p, q, first, last, where, v):
                    if m >= 0:
                        touched[m] = True
                moves += 1
                break
        if tab[4][1] > asked:
            touched[first] = True
    if moves:
        cur = path[0]
        for i in range(n):
            path[i] = cur
            cur = succ[cur]
    return moves, tab


@_jit
def _pairwise_sum(a, lo: int, count: int) -> float:
    """a[lo:lo + count].sum() as numpy adds it (pairwise, eight partial sums in blocks of up to 128), to the
    last bit: the passes' decisions are then those of the same prices summed by numpy."""
    if count < 8:
        res = 0.0
        for i in range(lo, lo + count):
            res += a[i]
        return res
    if count <= 128:
        r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
        r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
        i = 8
        end = count - count % 8
        while i < end:
            b = lo + i
            r0 += a[b]
            r1 += a[b + 1]
            r2 += a[b + 2]
            r3 += a[b + 3]
            r4 += a[b + 4]
            r5 += a[b + 5]
            r6 += a[b + 6]
            r7 += a[b + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < count:
            res += a[lo + i]
            i += 1
        return res
    half = count // 2
    half -= half % 8
    return _pairwise_sum(a, lo, half) + _pairwise_sum(a, lo + half, count - half)


@_jit
def _screen(forward, backward):
    """For `_reverse`: prefix sums lead[k] of forward[m] - backward[m] over m < k, the count unknown[k] of the
    m < k whose reversed cost is unknown (inf, after a move in the pass), and a slack such that, for a piece with
    no unknown cost, `ends + lead[j] - lead[i + 1]` (a reversal's gain, its end steps `ends` summed first) is
    within slack (1 + the ends' magnitudes) of the gain `_reverse` computes exactly with numpy's pairwise sums:
    each of the three sums and the few additions errs by at most (terms) u (the sum of magnitudes) for u = 2^-53
    (any order of summation), which 16 (n + 8) u (1 + the sum of every finite |forward| and |backward|) bounds
    with room to spare. A piece with an unknown reversed cost prices at inf exactly: no move."""
    n = len(forward)
    lead = np.empty(n + 1)
    unknown = np.empty(n + 1, np.int64)
    lead[0], unknown[0] = 0.0, 0
    size = 0.0
    for m in range(n):
        known = np.isfinite(forward[m]) and np.isfinite(backward[m])
        lead[m + 1] = lead[m] + (forward[m] - backward[m] if known else 0.0)
        unknown[m + 1] = unknown[m] + (0 if known else 1)
        if known:
            size += abs(forward[m]) + abs(backward[m])
    return lead, unknown, 16.0 * (n + 8) * 2.0 ** -53 * (1.0 + size)


@_jit
def _reverse(path, tab, before, after, look, touched, prune: bool, margin: int):
    """One pass of reversals: for each datum a and candidate successor c later on the path, the piece that
    makes a -> c a step (or a -> c the step after it) reversed when that lowers the cost. Every step's reverse
    is known (`refine` computes them before the pass)."""
    out_of, out_of_cost = after
    n = len(path)
    pos = np.empty(n, np.int64)
    for i in range(n):
        pos[path[i]] = i
    tab = _room(tab, 2 * n)
    forward = np.empty(max(n - 1, 0))
    backward = np.empty(max(n - 1, 0))
    for i in range(n - 1):
        forward[i] = _g(tab, path[i], path[i + 1])
        backward[i] = _g(tab, path[i + 1], path[i])
    # The screen (`_screen`): prefix sums of forward - backward price a reversal in O(1), within a slack of the
    # exact sums; a move that cannot reach _GAIN even so is not priced exactly. The exact sums decide the rest, so
    # the moves are those of the exact sums alone.
    lead, unknown, slack = _screen(forward, backward)
    moves = 0
    for a in look:
        tab = _room(tab, margin)
        asked = tab[4][1]
        limit = _g(tab, a, path[pos[a] + 1]) if prune and pos[a] + 1 < n else np.inf
        for t in range(out_of.shape[1]):
            c = out_of[a, t]
            if out_of_cost[a, t] >= limit:
                break
            # new steps P[i] -> P[j] and P[i+1] -> P[j+1], P[i+1..j] reversed; a -> c is the first or the second
            moved = False
            for shift in range(2):
                i, j = pos[a] - shift, pos[c] - shift
                if i < 0 or j <= i + 1:
                    continue
                tail = j + 1 < n
                g1 = _g(tab, path[i], path[j])
                g2 = _g(tab, path[i + 1], path[j + 1]) if tail else 0.0
                ends = forward[i] + (forward[j] if tail else 0.0) - g1 - g2
                if unknown[j] > unknown[i + 1] or ends + (lead[j] - lead[i + 1]) <= _GAIN - slack * (
                        1.0 + abs(forward[i]) + (abs(forward[j]) if tail else 0.0) + abs(g1) + abs(g2)):
                    continue
                old = forward[i] + (forward[j] if tail else 0.0) + _pairwise_sum(forward, i + 1, j - i - 1)
                new = g1 + g2 + _pairwise_sum(backward, i + 1, j - i - 1)
                if old - new > _GAIN:
                    for m in (i, i + 1, j, j + 1):
                        if m < n:
                            touched[path[m]] = True
                    path[i + 1:j + 1] = path[i + 1:j + 1][::-1].copy()
                    for m in range(i + 1, j + 1):
                        pos[path[m]] = m
                    for m in range(i, min(j + 1, n - 1)):
                        forward[m] = _g(tab, path[m], path[m + 1])
                        backward[m] = _g(tab, path[m + 1], path[m])
                    lead, unknown, slack = _screen(forward, backward)
                    moves += 1
                    moved = True
                    break
            if moved:
                break
        if tab[4][1] > asked:
            touched[a] = True
    return moves, tab


@_jit
def _exchange(path, tab, before, after, look, touched, prune: bool, margin: int):
    """One pass of exchanges of two adjacent pieces, looked for from each datum x in `look` along a new step
    x -> d."""
    (into, into_cost), (out_of, out_of_cost) = before, after
    k = into.shape[1]
    n = len(path)
    pos = np.empty(n, np.int64)
    for i in range(n):
        pos[path[i]] = i
    moves = 0
    for x in look:
        tab = _room(tab, margin)
        asked = tab[4][1]
        i = pos[x]
        best, lo, mid, hi = _GAIN, -1, -1, -1
        y = path[i + 1] if i + 1 < n else -1
        limit = _g(tab, x, y) if prune and y >= 0 else np.inf
        for t in range(k):
            d, x_d = out_of[x, t], out_of_cost[x, t]
            if x_d >= limit:
                break
            j = pos[d]
            if j > i + 1:
                # x -> b..c -> d..e -> z  becomes  x -> d..e -> b..c -> z
                b, c = path[i + 1], path[j - 1]
                base = _g(tab, x, b) + _g(tab, c, d) - x_d
                for u in range(k):
                    e, e_b = into[b, u], into_cost[b, u]
                    if prune and e_b >= base:
                        break
                    m = pos[e]
                    if m < j:
                        continue
                    z = path[m + 1] if m + 1 < n else -1
                    gain = base - e_b + (
                        _g(tab, e, z) - _g(tab, c, z) if z >= 0 else 0.0)
                    if gain > best:
                        best, lo, mid, hi = gain, i, j, m
            elif 1 <= j < i:
                # p -> d..w -> w2..x -> y  becomes  p -> w2..x -> d..w -> y
                p = path[j - 1]
                base = _g(tab, p, d) - x_d + (
                    _g(tab, x, y) if y >= 0 else 0.0)
                for u in range(k):
                    w2, p_w2 = out_of[p, u], out_of_cost[p, u]
                    if prune and p_w2 >= base:
                        break
                    m = pos[w2]
                    if not j < m <= i:
                        continue
                    w = path[m - 1]
                    gain = base + _g(tab, w, w2) - p_w2 - (
                        _g(tab, w, y) if y >= 0 else 0.0)
                    if gain > best:
                        best, lo, mid, hi = gain, j - 1, m, i
        if lo >= 0:                       # path[lo+1..mid-1] and path[mid..hi] swap places
            for m in (lo, lo + 1, mid - 1, mid, hi, hi + 1):
                if m < n:
                    touched[path[m]] = True
            moved = np.concatenate((path[mid:hi + 1], path[lo + 1:mid]))
            path[lo + 1:hi + 1] = moved
            for m in range(lo + 1, hi + 1):
                pos[path[m]] = m
            moves += 1
        if tab[4][1] > asked:
            touched[x] = True
    return moves, tab
