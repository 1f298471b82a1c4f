"""Sharded archives, format version 3 (docs/FORMAT.md): the dataset cut into shards, each an independent stream.

    magic "ACNC" | version u16 = 3 | index header length u16 | index header
    | names length u32 | names (every image's name, in archive order; empty for arrays)
    | shard count u32 | per shard: images u32, bytes u64, SHA-256 of the shard's bytes
    | SHA-256 of everything before it (the index digest)
    | the shards, back to back

Each shard is a complete version 2 archive (archive.py) of its images, without names and without library
versions (the index header holds those): it decodes on its own, with the same code as a one-stream archive,
and can be read without decoding, or even reading, the others. The index digest covers the header, the names
and the table; the table's digests cover the shards. The archive order is shard after shard, each shard in
its own archive order. A dataset in one shard is written as a version 2 archive, exactly as before shards.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

import numpy as np

from .archive import DIGEST, MAGIC, PREFIX, Archive, parse as parse_stream, read_names
from .data import DataSpec
from .errors import AcnError
from .header import FIXED, MAX_HEADER, ORDERS, pack_versions, spec_and_order, unpack_versions
from .names import encode_names

VERSION = 3
INDEX_FIXED = struct.Struct("<32sHHBHIBHB32sIB")   # the fields of ShardedHeader up to the version count
ENTRY = struct.Struct("<IQ32s")                     # images, bytes, SHA-256 of the shard
MAX_SHARDS = 1 << 20
#: The smallest version 2 archive: prefix, a header without versions, empty names, an empty payload, digest.
MIN_SHARD_BYTES = PREFIX.size + FIXED.size + 4 + 8 + DIGEST


@dataclass(frozen=True)
class ShardedHeader:
    model_hash: str
    spec: DataSpec
    n: int                   # images in all shards
    order: str               # every shard's order mode
    input_levels: int
    bucket_bits: int
    pixels_sha256: str       # codec.pixel_digest of every image (archive order) and the names
    shards: int
    versions: dict = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        s = self.spec
        return INDEX_FIXED.pack(bytes.fromhex(self.model_hash), s.height, s.width, s.channels, s.levels, self.n,
                                ORDERS.index(self.order), self.input_levels, self.bucket_bits,
                                bytes.fromhex(self.pixels_sha256), self.shards, len(self.versions)) \
            + pack_versions(self.versions)

    def to_dict(self) -> dict:
        return {"model_hash": self.model_hash, "spec": self.spec.to_dict(), "n": self.n, "order": self.order,
                "input_levels": self.input_levels, "bucket_bits": self.bucket_bits,
                "pixels_sha256": self.pixels_sha256, "shards": self.shards, "versions": dict(self.versions)}

    @classmethod
    def from_bytes(cls, raw: bytes, where: str) -> "ShardedHeader":
        if len(raw) < INDEX_FIXED.size:
            raise AcnError(f"{where}: archive header is truncated ({len(raw)} bytes, at least {INDEX_FIXED.size})")
        (model_hash, height, width, channels, levels, n, order, input_levels, bucket_bits, pixels, shards,
         count) = INDEX_FIXED.unpack_from(raw, 0)
        spec, order = spec_and_order(height, width, channels, levels, order, where)
        if not 2 <= shards <= min(n, MAX_SHARDS):
            raise AcnError(f"{where}: archive header claims {n} images in {shards} shards (shards must be "
                           f"2..min(n, {MAX_SHARDS:,}))")
        if input_levels not in (levels, 256) or not 1 <= bucket_bits <= 16:
            raise AcnError(f"{where}: archive coding settings are invalid (input levels {input_levels}, "
                           f"bucket bits {bucket_bits})")
        versions = unpack_versions(raw, INDEX_FIXED.size, count, where)
        return cls(model_hash.hex(), spec, n, order, input_levels, bucket_bits, pixels.hex(), shards,
                   versions)


@dataclass
class ShardEntry:
    images: int
    start: int       # offset of the shard's bytes in the archive
    size: int
    sha256: bytes


@dataclass
class ShardedArchive:
    header: ShardedHeader
    names: list[str] | None
    entries: list[ShardEntry]
    data: bytes | memoryview
    section_sizes: dict

    @property
    def kind(self) -> str:
        return "array" if self.names is None else "folder"

    def first_image(self, shard: int) -> int:
        """Archive position of the shard's first image."""
        return sum(e.images for e in self.entries[:shard])

    def shard_bytes(self, i: int) -> bytes:
        e = self.entries[i]
        return bytes(self.data[e.start:e.start + e.size])

    def shard(self, i: int, where: str) -> Archive:
        """Shard i as a version 2 archive, after checking it is the one the index names and that it agrees
        with the index header."""
        raw, e = self.shard_bytes(i), self.entries[i]
        if hashlib.sha256(raw).digest() != e.sha256:
            raise AcnError(f"{where}: shard {i} is damaged (its checksum does not match the index)")
        shard = parse_stream(raw, f"{where} (shard {i})")
        h, outer = shard.header, self.header
        if (h.model_hash, h.spec, h.order, h.input_levels, h.bucket_bits, h.n) != \
                (outer.model_hash, outer.spec, outer.order, outer.input_levels, outer.bucket_bits, e.images) \
                or shard.names is not None or h.versions:
            raise AcnError(f"{where}: shard {i} does not agree with the archive's index")
        return shard


