"""Atomic output: write to a temporary sibling, then rename, so a failure leaves nothing half-written."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .errors import AcnError


def check_writable(path: str | Path, force: bool) -> Path:
    """Refuse to replace an existing output unless `force` is given."""
    path = Path(path)
    if path.exists() and not force:
        raise AcnError(f"{path} already exists (use --force to overwrite)")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); the finished file gets the mode any new file would get
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_path(path: str | Path, force: bool, write) -> Path:
    """Build an output (file or folder) at a temporary sibling with `write(tmp)`, then move it into place.

    An existing output is replaced only with `force`, and only once the new one is complete.
    """
    path = Path(path)
    check_writable(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.partial"
    backup = path.parent / f".{path.name}.{os.getpid()}.old"
    try:
        write(tmp)
        if path.exists():
            os.replace(path, backup)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, backup):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            elif leftover.exists():
                leftover.unlink()
    return path
