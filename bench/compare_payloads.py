"""Compare the payloads (the coded bits) of two archives of the same data, and print their header sizes.

    python bench/compare_payloads.py A.acnz B.acnz

Used to check that a change which should only touch the container (or only speed) leaves the coded bits
identical. Exit status 0 when the payloads are identical, 1 otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from acncodec.archive import parse  # noqa: E402


def payload_and_sizes(path: str):
    blob = Path(path).read_bytes()
    try:
        archive = parse(blob, path)
        return archive.payload.tobytes(), archive.section_sizes
    except Exception:   # an archive of an older format: its payload is the words before the checksum
        import struct
        import json
        header_len = struct.unpack_from("<I", blob, 6)[0]
        pos = 10 + header_len
        names_len = struct.unpack_from("<I", blob, pos)[0]
        pos += 4 + names_len
        words = struct.unpack_from("<Q", blob, pos)[0]
        json.loads(blob[10:10 + header_len])
        return blob[pos + 8:pos + 8 + 4 * words], {"header": 10 + header_len, "names": 4 + names_len,
                                                   "payload": 8 + 4 * words, "checksum": 32}


def main(a: str, b: str) -> int:
    pa, sa = payload_and_sizes(a)
    pb, sb = payload_and_sizes(b)
    print(f"{a}: sections {sa}")
    print(f"{b}: sections {sb}")
    same = pa == pb
    print(f"payloads {'identical' if same else 'DIFFER'} ({len(pa):,} and {len(pb):,} bytes)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