def assemble(header: ShardedHeader, names: list[str] | None, shards: list[bytes],
             counts: list[int]) -> dict[str, bytes]:
    """The archive's sections (concatenated, they are the file) around the shards' bytes, each a version 2
    archive of counts[i] images."""
    head = header.to_bytes()
    names_raw = b"" if names is None else encode_names(names)
    parts = {"header": PREFIX.pack(MAGIC, VERSION, len(head)) + head,
             "names": struct.pack("<I", len(names_raw)) + names_raw}
    parts["index"] = struct.pack("<I", len(shards)) + b"".join(
        ENTRY.pack(c, len(s), hashlib.sha256(s).digest()) for c, s in zip(counts, shards))
    parts["checksum"] = hashlib.sha256(b"".join(parts.values())).digest()
    parts["shards"] = b"".join(shards)
    return parts


def parse(data: bytes | memoryview, where: str = "archive") -> ShardedArchive:
    """Read and check the index (header, names, table, digest) of a version 3 archive; the shards are checked
    when read (`ShardedArchive.shard`). Every length is checked before anything is allocated for it."""
    _, version, header_len = PREFIX.unpack_from(data, 0)
    assert version == VERSION
    pos = PREFIX.size
    if header_len > MAX_HEADER or pos + header_len > len(data):
        raise AcnError(f"{where}: archive header length {header_len} is invalid")
    header = ShardedHeader.from_bytes(bytes(data[pos:pos + header_len]), where)
    pos += header_len
    names_len = _read(data, pos, "<I", where, "names length")
    pos += 4
    if pos + names_len > len(data):
        raise AcnError(f"{where}: names section length {names_len} runs past the end of the archive")
    names_at, pos = pos, pos + names_len
    count = _read(data, pos, "<I", where, "shard count")
    pos += 4
    if count != header.shards:
        raise AcnError(f"{where}: archive index lists {count} shards but its header says {header.shards}")
    table_end = pos + count * ENTRY.size
    if table_end + DIGEST > len(data):
        raise AcnError(f"{where}: archive ends inside its shard index")
    if hashlib.sha256(bytes(data[:table_end])).digest() != bytes(data[table_end:table_end + DIGEST]):
        raise AcnError(f"{where}: archive is damaged or truncated (index checksum mismatch)")
    entries, start = [], table_end + DIGEST
    for i in range(count):
        images, size, digest = ENTRY.unpack_from(data, pos + i * ENTRY.size)
        if images < 1 or size < MIN_SHARD_BYTES:
            raise AcnError(f"{where}: shard {i} in the index is invalid ({images} images, {size} bytes)")
        entries.append(ShardEntry(images, start, size, digest))
        start += size
    if sum(e.images for e in entries) != header.n:
        raise AcnError(f"{where}: the shards hold {sum(e.images for e in entries)} images, the header says "
                       f"{header.n}")
    if start != len(data):
        raise AcnError(f"{where}: the shards' lengths do not match the archive size (damaged or truncated)")
    names = read_names(bytes(data[names_at:names_at + names_len]), header.n, where)
    sizes = {"header": PREFIX.size + header_len, "names": 4 + names_len, "index": 4 + count * ENTRY.size,
             "checksum": DIGEST, "shards": start - table_end - DIGEST}
    return ShardedArchive(header, names, entries, data, sizes)


def _read(data, pos: int, fmt: str, where: str, what: str) -> int:
    if pos + struct.calcsize(fmt) > len(data):
        raise AcnError(f"{where}: archive ends inside the {what}")
    return struct.unpack_from(fmt, data, pos)[0]


def split_evenly(n: int, shards: int) -> list[np.ndarray]:
    """Positions 0..n-1 cut into `shards` consecutive pieces whose sizes differ by at most one."""
    return np.array_split(np.arange(n, dtype=np.int64), shards)
