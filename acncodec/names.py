"""The names section: the set of file names, and the order they come in, coded separately.

The sorted names compress well with xz (sequential names cost almost nothing). The order is a permutation of
the sorted list: absent when the archive order is the sorted order, otherwise its Lehmer code under uniform
models on its own ANS stack, log2(N!) bits, the most any order can cost. xz on the names in tour order
costs more (measured on digits as PNG: 15.4 bits/image against log2(N!)/N = 9.4).

    kind u8 (0: sorted order, 1: permuted) | xz length u32 | xz(JSON list of the sorted names)
    | (kind 1) word count u32 | ANS words u32 ...
"""

from __future__ import annotations

import json
import lzma
import struct

import constriction
import numpy as np

from .errors import AcnError

UNIFORM = constriction.stream.model.Uniform()


class Fenwick:
    """Counts of still-unused positions, for ranks and k-th lookups in O(log N)."""

    def __init__(self, n: int):
        self.n = n
        self.tree = [0] * (n + 1)
        for i in range(1, n + 1):
            self.tree[i] += 1
            parent = i + (i & -i)
            if parent <= n:
                self.tree[parent] += self.tree[i]
        self.top = 1 << max(n.bit_length() - 1, 0)

    def remove(self, i: int) -> None:
        i += 1
        while i <= self.n:
            self.tree[i] -= 1
            i += i & -i

    def rank(self, i: int) -> int:
        """Unused positions below i."""
        total = 0
        while i > 0:
            total += self.tree[i]
            i -= i & -i
        return total

    def kth(self, k: int) -> int:
        """The unused position with exactly k unused positions below it."""
        pos, step = 0, self.top
        while step:
            nxt = pos + step
            if nxt <= self.n and self.tree[nxt] <= k:
                pos = nxt
                k -= self.tree[nxt]
            step >>= 1
        return pos


def lehmer(order: list[int]) -> np.ndarray:
    tree = Fenwick(len(order))
    out = np.empty(len(order), dtype=np.int32)
    for i, position in enumerate(order):
        out[i] = tree.rank(position)
        tree.remove(position)
    return out


def from_lehmer(code: np.ndarray) -> list[int]:
    tree = Fenwick(len(code))
    out = []
    for k in code:
        position = tree.kth(int(k))
        out.append(position)
        tree.remove(position)
    return out


def encode_names(names: list[str]) -> bytes:
    order = sorted(range(len(names)), key=names.__getitem__)
    sorted_names = [names[i] for i in order]
    packed = lzma.compress(json.dumps(sorted_names, ensure_ascii=False).encode(), preset=9 | lzma.PRESET_EXTREME)
    out = struct.pack("<BI", int(order != list(range(len(names)))), len(packed)) + packed
    if order == list(range(len(names))):
        return out
    position = [0] * len(names)          # archive item i is sorted_names[position[i]]
    for rank, i in enumerate(order):
        position[i] = rank
    n = len(names)
    code = lehmer(position)[:-1]          # the last choice is forced
    stack = constriction.stream.stack.AnsCoder()
    stack.encode_reverse(code, UNIFORM, np.arange(n, 1, -1, dtype=np.int32))
    words = stack.get_compressed()
    return out + struct.pack("<I", len(words)) + words.astype("<u4").tobytes()


def decode_names(blob: bytes, where: str) -> list[str]:
    if len(blob) < 5:
        raise AcnError(f"{where}: names section is truncated")
    kind, packed_len = struct.unpack_from("<BI", blob, 0)
    if kind not in (0, 1) or 5 + packed_len > len(blob):
        raise AcnError(f"{where}: names section is damaged")
    try:
        names = json.loads(lzma.decompress(blob[5:5 + packed_len]).decode())
    except (lzma.LZMAError, UnicodeDecodeError, json.JSONDecodeError):
        raise AcnError(f"{where}: names section is damaged") from None
    if not isinstance(names, list) or not all(isinstance(s, str) for s in names):
        raise AcnError(f"{where}: names section is not a list of names")
    rest = blob[5 + packed_len:]
    if kind == 0:
        if rest:
            raise AcnError(f"{where}: names section is damaged")
        return names
    if len(rest) < 4 or len(names) < 2:
        raise AcnError(f"{where}: names section is damaged")
    (count,) = struct.unpack_from("<I", rest, 0)
    if 4 + 4 * count != len(rest):
        raise AcnError(f"{where}: names section is damaged")
    words = np.frombuffer(rest, dtype="<u4", count=count, offset=4).astype(np.uint32)
    n = len(names)
    code = constriction.stream.stack.AnsCoder(words).decode(UNIFORM, np.arange(n, 1, -1, dtype=np.int32))
    position = from_lehmer(np.append(code, 0))
    return [names[p] for p in position]
