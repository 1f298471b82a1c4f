"""Edit an archive's sections and re-seal it with a valid checksum, as an attacker would: the damage must then
be caught by the parser and the decoder, since the digest no longer can. Fields are written as given, even
where no reader accepts them."""

import dataclasses
import hashlib
import lzma
import struct

import numpy as np

from acncodec.archive import PREFIX
from acncodec.header import Header


@dataclasses.dataclass
class Parts:
    version: int
    header: bytes        # the header section's content (after the length)
    names: bytes         # the names section's content (after the length)
    payload: np.ndarray  # uint32 words


def split(blob: bytes) -> Parts:
    """The raw sections of a version-2 archive, without checking anything."""
    _, version, header_len = PREFIX.unpack_from(blob, 0)
    pos = PREFIX.size
    header = blob[pos:pos + header_len]
    pos += header_len
    (names_len,) = struct.unpack_from("<I", blob, pos)
    names = blob[pos + 4:pos + 4 + names_len]
    pos += 4 + names_len
    (words,) = struct.unpack_from("<Q", blob, pos)
    payload = np.frombuffer(blob, "<u4", words, pos + 8).astype(np.uint32)
    return Parts(version, header, names, payload)


def seal(parts: Parts) -> bytes:
    body = (PREFIX.pack(b"ACNC", parts.version, len(parts.header)) + parts.header
            + struct.pack("<I", len(parts.names)) + parts.names
            + struct.pack("<Q", len(parts.payload)) + np.asarray(parts.payload, "<u4").tobytes())
    return body + hashlib.sha256(body).digest()


def reseal(blob: bytes, *, header: dict | None = None, header_bytes: bytes | None = None,
           names: bytes | None = None, payload: np.ndarray | None = None, version: int | None = None) -> bytes:
    """The archive with some parts replaced: header fields (by name), or the raw header, names section or
    payload, then sealed again."""
    parts = split(blob)
    if header is not None:
        old = Header.from_bytes(parts.header, "forge")
        parts.header = dataclasses.replace(old, **header).to_bytes()
    if header_bytes is not None:
        parts.header = header_bytes
    if names is not None:
        parts.names = names
    if payload is not None:
        parts.payload = payload
    if version is not None:
        parts.version = version
    return seal(parts)


def names_section(text: bytes, order_words: np.ndarray | None = None) -> bytes:
    """A names section around any text (normally the JSON list of sorted names) and optional order words."""
    packed = lzma.compress(text, preset=1)
    out = struct.pack("<BI", 0 if order_words is None else 1, len(packed)) + packed
    if order_words is not None:
        out += struct.pack("<I", len(order_words)) + np.asarray(order_words, "<u4").tobytes()
    return out


def xz_bomb(size: int) -> bytes:
    """A small xz stream that inflates to `size` bytes."""
    c = lzma.LZMACompressor(format=lzma.FORMAT_XZ, preset=1)
    chunk = b"a" * (1 << 24)
    parts = [c.compress(chunk) for _ in range(size >> 24)]
    return b"".join(parts) + c.compress(b"a" * (size & ((1 << 24) - 1))) + c.flush()
