"""What a classical compressor makes of the same pixels: xz -9 on a raw dump of them.

Every compress report and every training run states it, so a model that loses to a general-purpose tool is
seen at once. The stream is the one bench/classical.py gives xz (a 16-byte shape header, then binary data
bit-packed and any other level count as one byte a level index); the benchmark runs xz -9e, which is about
twice as slow and on 520 32x32 colour patches 0.06% larger (3.9800 against 3.9776 bits/dim).
"""

from __future__ import annotations

import lzma
import struct
import time

import numpy as np

from .data import ImageSet

XZ = "xz -9"
SAMPLE_BYTES = 8 << 20   # larger datasets are measured on their first images, and the report says so


def raw_stream(images: np.ndarray, levels: int) -> bytes:
    header = struct.pack("<4I", *images.shape)
    body = np.packbits(images.reshape(-1)) if levels == 2 else np.ascontiguousarray(images, dtype=np.uint8)
    return header + body.tobytes()


def xz_baseline(images: ImageSet, max_bytes: int = SAMPLE_BYTES) -> dict:
    """xz -9 bits per dimension on these images (level indices), measured now; on the first images only when
    the dataset is larger than `max_bytes`."""
    per_image = images.images[0].size
    n = max(1, min(len(images), max_bytes // per_image))
    sample = images.images[:n]
    started = time.perf_counter()
    size = len(lzma.compress(raw_stream(sample, images.levels), format=lzma.FORMAT_XZ, preset=9))
    return {"tool": XZ, "images": n, "bytes": size, "bits_per_dim": 8 * size / sample.size,
            "seconds": round(time.perf_counter() - started, 2)}
