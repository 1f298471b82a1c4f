"""Nearest neighbours among codes with faiss, never counting a datum as its own neighbour."""

from __future__ import annotations

import faiss
import numpy as np


def nearest_others(queries: np.ndarray, query_ids: np.ndarray, memory: np.ndarray, k: int) -> np.ndarray:
    """Indices (len(queries), k) of the k nearest codes in `memory`, excluding each query's own row.

    Exact (brute force) search for k+1 candidates; the query's own id is dropped by index, not by distance,
    so duplicates of a code still count as neighbours. When the id is not among the candidates (ties), the
    last candidate is dropped instead.
    """
    if k >= len(memory):
        raise ValueError(f"need more than {k} codes to find {k} neighbours excluding self, have {len(memory)}")
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    memory = np.ascontiguousarray(memory, dtype=np.float32)
    _, found = faiss.knn(queries, memory, k + 1)
    own = found == query_ids[:, None]
    # Keep the first k candidates that are not the query itself.
    keep = ~own
    keep[keep.cumsum(1) > k] = False
    return found[keep].reshape(len(queries), k)


class CodeMemory:
    """Algorithm 1's code memory: one code per training datum, overwritten as batches are encoded."""

    def __init__(self, size: int, dim: int, rng: np.random.Generator):
        self.codes = rng.standard_normal((size, dim)).astype(np.float32)

    def write(self, ids: np.ndarray, codes: np.ndarray) -> None:
        self.codes[ids] = codes

    def neighbours(self, ids: np.ndarray, k: int) -> np.ndarray:
        return nearest_others(self.codes[ids], ids, self.codes, k)


def pick_uniform(candidates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One neighbour per row, uniform among the K candidates."""
    cols = rng.integers(0, candidates.shape[1], size=len(candidates))
    return candidates[np.arange(len(candidates)), cols]


class UniqueNeighbours:
    """Each code is used as a neighbour at most once per pass: the first unused candidate, nearest first.

    Falls back to a uniform pick when every candidate has been used this pass.
    """

    def __init__(self, size: int):
        self.used = np.zeros(size, dtype=bool)

    def new_pass(self) -> None:
        self.used[:] = False

    def pick(self, candidates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        chosen = pick_uniform(candidates, rng)
        for row, cands in enumerate(candidates):
            free = cands[~self.used[cands]]
            if len(free):
                chosen[row] = free[0]
            self.used[chosen[row]] = True
        return chosen
