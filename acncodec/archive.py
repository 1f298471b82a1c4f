"""The archive container, format version 2 (documented in docs/FORMAT.md).

    magic "ACNC" | version u16 | header length u16 | header (header.py)
    | names length u32 | names (see names.py; empty for arrays)
    | payload length u64 (32-bit words) | payload (u32 little-endian words)
    | SHA-256 of everything before it

The trailing digest is verified before any field is parsed; then the header is checked on its own, and every
later length against the bytes present and against what the header's image count allows, before anything is
allocated or inflated. Parsing needs neither torch nor the model, so a bad archive is refused in milliseconds.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import numpy as np

from .errors import AcnError
from .header import MAX_HEADER, Header
from .names import decode_names, encode_names, names_text_bound, order_words_bound

MAGIC = b"ACNC"
VERSION = 2
SHARDED_VERSION = 3   # shards.py: several version 2 archives under one index
READERS = {1: "acncodec 0.1.0"}    # the release that reads each older format version
PREFIX = struct.Struct("<4sHH")
DIGEST = 32


@dataclass
class Archive:
    header: Header
    names: list[str] | None      # None for an array archive
    payload: np.ndarray          # uint32 words
    section_sizes: dict | None = None   # bytes per section, as read (set by `parse`)

    @property
    def kind(self) -> str:
        """folder: decompress writes PNG files with the names; array: a .npy file."""
        return "array" if self.names is None else "folder"

    def to_bytes(self) -> bytes:
        return b"".join(self.sections().values())

    def sections(self) -> dict[str, bytes]:
        """The archive's bytes split into its parts (for the size report); concatenated they are the file."""
        names = b"" if self.names is None else encode_names(self.names)
        return assemble(self.header.to_bytes(), names, self.payload)


def assemble(header: bytes, names: bytes, payload: np.ndarray) -> dict[str, bytes]:
    """The sections around already-encoded header and names bytes, sealed with the digest."""
    parts = {"header": PREFIX.pack(MAGIC, VERSION, len(header)) + header,
             "names": struct.pack("<I", len(names)) + names,
             "payload": struct.pack("<Q", len(payload)) + np.asarray(payload, dtype="<u4").tobytes()}
    parts["checksum"] = hashlib.sha256(b"".join(parts.values())).digest()
    return parts


def parse(data: bytes, where: str = "archive") -> Archive:
    if len(data) < PREFIX.size + DIGEST or data[:4] != MAGIC:
        raise AcnError(f"{where}: not an acncodec archive")
    _, version, header_len = PREFIX.unpack_from(data, 0)
    if version in READERS:
        raise AcnError(f"{where}: archive format version {version} is read by {READERS[version]}; this acncodec "
                       f"reads version {VERSION}")
    if version == SHARDED_VERSION:
        from .shards import parse as parse_sharded
        return parse_sharded(data, where)
    if version != VERSION:
        raise AcnError(f"{where}: archive format version {version} is not supported (this acncodec reads "
                       f"version {VERSION})")
    body, digest = data[:-DIGEST], data[-DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise AcnError(f"{where}: archive is damaged or truncated (checksum mismatch)")
    pos = PREFIX.size
    if header_len > MAX_HEADER or pos + header_len > len(body):
        raise AcnError(f"{where}: archive header length {header_len} is invalid")
    header = Header.from_bytes(body[pos:pos + header_len], where)
    pos += header_len
    names_len = _read(body, pos, "<I", where, "names length")
    pos += 4
    if pos + names_len > len(body):
        raise AcnError(f"{where}: names section length {names_len} runs past the end of the archive")
    names_at = pos
    pos += names_len
    words = _read(body, pos, "<Q", where, "payload length")
    pos += 8
    if pos + 4 * words != len(body):
        raise AcnError(f"{where}: payload length {words} words does not match the archive size")
    header.check_payload(words, where)
    names = read_names(body[names_at:names_at + names_len], header.n, where)
    payload = np.frombuffer(body, dtype="<u4", count=words, offset=pos).astype(np.uint32)
    sizes = {"header": PREFIX.size + header_len, "names": 4 + names_len, "payload": 8 + 4 * words,
             "checksum": DIGEST}
    return Archive(header, names, payload, sizes)


def read_names(raw: bytes, n: int, where: str) -> list[str] | None:
    """The names section's content for n images (None when empty), its size checked before it is inflated."""
    # xz adds a little framing to the names' text (3 bytes per 64 KiB when it cannot compress it); the order
    # takes at most log2(n!) bits
    text = names_text_bound(n)
    if len(raw) > 5 + text + text // 1024 + 1024 + 4 + 4 * order_words_bound(n):
        raise AcnError(f"{where}: names section of {len(raw)} bytes is larger than {n} names can take")
    return decode_names(raw, n, where) if raw else None


def describe(blob: bytes, where: str = "archive") -> dict:
    """What `acncodec info` shows: the header and section sizes, without decoding the payload."""
    archive = parse(blob, where)
    out = {"header": archive.header.to_dict(), "kind": archive.kind, "bytes": len(blob),
           "section_bytes": archive.section_sizes, "names": None if archive.names is None else len(archive.names)}
    if not isinstance(archive, Archive):   # sharded: each shard's images and bytes, in archive order
        out["shards"] = [{"images": e.images, "bytes": e.size} for e in archive.entries]
    return out


def _read(body: bytes, pos: int, fmt: str, where: str, what: str) -> int:
    if pos + struct.calcsize(fmt) > len(body):
        raise AcnError(f"{where}: archive ends inside the {what}")
    return struct.unpack_from(fmt, body, pos)[0]
