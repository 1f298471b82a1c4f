"""Nearest neighbours among codes, never counting a datum as its own: faiss on the CPU, exact brute force on a
training device."""

from __future__ import annotations

import faiss
import numpy as np
import torch


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


def draw_pool(size: int, pool: int | None, rng: np.random.Generator) -> np.ndarray | None:
    """Rows of the code memory to search this step: `pool` of the `size` drawn without replacement (sorted),
    or None (all of them) when there is no pool or it would hold every row."""
    if pool is None or pool >= size:
        return None
    return np.sort(rng.choice(size, pool, replace=False))


def nearest_in_pool(codes: np.ndarray, ids: np.ndarray, k: int, pool: np.ndarray | None) -> np.ndarray:
    """The k nearest codes to codes[ids] among codes[pool] (all codes when pool is None), each datum excluded
    from its own neighbours; indices into `codes`."""
    if pool is None:
        return nearest_others(codes[ids], ids, codes, k)
    at = np.searchsorted(pool, ids)
    inside = (at < len(pool)) & (pool[np.minimum(at, len(pool) - 1)] == ids)
    found = nearest_others(codes[ids], np.where(inside, at, -1), codes[pool], k)
    return pool[found]


class CodeMemory:
    """Algorithm 1's code memory: one code per training datum, overwritten as batches are encoded. On the CPU,
    searched with faiss."""

    def __init__(self, size: int, dim: int, rng: np.random.Generator):
        self.codes = rng.standard_normal((size, dim)).astype(np.float32)

    def write(self, ids: np.ndarray, codes) -> None:
        self.codes[ids] = codes.detach().cpu().numpy() if isinstance(codes, torch.Tensor) else codes

    def neighbours(self, ids: np.ndarray, k: int, pool: np.ndarray | None = None) -> np.ndarray:
        return nearest_in_pool(self.codes, ids, k, pool)

    def read(self, ids: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.from_numpy(self.codes[ids]).to(device)


class DeviceCodeMemory:
    """The same memory held on an accelerator (60,000 codes of 32 floats are 7.7 MB): codes are written and
    read there, and the search is exact brute force there too (squared distances by one matrix product, the k
    smallest), so a training step moves only the neighbours' indices to the CPU. As in `nearest_others`, a
    datum is excluded by index, not by distance, so duplicates of a code still count as neighbours. `codes` is
    the memory as a numpy array (for checkpoints)."""

    def __init__(self, size: int, dim: int, rng: np.random.Generator, device: torch.device | str):
        self.device = torch.device(device)
        self.table = torch.from_numpy(rng.standard_normal((size, dim)).astype(np.float32)).to(self.device)

    @property
    def codes(self) -> np.ndarray:
        return self.table.cpu().numpy()

    @codes.setter
    def codes(self, value: np.ndarray) -> None:
        self.table = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)).to(self.device)

    def write(self, ids: np.ndarray, codes) -> None:
        self.table[torch.as_tensor(ids, device=self.device)] = torch.as_tensor(codes, device=self.device).detach()

    @torch.no_grad()
    def neighbours(self, ids: np.ndarray, k: int, pool: np.ndarray | None = None) -> np.ndarray:
        searched = len(self.table) if pool is None else len(pool)
        if k >= searched:
            raise ValueError(f"need more than {k} codes to find {k} neighbours excluding self, have {searched}")
        rows = torch.as_tensor(ids, device=self.device)
        q = self.table[rows]
        table = self.table if pool is None else self.table[torch.as_tensor(pool, device=self.device)]
        dist = (q * q).sum(1, keepdim=True) - 2 * q @ table.T + (table * table).sum(1)
        if pool is None:
            dist[torch.arange(len(rows), device=self.device), rows] = float("inf")
        else:
            pool_rows = torch.as_tensor(pool, device=self.device)
            dist[rows[:, None] == pool_rows[None, :]] = float("inf")
        found = dist.topk(k, dim=1, largest=False).indices.cpu().numpy()
        return found if pool is None else pool[found]

    def read(self, ids: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
        return self.table[torch.as_tensor(ids, device=self.device)]


def code_memory(size: int, dim: int, rng: np.random.Generator, device: torch.device):
    """The code memory for a run on `device`: on the CPU with faiss, or on the accelerator itself."""
    if torch.device(device).type == "cpu":
        return CodeMemory(size, dim, rng)
    return DeviceCodeMemory(size, dim, rng, device)


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
