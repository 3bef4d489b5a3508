"""Unpack MELD.Raw.tar.gz and the train/dev/test archives nested in it, refusing unsafe members.

The whole tree is unpacked into a hidden temporary folder and renamed into place at the end, so an
interrupted extraction never leaves a folder that looks complete; a rerun starts it over.
"""

from __future__ import annotations

import errno
import gzip
import shutil
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from meldctl.errors import DataError
from meldctl.io import check_free_space, disk_full

MemberProgress = Callable[[str], None]
"""Called with each member's name as it is extracted."""

_BROKEN = (EOFError, tarfile.TarError, zlib.error, gzip.BadGzipFile)


def unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why a member must not be extracted (it would land outside the target folder), or None when safe."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts:
        return f"member {member.name!r} would land outside the data folder"
    if member.issym() or member.islnk():
        # A symlink resolves from its own folder, a hard link from the archive's root.
        target = PurePosixPath(member.linkname)
        resolved = name.parent / target if member.issym() else target
        if target.is_absolute() or _escapes(resolved):
            return f"link {member.name!r} -> {member.linkname!r} points outside the data folder"
    if member.isdev():
        return f"member {member.name!r} is a device file"
    return None


def _escapes(path: PurePosixPath) -> bool:
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else 0 if part in ("", ".") else 1
        if depth < 0:
            return True
    return False


def _extract_one(archive: Path, target: Path, progress: MemberProgress | None) -> None:
    """Extract every member of `archive` into `target`, checking each before it is written."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                reason = unsafe_reason(member)
                if reason:
                    raise DataError(f"{archive}: {reason}; refusing to extract", hint="this archive is not MELD's")
                try:
                    tar.extract(member, target, filter="data")
                except tarfile.FilterError as exc:
                    raise DataError(
                        f"{archive}: {exc}; refusing to extract", hint="this archive is not MELD's"
                    ) from None
                if progress:
                    progress(member.name)
    except DataError:
        raise
    except _BROKEN as exc:
        raise DataError(
            f"{archive} is truncated or corrupt ({exc or type(exc).__name__})",
            hint="delete it and download it again",
        ) from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(target, f"the contents of {archive.name}", archive.stat().st_size) from None
        raise DataError(f"cannot extract {archive}: {exc}") from None


def _nested_archives(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.tar.gz") if not p.name.startswith("."))


def extract_meld(archive: Path, dest: Path, *, progress: MemberProgress | None = None) -> Path:
    """Extract `archive` and the `*.tar.gz` archives inside it into `dest`; return `dest`.

    Each nested archive is unpacked beside itself and then deleted (the clips are what is kept).
    Nothing is done when `dest` exists: the rename into place happens only once all of it succeeded.

    Raises:
        DataError: the archive is truncated, corrupt, or has a member that would escape `dest`.
    """
    dest = Path(dest)
    if dest.is_dir():
        return dest
    work = dest.with_name(f".{dest.name}.partial")
    if work.exists():
        shutil.rmtree(work)  # left by an interrupted run: start over
    # The clips are already compressed, so each archive unpacks to about its own size; at the peak the outer
    # archive's members and the largest inner archive's contents exist together (MELD: about 1.75x).
    check_free_space(dest.parent, int(Path(archive).stat().st_size * 1.8), f"the contents of {Path(archive).name}")
    work.mkdir(parents=True)
    try:
        _extract_one(Path(archive), work, progress)
        for nested in _nested_archives(work):
            _extract_one(nested, nested.parent, progress)
            nested.unlink()
        work.replace(dest)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return dest
