"""Finished shards of a sharded compress, kept in a folder so that a run that stops resumes where it was.

A million images take hours on a small machine; a run that is killed, runs out of time or loses its cluster
should not start again from nothing. With a checkpoint folder, each shard is saved there as soon as it has come
back and been checked, and the same command with the same folder codes only the shards that are not there.

The folder belongs to one plan: `plan.json` records what fixes every shard's bytes (the model, the data's
pixels, the order mode, the cut into shards, the chains, the estimate). Another plan is refused, so a resumed
run writes the archive an uninterrupted one would have. A saved shard is used only if it still holds exactly
the images the plan gives it (`sharding.check_shard`); one that does not, or cannot be read, is coded again.
After the archive has been written, the files of the folder that this module wrote are removed, and the folder
too if this module made it and nothing else is in it.
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
FORMAT = 1


def plan_record(model_hash: str, pixels_sha256: str, order: str, pieces: list[np.ndarray], chains: int | None,
                estimate: bool) -> dict:
    """What fixes every shard's bytes, as stored in the folder's plan.json."""
    cut = hashlib.sha256()
    for p in pieces:
        cut.update(np.asarray(p, dtype="<i8").tobytes())
        cut.update(b"|")
    return {"format": FORMAT, "model": model_hash, "pixels_sha256": pixels_sha256, "order": order,
            "shards": len(pieces), "pieces_sha256": cut.hexdigest(), "chains": chains, "estimate": bool(estimate)}


class ShardCheckpoint:
    """The checkpoint folder of one compress plan (see the module's docstring)."""

    def __init__(self, folder: str | Path, plan: dict):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise AcnError(f"{self.folder}: the checkpoint must be a folder")
        made = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.written: set[Path] = set()
        path = self.folder / PLAN
        if path.exists():
            try:
                stored = json.loads(path.read_text())
                stored_plan, made = stored["plan"], bool(stored["made_folder"])
            except (OSError, ValueError, TypeError, KeyError):
                raise AcnError(f"{path}: not a checkpoint plan acncodec wrote") from None
            if stored_plan != plan:
                raise AcnError(f"{self.folder}: holds the shards of another compress (other data, model, order, "
                               f"shards or chains); give another checkpoint folder") from None
        else:   # whether the first run made the folder decides whether the last one removes it
            atomic_write_bytes(path, json.dumps({"plan": plan, "made_folder": made}, indent=1).encode())
        self.created = made
        self.written.add(path)

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
