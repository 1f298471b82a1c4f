"""File names: the rules a restorable set of names obeys, and the names section that carries them.

The same rules are applied when a folder is compressed and when an archive is read, so an archive that
compressed can always be restored. A name is a plain, visible file name in valid UTF-8, without control
characters, path separators (/ and \\) or NUL; it is restored as a PNG file, with its suffix replaced by .png
("photo.jpg" comes back as "photo.png"), and that name must fit in 255 bytes. No two names may restore to the
same file on a case- or normalisation-insensitive file system (macOS, Windows): "A.png" and "a.png", or the NFC
and NFD forms of "é.png", are refused as a set.

The names section codes the set of names and their order separately.

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
import math
import struct
import unicodedata

import constriction
import numpy as np

from .errors import AcnError, shown

UNIFORM = constriction.stream.model.Uniform()
MAX_NAME_BYTES = 255          # of the restored name, in UTF-8: what common file systems allow
PNG = ".png"


def png_name(name: str) -> str:
    """The name an image is restored under."""
    if name.lower().endswith(PNG):
        return name
    stem, dot, suffix = name.rpartition(".")
    return (stem if dot and stem else name) + PNG


def fold(name: str) -> str:
    """The key under which a case- and normalisation-insensitive file system sees a name."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def check_names(names: list[str], where: str) -> list[str]:
    """The restored (PNG) names, or an AcnError naming the first name that breaks a rule."""
    out, seen = [], {}
    for name in names:
        if not isinstance(name, str) or not name:
            raise AcnError(f"{where}: an empty file name")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise AcnError(f"{where}: file name {shown(name)} is not valid UTF-8") from None
        if name in (".", "..") or any(c in name for c in "/\\\0") or name.startswith("."):
            raise AcnError(f"{where}: {shown(name)} is not a plain, visible file name")
        if any(unicodedata.category(c) == "Cc" for c in name):
            raise AcnError(f"{where}: file name {shown(name)} holds a control character")
        restored = png_name(name)
        longest = max(len(name.encode()), len(restored.encode()))
        if longest > MAX_NAME_BYTES:
            raise AcnError(f"{where}: file name {shown(name)} is too long to restore ({longest} bytes with "
                           f"its .png suffix; at most {MAX_NAME_BYTES})")
        key = fold(restored)
        if key in seen:
            raise AcnError(f"{where}: {shown(seen[key])} and {shown(name)} would be restored to the same file "
                           f"on some file systems (names that differ only in letter case, Unicode "
                           f"normalisation or suffix)")
        seen[key] = name
        out.append(restored)
    return out


def names_text_bound(n: int) -> int:
    """The most bytes the JSON list of n valid names can take: at most 255 UTF-8 bytes a name, each byte at
    most 2 once escaped (no control characters are allowed), 3 bytes of quotes and comma."""
    return 2 + n * (2 * MAX_NAME_BYTES + 3)


def order_words_bound(n: int) -> int:
    """The most words the order's ANS stack can take: log2(n!) bits, plus the coder's head."""
    return math.ceil(math.lgamma(n + 1) / math.log(2) / 32) + 3


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


def decode_names(blob: bytes, n: int, where: str) -> list[str]:
    """The n names in archive order. Sizes are bounded by n before anything is inflated or decoded, and the
    names are checked by the compress-time rules before their order is decoded."""
    if len(blob) < 5:
        raise AcnError(f"{where}: names section is truncated")
    kind, packed_len = struct.unpack_from("<BI", blob, 0)
    if kind not in (0, 1) or 5 + packed_len > len(blob):
        raise AcnError(f"{where}: names section is damaged")
    limit = names_text_bound(n)
    inflate = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        text = inflate.decompress(blob[5:5 + packed_len], max_length=limit + 1)
    except lzma.LZMAError:
        raise AcnError(f"{where}: names section is damaged") from None
    if len(text) > limit:
        raise AcnError(f"{where}: names section inflates past {limit} bytes, more than {n} names can take")
    if not inflate.eof or inflate.unused_data:
        raise AcnError(f"{where}: names section is damaged")
    try:
        names = json.loads(text.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise AcnError(f"{where}: names section is damaged") from None
    if not isinstance(names, list) or not all(isinstance(s, str) for s in names):
        raise AcnError(f"{where}: names section is not a list of names")
    if len(names) != n:
        raise AcnError(f"{where}: archive holds {len(names)} names for {n} images")
    check_names(names, where)
    if names != sorted(names):
        raise AcnError(f"{where}: names section is damaged (names out of order)")
    rest = blob[5 + packed_len:]
    if kind == 0:
        if rest:
            raise AcnError(f"{where}: names section is damaged")
        return names
    if len(rest) < 4 or n < 2:
        raise AcnError(f"{where}: names section is damaged")
    (count,) = struct.unpack_from("<I", rest, 0)
    if 4 + 4 * count != len(rest) or count > order_words_bound(n):
        raise AcnError(f"{where}: names section is damaged")
    words = np.frombuffer(rest, dtype="<u4", count=count, offset=4).astype(np.uint32)
    stack = constriction.stream.stack.AnsCoder(words)
    code = stack.decode(UNIFORM, np.arange(n, 1, -1, dtype=np.int32))
    if not stack.is_empty():
        raise AcnError(f"{where}: names section is damaged (order code has bits left over)")
    position = from_lehmer(np.append(code, 0))
    return [names[p] for p in position]
