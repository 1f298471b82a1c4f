"""The archive header (format version 2): fixed fields in binary, then the writer's library versions.

Everything an archive announces is bounded here, before anything is allocated for it, by limits that need
neither the model nor torch: a header is read and refused in milliseconds. What needs the model (its hash, its
data spec, its seed-word count) is compared later, by the codec. docs/FORMAT.md lists the fields and limits.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from .data import DataSpec
from .errors import AcnError

# Stored as the index into this tuple; never reorder, only append. `associative` implies
# coding.set_order.NEIGHBOURS (16) neighbours per latent: another K would be another order code.
ORDERS = ("tour", "original", "set", "associative")
CODING_THREADS = 1                # fixed so both sides run identical kernels; the only value accepted

FIXED = struct.Struct("<32sHHBHIIBHHBB32sB")   # the fields of Header up to the version count
MAX_CHAINS = 1024                 # a round decodes one datum of every chain in one batch
MIN_BITS_PER_IMAGE = 1            # n <= 32 x payload words; compress refuses data that would code smaller
MAX_SEED_WORDS = 4096
MAX_VERSIONS = 8
MAX_VERSION_TEXT = 64
MAX_HEADER = FIXED.size + MAX_VERSIONS * 2 * (1 + MAX_VERSION_TEXT)   # 1,127 bytes
_VERSION_TEXT = re.compile(r"[A-Za-z0-9._+-]{1,%d}" % MAX_VERSION_TEXT)   # printable: safe on a terminal


@dataclass(frozen=True)
class Header:
    model_hash: str          # hex SHA-256 content hash of the model file
    spec: DataSpec           # the model's data spec
    n: int                   # images
    chains: int              # B; the chain lengths are coding.order.chain_layout(n, B) on both sides
    order: str               # one of ORDERS
    input_levels: int        # levels of the input before it was fitted to the model's grid
    seed_words: int          # initial words under the stack; exactly these remain after decoding
    bucket_bits: int
    pixels_sha256: str       # hex SHA-256 of the decoded pixels and the names (codec.pixel_digest)
    versions: dict = field(default_factory=dict)   # library -> version that wrote the archive
    coding_threads: int = CODING_THREADS

    def to_bytes(self) -> bytes:
        """The header section as stored. Does not validate: a test may write what no reader accepts."""
        s = self.spec
        out = FIXED.pack(bytes.fromhex(self.model_hash), s.height, s.width, s.channels, s.levels, self.n,
                         self.chains, ORDERS.index(self.order), self.input_levels, self.seed_words,
                         self.coding_threads, self.bucket_bits, bytes.fromhex(self.pixels_sha256),
                         len(self.versions))
        return out + pack_versions(self.versions)

    def to_dict(self) -> dict:
        """For `acncodec info` and reports; every value is a number or a checked string."""
        return {"model_hash": self.model_hash, "spec": self.spec.to_dict(), "n": self.n, "chains": self.chains,
                "order": self.order, "input_levels": self.input_levels, "seed_words": self.seed_words,
                "coding_threads": self.coding_threads, "bucket_bits": self.bucket_bits,
                "pixels_sha256": self.pixels_sha256, "versions": dict(self.versions)}

    @classmethod
    def from_bytes(cls, raw: bytes, where: str) -> "Header":
        """Parse and check every field against the limits that need no other section."""
        if len(raw) < FIXED.size:
            raise AcnError(f"{where}: archive header is truncated ({len(raw)} bytes, at least {FIXED.size})")
        (model_hash, height, width, channels, levels, n, chains, order, input_levels, seed_words, threads,
         bucket_bits, pixels, count) = FIXED.unpack_from(raw, 0)
        spec, order = spec_and_order(height, width, channels, levels, order, where)
        if threads != CODING_THREADS:
            raise AcnError(f"{where}: archive asks for {threads} coding threads; this acncodec codes with "
                           f"{CODING_THREADS}")
        if n < 1 or not 1 <= chains <= min(n, MAX_CHAINS):
            raise AcnError(f"{where}: archive header claims {n} images in {chains} chains (chains must be "
                           f"1..min(n, {MAX_CHAINS}))")
        if input_levels not in (levels, 256) or not 1 <= bucket_bits <= 16 or not 1 <= seed_words <= MAX_SEED_WORDS:
            raise AcnError(f"{where}: archive coding settings are invalid (input levels {input_levels}, bucket "
                           f"bits {bucket_bits}, seed words {seed_words})")
        versions = unpack_versions(raw, FIXED.size, count, where)
        return cls(model_hash.hex(), spec, n, chains, order, input_levels, seed_words, bucket_bits,
                   pixels.hex(), versions, threads)

    def check_payload(self, words: int, where: str) -> None:
        """The claimed image count against what the payload can hold (at least one bit per image)."""
        if self.n > 32 * words // MIN_BITS_PER_IMAGE:
            raise AcnError(f"{where}: archive claims {self.n} images, more than its payload of {words} words "
                           f"can hold (at least {MIN_BITS_PER_IMAGE} bit per image)")


def spec_and_order(height: int, width: int, channels: int, levels: int, order: int,
                   where: str) -> tuple[DataSpec, str]:
    """The data spec and the order mode as a header stores them, checked (version 2 and 3 headers alike)."""
    try:
        spec = DataSpec(height, width, channels, levels)
    except ValueError:
        raise AcnError(f"{where}: archive header names an invalid data spec "
                       f"({height}x{width}x{channels}, {levels} levels)") from None
    if order >= len(ORDERS):
        raise AcnError(f"{where}: archive header names order mode {order}, which this acncodec does not know")
    return spec, ORDERS[order]


def pack_versions(versions: dict) -> bytes:
    """Library name and version texts, each a length byte and ASCII, in name order."""
    out = b""
    for name, version in sorted(versions.items()):
        for text in (name, version):
            raw = text.encode()
            out += struct.pack("<B", len(raw)) + raw
    return out


def unpack_versions(raw: bytes, pos: int, count: int, where: str) -> dict:
    """The `count` versions packed from `pos` to the end of `raw`, checked (printable, bounded, nothing after)."""
    if count > MAX_VERSIONS:
        raise AcnError(f"{where}: archive header lists {count} library versions (at most {MAX_VERSIONS})")
    texts = []
    for _ in range(2 * count):
        if pos >= len(raw) or pos + 1 + raw[pos] > len(raw):
            raise AcnError(f"{where}: archive header ends inside its library versions")
        text = raw[pos + 1:pos + 1 + raw[pos]].decode("ascii", "replace")
        if not _VERSION_TEXT.fullmatch(text):
            raise AcnError(f"{where}: archive header holds an invalid library version text")
        texts.append(text)
        pos += 1 + raw[pos]
    if pos != len(raw):
        raise AcnError(f"{where}: archive header has {len(raw) - pos} unexpected bytes at its end")
    return dict(zip(texts[::2], texts[1::2]))
