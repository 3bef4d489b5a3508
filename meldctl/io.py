"""Atomic file writes: a file is either complete or absent, never half-written.

A temporary file is named `.{name}.{host}-{pid}.{random}.tmp` beside its target, so that a later command can
tell the leftovers of a killed writer (same host, process gone) from a write in progress, and remove them
(`remove_stale_temporaries`): a killed `meldctl train` must not leave hundreds of MB of `.tmp` behind.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from meldctl.errors import DiskFullError

_STALE_AFTER_S = 24 * 3600  # another host's temporaries: assume its writer is gone after a day


def _tag() -> str:
    return f"{socket.gethostname().replace('.', '_').replace('-', '_')}-{os.getpid()}"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds.

    The temporary name starts with a dot and ends in `.tmp`, so an interrupted write never leaves a
    file that looks complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_tag()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates files readable by their owner only; give the result the usual umask-based mode.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files that dead writers left in `folder` (not recursive); returns them."""
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    host = _tag().rsplit("-", 1)[0]
    for path in folder.glob(".*.tmp"):
        parts = path.name.rsplit(".", 3)  # [".name", "host-pid", "random", "tmp"]
        writer = parts[1] if len(parts) == 4 else ""
        writer_host, _, pid = writer.rpartition("-")
        if writer_host == host and pid.isdigit():
            stale = not _alive(int(pid))
        else:
            try:
                stale = time.time() - path.stat().st_mtime > _STALE_AFTER_S
            except OSError:
                continue
        if stale:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """Refuse, in one line, to start writing about `needed` bytes into a folder that has less free space.

    Raises:
        DiskFullError: naming the folder, what needs the space, and how much is needed and free.
    """
    import shutil

    folder = Path(folder)
    probe = folder if folder.exists() else next((p for p in folder.parents if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise disk_full(folder, what, needed, free)


def disk_full(folder: Path, what: str, needed: int | None = None, free: int | None = None) -> DiskFullError:
    """The one-line error for a full disk (found before writing, or when a write failed with ENOSPC)."""
    import shutil

    if free is None:
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = 0
    amount = f"needs about {_size(needed)}, " if needed else ""
    return DiskFullError(
        f"not enough disk space in {folder} for {what}: {amount}{_size(free)} free",
        hint="free some space (or choose another folder) and run the same command again: finished work is kept",
    )


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write bytes to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
