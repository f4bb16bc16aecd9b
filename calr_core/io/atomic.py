"""Atomic file writes: a temp file in the target's folder, fsync, then ``os.replace``.

A stage killed mid-write leaves the previous file (or none), never a half-written one.
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it into place atomically.

    A failed write (disk full, read-only folder) raises OSError naming ``path`` and leaves
    nothing behind: the previous file, if any, stays as it was. The temp file of a write that
    was killed (kill -9 skips every cleanup) is removed by the next write of ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):  # left by a killed write
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private (0600): give it a normal file's mode
    try:
        try:
            yield tmp
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise _cannot_write(path, exc) from None
        with contextlib.suppress(OSError):  # make the rename itself durable
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    finally:
        tmp.unlink(missing_ok=True)


def _cannot_write(path: Path, exc: OSError) -> OSError:
    free = shutil.disk_usage(path.parent if path.parent.exists() else ".").free
    hint = "the disk is full" if free < 16 << 20 else "check the folder's permissions and free space"
    return OSError(f"{path}: cannot write it ({exc.strerror or exc}); {hint}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


MARKER = ".calr-artifact"


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, marker: str) -> Iterator[Path]:
    """Yield an empty temp folder next to ``path``; on success it replaces ``path``.

    An existing ``path`` is replaced only if calr wrote it (it holds the marker file); a user's
    own non-empty folder is never deleted.
    """
    import shutil

    path = Path(path)
    if path.exists() and any(path.iterdir()) and not (path / MARKER).is_file():
        raise FileExistsError(f"{path}: folder exists and was not written by calr; "
                              f"choose another output folder or remove it yourself")
    path.parent.mkdir(parents=True, exist_ok=True)
    name = glob.escape(path.name)  # left by a killed run: ours, and the writer's own inside it
    for stale in [*path.parent.glob(f".{name}.*.tmp"), *path.parent.glob(f"..{name}.*.tmp.tmp-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        (tmp / MARKER).write_text(marker + "\n")
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
