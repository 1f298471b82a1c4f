"""The archive container (documented in docs/FORMAT.md).

    magic "ACNC" | version u16 | header length u32 | header (UTF-8 JSON)
    | names length u32 | names (see names.py; empty for arrays)
    | payload length u64 (32-bit words) | payload (u32 little-endian words)
    | SHA-256 of everything before it

Every length is checked against the bytes actually present before anything is allocated or trusted, and the
trailing digest is verified before any field is parsed, so a damaged archive fails fast with a clear message.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass

import numpy as np

from .errors import AcnError
from .names import decode_names, encode_names

MAGIC = b"ACNC"
VERSION = 1
MAX_HEADER = 1 << 20
DIGEST = 32


@dataclass
class Archive:
    header: dict
    names: list[str] | None
    payload: np.ndarray          # uint32 words
    section_sizes: dict | None = None   # bytes per section, as read (set by `parse`)

    def to_bytes(self) -> bytes:
        return b"".join(self.sections().values())

    def sections(self) -> dict[str, bytes]:
        """The archive's bytes split into its parts (for the size report); concatenated they are the file."""
        header = json.dumps(self.header, sort_keys=True, separators=(",", ":")).encode()
        names = b"" if self.names is None else encode_names(self.names)
        parts = {"header": MAGIC + struct.pack("<HI", VERSION, len(header)) + header,
                 "names": struct.pack("<I", len(names)) + names,
                 "payload": struct.pack("<Q", len(self.payload)) + self.payload.astype("<u4").tobytes()}
        parts["checksum"] = hashlib.sha256(b"".join(parts.values())).digest()
        return parts


def parse(data: bytes, where: str = "archive") -> Archive:
    if len(data) < 4 + 6 + DIGEST or data[:4] != MAGIC:
        raise AcnError(f"{where}: not an acncodec archive")
    version, header_len = struct.unpack_from("<HI", data, 4)
    if version != VERSION:
        raise AcnError(f"{where}: archive format version {version} is not supported (this acncodec reads "
                       f"version {VERSION})")
    body, digest = data[:-DIGEST], data[-DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise AcnError(f"{where}: archive is damaged or truncated (checksum mismatch)")
    pos = 10
    if header_len > MAX_HEADER or pos + header_len > len(body):
        raise AcnError(f"{where}: archive header length {header_len} is invalid")
    try:
        header = json.loads(body[pos:pos + header_len].decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise AcnError(f"{where}: archive header is not valid JSON") from None
    if not isinstance(header, dict):
        raise AcnError(f"{where}: archive header is not a JSON object")
    pos += header_len
    names_len = _read(body, pos, "<I", where, "names length")
    pos += 4
    if pos + names_len > len(body):
        raise AcnError(f"{where}: names section length {names_len} runs past the end of the archive")
    names = decode_names(body[pos:pos + names_len], where) if names_len else None
    pos += names_len
    words = _read(body, pos, "<Q", where, "payload length")
    pos += 8
    if pos + 4 * words != len(body):
        raise AcnError(f"{where}: payload length {words} words does not match the archive size")
    payload = np.frombuffer(body, dtype="<u4", count=words, offset=pos).astype(np.uint32)
    sizes = {"header": 10 + header_len, "names": 4 + names_len, "payload": 8 + 4 * words, "checksum": DIGEST}
    return Archive(header, names, payload, sizes)


def _read(body: bytes, pos: int, fmt: str, where: str, what: str) -> int:
    if pos + struct.calcsize(fmt) > len(body):
        raise AcnError(f"{where}: archive ends inside the {what}")
    return struct.unpack_from(fmt, body, pos)[0]
