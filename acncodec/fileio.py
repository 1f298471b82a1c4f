"""Writing outputs: checked before the work, built aside, published without replacing anything.

Every output is written to a hidden temporary sibling and then published by a no-replace rename or link, so a
file or folder that appears at the output while a command runs is never clobbered, and two runs to the same
output cannot both succeed. `force` allows replacing files of the same name, nothing more: a folder output only
ever gains the files the command writes, and nothing else in it is deleted or touched. A failure (a full disk,
an interrupt) leaves nothing behind.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from .errors import AcnError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_can_write_in(folder: Path) -> None:
    """Fail now, not after the work, if files cannot be created where the output goes."""
    folder = _nearest_existing(Path(os.path.abspath(folder)))
    if not folder.is_dir():
        raise AcnError(f"{folder}: is not a folder, so nothing can be written under it")
    try:
        fd, probe = tempfile.mkstemp(prefix=".acncodec-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise AcnError(f"{folder}: cannot write there ({e.strerror or e})") from None


def check_writable(path: str | Path, force: bool) -> Path:
    """Before the work: a file output must not exist (unless `force`) and its folder must be writable."""
    path = Path(path)
    if path.is_dir():
        raise AcnError(f"{path}: is a folder; give a file name")
    if os.path.lexists(path) and not force:
        raise AcnError(f"{path} already exists (use --force to overwrite)")
    check_can_write_in(Path(os.path.abspath(path)).parent)
    return path


def check_folder_output(folder: str | Path, names: list[str], force: bool, keep: list[Path] = ()) -> Path:
    """Before the work: a folder output may exist; without `force` none of `names` may exist in it, and with
    `force` none of them may be a folder or one of `keep` (the archive being read)."""
    folder = Path(folder)
    if os.path.lexists(folder) and not folder.is_dir():
        raise AcnError(f"{folder}: exists and is not a folder")
    if folder.is_dir():
        for name in names:
            target = folder / name
            if not os.path.lexists(target):
                continue
            if not force:
                raise AcnError(f"{target} already exists (use --force to overwrite files of the same name)")
            if target.is_dir() and not target.is_symlink():
                raise AcnError(f"{target}: is a folder; will not replace it with a file")
            if any(same_file(target, k) for k in keep):
                raise AcnError(f"{target}: is the archive being read; will not overwrite it")
    check_can_write_in(folder)
    return folder


def same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def write_bytes(path: str | Path, data: bytes, force: bool = False, keep: list[Path] = ()) -> Path:
    """Write a file atomically; an existing one is replaced only with `force` (a symbolic link is replaced
    itself, its target is left alone), and never if it is one of `keep` (the archive being read)."""
    path = Path(path)
    if any(same_file(path, k) for k in keep):
        raise AcnError(f"{path}: is the archive being read; will not overwrite it")
    parent = Path(os.path.abspath(path)).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise AcnError(f"{path}: cannot write ({e.strerror or e})") from None
    try:
        # mkstemp makes the file private (0600); the finished file gets the mode any new file would get
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        publish(Path(tmp), path, force)
    except OSError as e:
        raise AcnError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file atomically, replacing what is there (for files a command owns: models, checkpoints)."""
    write_bytes(path, data, force=True)


def publish(tmp: Path, path: Path, replace: bool) -> None:
    """Move a finished file into place. Without `replace`, an existing `path` (even one that appeared a
    moment ago) makes this fail and is left as it was."""
    if replace:
        if path.is_dir() and not path.is_symlink():
            raise AcnError(f"{path}: is a folder; will not replace it with a file")
        os.replace(tmp, path)
        return
    try:
        rename_noreplace(tmp, path)
    except FileExistsError:
        raise AcnError(f"{path} already exists (it appeared while this command ran; use --force to "
                       f"overwrite)") from None


def write_folder(folder: str | Path, names: list[str], write: Callable[[Path], None], force: bool = False,
                 keep: list[Path] = ()) -> Path:
    """Create the files `names` in `folder` with `write(tmp)`, which writes them into a temporary folder.

    A new folder appears whole. Into an existing one the files are moved one by one; other files there are
    left alone, and files of the same name are replaced only with `force`. On failure nothing is left.
    """
    folder = Path(folder)
    check_folder_output(folder, names, force, keep)
    # the temporary folder sits where a rename into place stays on one file system: inside the output folder
    # when it exists (this also serves "."), else beside it; its hidden name cannot be an image's name
    base = folder if folder.is_dir() else Path(os.path.abspath(folder)).parent
    tmp = base / f".acncodec-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    created: list[Path] = []
    try:
        base.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()                     # not mkdtemp: its 0700 mode would survive a rename into place
        write(tmp)
        if not folder.is_dir():
            try:
                rename_noreplace(tmp, folder)
                return folder
            except FileExistsError:
                check_folder_output(folder, names, force, keep)   # appeared meanwhile: add files into it
        for name in names:
            new = not os.path.lexists(folder / name)
            publish(tmp / name, folder / name, force)
            if new:
                created.append(folder / name)
        created.clear()
    except OSError as e:
        raise AcnError(f"{folder}: cannot write ({e.strerror or e})") from None
    finally:
        for path in created:            # a failure part way: take back the files this call added
            path.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


# -- renaming without replacing ----------------------------------------------------------------------------

_RENAME_NOREPLACE = 1        # Linux renameat2 flag
_RENAME_EXCL = 0x4           # macOS renamex_np flag
_AT_FDCWD = -100


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def rename_noreplace(src: Path, dst: Path) -> None:
    """Atomically rename `src` (a file or a folder) to `dst`, raising FileExistsError if `dst` exists."""
    src_b, dst_b = os.fsencode(src), os.fsencode(dst)
    call = None
    if _LIBC is not None and sys.platform.startswith("linux") and hasattr(_LIBC, "renameat2"):
        call = lambda: _LIBC.renameat2(_AT_FDCWD, src_b, _AT_FDCWD, dst_b, _RENAME_NOREPLACE)   # noqa: E731
    elif _LIBC is not None and sys.platform == "darwin" and hasattr(_LIBC, "renamex_np"):
        call = lambda: _LIBC.renamex_np(src_b, dst_b, _RENAME_EXCL)   # noqa: E731
    if call is not None:
        if call() == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), str(dst))
    # No atomic no-replace rename here (an old kernel, or a file system without it): a hard link refuses an
    # existing name just as well, for a file; a folder is created exclusively and filled.
    if Path(src).is_dir():
        os.mkdir(dst)
        for entry in os.listdir(src):
            rename_noreplace(Path(src) / entry, Path(dst) / entry)
        os.rmdir(src)
    else:
        os.link(src, dst)
        os.unlink(src)
