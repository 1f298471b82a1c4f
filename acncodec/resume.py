"""Finished shards of a sharded compress, kept in a folder so that a run that stops resumes where it was.

A million images take hours on a small machine; a run that is killed, runs out of time or loses its cluster
should not start again from nothing. With a checkpoint folder, each shard is saved there as soon as it has come
back and been checked, and the same command with the same folder codes only the shards that are not there.

The folder belongs to one compress: `plan.json` records what fixes every shard's bytes (the model, the data's
pixels, the order mode asked for, the number of shards, the chains, the estimate), and with `plan.npz` the
plan itself (the order mode chosen and each shard's images), so a resumed run does not plan again. Another
compress is refused, so a resumed run writes the archive an uninterrupted one would have. A saved shard is used
only if it still holds exactly the images the plan gives it (`sharding.check_shard`); one that does not, or
cannot be read, is coded again.

Once every shard is done and the archive assembled, the files of the folder that this module wrote are removed,
and the folder too if this module made it and nothing else is in it.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from .errors import AcnError
from .fileio import atomic_write_bytes

PLAN = "plan.json"
PIECES = "plan.npz"
FORMAT = 2


def plan_key(model_hash: str, pixels_sha256: str, order: str, shards: int, chains: int | None,
             estimate: bool) -> dict:
    """What a plan and every shard's bytes are made from (the order as asked: auto is resolved by the plan)."""
    return {"format": FORMAT, "model": model_hash, "pixels_sha256": pixels_sha256, "order": order,
            "shards": int(shards), "chains": chains, "estimate": bool(estimate)}


def pieces_digest(pieces: list[np.ndarray]) -> str:
    cut = hashlib.sha256()
    for p in pieces:
        cut.update(np.asarray(p, dtype="<i8").tobytes())
        cut.update(b"|")
    return cut.hexdigest()


class ShardCheckpoint:
    """The checkpoint folder of one compress (see the module's docstring). `plan` is the stored plan (the order
    mode, each shard's images, the plan's report) when the folder has one: a resumed run skips planning (for a
    million images, the codes of all of them and their tour)."""

    def __init__(self, folder: str | Path, key: dict, n: int):
        self.folder, self.key = Path(folder), key
        if self.folder.exists() and not self.folder.is_dir():
            raise AcnError(f"{self.folder}: the checkpoint must be a folder")
        self.created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.written: set[Path] = set()
        self.plan = None
        path = self.folder / PLAN
        if not path.exists():
            return
        try:
            stored = json.loads(path.read_text())
            stored_key, self.created = stored["key"], bool(stored["made_folder"])
        except (OSError, ValueError, TypeError, KeyError):
            raise AcnError(f"{path}: not a checkpoint plan acncodec wrote") from None
        if stored_key != key:
            raise AcnError(f"{self.folder}: holds the shards of another compress (other data, model, order, "
                           f"shards or chains); give another checkpoint folder")
        self.written.update({path, self.folder / PIECES})
        try:
            with np.load(self.folder / PIECES, allow_pickle=False) as f:
                flat, ends = f["positions"].astype(np.int64), f["ends"].astype(np.int64)
            pieces = np.split(flat, ends[:-1])
            ok = len(pieces) == key["shards"] and ends[-1] == n == len(flat) \
                and pieces_digest(pieces) == stored["pieces_sha256"]
        except Exception:
            ok = False
        if not ok:
            raise AcnError(f"{self.folder}: its plan is damaged; remove the folder to start again")
        self.plan = (stored["order"], pieces, stored["info"])

    def save_plan(self, order: str, pieces: list[np.ndarray], info: dict) -> None:
        buf = io.BytesIO()
        np.savez(buf, positions=np.concatenate(pieces).astype(np.int64),
                 ends=np.cumsum([len(p) for p in pieces]).astype(np.int64))
        atomic_write_bytes(self.folder / PIECES, buf.getvalue())
        self.written.add(self.folder / PIECES)
        # written last: a plan.json names a complete plan; whether this run made the folder decides whether the
        # run that finishes removes it
        record = {"key": self.key, "made_folder": self.created, "order": order, "info": info,
                  "pieces_sha256": pieces_digest(pieces)}
        atomic_write_bytes(self.folder / PLAN, json.dumps(record, indent=1).encode())
        self.written.add(self.folder / PLAN)
        self.plan = (order, pieces, info)

    def path(self, i: int) -> Path:
        return self.folder / f"shard-{i:06d}.npz"

    def load(self, i: int) -> dict | None:
        """Shard i as a worker returned it, or None when it is not there or cannot be read."""
        path = self.path(i)
        if not path.is_file():
            return None
        self.written.add(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                return {"bytes": f["bytes"].tobytes(), "sequence": f["sequence"].astype(np.int64),
                        "report": json.loads(str(f["report"]))}
        except Exception:       # a file cut short or damaged: the shard is coded again
            return None

    def save(self, i: int, result: dict) -> None:
        buf = io.BytesIO()
        np.savez(buf, bytes=np.frombuffer(result["bytes"], dtype=np.uint8),
                 sequence=np.asarray(result["sequence"], dtype=np.int64), report=json.dumps(result["report"]))
        path = self.path(i)
        atomic_write_bytes(path, buf.getvalue())
        self.written.add(path)

    def remove(self) -> None:
        """Remove what this module wrote (and the folder if it made it and it is now empty)."""
        for path in self.written:
            path.unlink(missing_ok=True)
        if self.created:
            try:
                self.folder.rmdir()
            except OSError:
                pass
