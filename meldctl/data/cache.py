"""The feature cache: frozen encoders' outputs (and log-Mel spectrograms) computed once per utterance, on disk.

Layout: `DATA_DIR/cache/{name}-{key}/{split}.npy` (one row per covered utterance of the split) beside
`{split}.json` (the rows' identities, which are valid, their lengths). `key` hashes exactly what changes the
values (`FeatureKind.spec`); a row's identity adds the clip's path, size and modification time (or the text).

Building is resumable, shared and safe:
- rows go into `{split}.partial.npy` with a `{split}.rows.npy` table (computed, valid, length), flushed as it
  goes: an interrupted build keeps what it computed, and the next run computes only the rest;
- the partial files are allocated in full before anything is written (`posix_fallocate`), so a full disk is
  one clear error up front, never a SIGBUS in the middle of a memory-mapped write;
- one process at a time builds a given cache (an exclusive lock on `{split}.lock`); another train or eval on
  the same data folder waits for it and then reads the finished cache;
- the processes of one node (torchrun's local ranks) split the pending rows between them, so every GPU works;
  each node builds its own copy on its own disk, and a node that already has the cache just takes part in
  the collective steps (`Cooperation`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from meldctl.data.kinds import CacheSpec, FeatureKind
from meldctl.data.manifest import ManifestRow
from meldctl.errors import DataError, Interrupted
from meldctl.io import check_free_space, disk_full, remove_stale_temporaries, write_text_atomic
from meldctl.model.config import PreprocessConfig

FLUSH_EVERY = 8  # batches between flushes of a partial cache
_COMPUTED, _VALID, _LENGTH = 0, 1, 2  # columns of the rows table


@dataclass(frozen=True)
class Cooperation:
    """How the processes of one run share a cache build; a process alone by default.

    Attributes:
        local_rank: This process's rank among those sharing this node's disk.
        local_world: How many processes share this node's disk.
        barrier: Waits for every process of the run (all nodes).
        all_true: Logical AND of a flag over every process of the run.
        any_true: Logical OR of a flag over every process of the run.
    """

    local_rank: int = 0
    local_world: int = 1
    barrier: Callable[[], None] = lambda: None
    all_true: Callable[[bool], bool] = lambda flag: flag
    any_true: Callable[[bool], bool] = lambda flag: flag

    @property
    def leads(self) -> bool:
        """Whether this process writes the node's cache files."""
        return self.local_rank == 0


@dataclass
class BuildContext:
    """What building needs besides the rows: the model's encoders, the tokenizer, devices and callbacks."""

    data_dir: Path
    model: torch.nn.Module
    preprocess: PreprocessConfig
    tokenizer: Any | None
    device: torch.device
    workers: int
    progress: Callable[[str, int, int], None]  # (label, done, total)
    should_stop: Callable[[], bool]
    cooperation: Cooperation = field(default_factory=Cooperation)
    stop_signal: Callable[[], str | None] = lambda: None


@dataclass
class CachedSplit:
    """A complete cache for one split: the array and where each row lives in it."""

    array: np.ndarray
    position: dict[str, int]  # row key -> row of `array`
    valid: np.ndarray  # [N] bool, False where the clip could not be decoded
    lengths: np.ndarray  # [N] int, valid frames (audio) or 0

    def lookup(self, rows: Sequence[ManifestRow]) -> tuple[np.ndarray, np.ndarray]:
        """For each row, its position in `array` (-1 when not covered) and whether a valid value is there."""
        where = np.array([self.position.get(r.key, -1) for r in rows], dtype=np.int64)
        ok = np.zeros(len(rows), dtype=bool)
        ok[where >= 0] = self.valid[where[where >= 0]]
        return where, ok


class SplitCache:
    """The files of one cached array for one split."""

    def __init__(
        self, data_dir: Path, kind: FeatureKind, spec: CacheSpec, split: str, rows: Sequence[ManifestRow]
    ) -> None:
        self.kind, self.spec, self.split = kind, spec, split
        self.rows = [r for r in rows if kind.covers(r)]
        self.folder = Path(data_dir) / "cache" / f"{spec.name}-{spec.key}"
        self.identities = [kind.identity(r, Path(data_dir)) for r in self.rows]
        self.final = self.folder / f"{split}.npy"
        self.index = self.folder / f"{split}.json"
        self.partial = self.folder / f"{split}.partial.npy"
        self.table = self.folder / f"{split}.rows.npy"
        self.lock_path = self.folder / f"{split}.lock"
        self.what = f"the {kind.modality} feature cache of {split}"  # what error messages call it
        self.label = f"caching {kind.modality} features, {split}"  # what progress lines call filling it

    def _index(self) -> dict[str, Any] | None:
        if not self.index.is_file():
            return None
        try:
            index = json.loads(self.index.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return index if index.get("identities") == self.identities else None

    def load(self) -> CachedSplit | None:
        """The complete cache, memory-mapped, or None when it is absent or stale."""
        index = self._index()
        if index is None or not index.get("complete") or not self.final.is_file():
            return None
        try:
            array = np.load(self.final, mmap_mode="r")
        except (OSError, ValueError):
            return None
        if array.shape != (len(self.rows), *self.spec.shape):
            return None
        valid = np.asarray(index["valid"], dtype=bool)
        lengths = np.asarray(index.get("lengths") or [0] * len(self.rows), dtype=np.int64)
        return CachedSplit(array, {r.key: i for i, r in enumerate(self.rows)}, valid, lengths)

    def bytes_needed(self) -> int:
        row = int(np.prod(self.spec.shape)) * np.dtype(self.spec.dtype).itemsize
        return len(self.rows) * (row + 3 * 4) + (1 << 20)

    def open_partial(self, *, create: bool) -> tuple[np.ndarray, np.ndarray]:
        """The arrays being filled: resumed when they belong to the same rows, else (with `create`) new ones.

        Raises:
            DataError: not enough free space for the cache in its folder.
        """
        shape = (len(self.rows), *self.spec.shape)
        if self.partial.is_file() and self.table.is_file() and self._index() is not None:
            try:
                values = np.load(self.partial, mmap_mode="r+")
                table = np.load(self.table, mmap_mode="r+")
                if values.shape == shape and table.shape == (len(self.rows), 3):
                    return values, table
            except (OSError, ValueError):
                pass  # a damaged partial file: start again
        if not create:
            raise DataError(f"the partial cache {self.partial} vanished while it was being built")
        self.folder.mkdir(parents=True, exist_ok=True)
        check_free_space(self.folder, self.bytes_needed(), self.what)
        write_text_atomic(self.index, json.dumps({"identities": self.identities, "complete": False}))
        values = _allocated_memmap(self.partial, self.spec.dtype, shape, self.what)
        table = _allocated_memmap(self.table, "int32", (len(self.rows), 3), self.what)
        return values, table

    def finish(self, values: np.ndarray, table: np.ndarray) -> None:
        values.flush()
        index = {
            "identities": self.identities,
            "complete": True,
            "valid": table[:, _VALID].astype(bool).tolist(),
            "lengths": table[:, _LENGTH].tolist(),
        }
        del values
        self.partial.replace(self.final)
        self.table.unlink(missing_ok=True)
        write_text_atomic(self.index, json.dumps(index))

    @contextlib.contextmanager
    def locked(self, ctx: BuildContext) -> Iterator[None]:
        """Hold the build lock; another process (a second train or eval) holding it is waited for."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+b") as handle:
            waited = False
            while not _try_lock(handle):
                if not waited:
                    ctx.progress(f"waiting for another meldctl process: {self.label}", 0, 1)
                    waited = True
                if ctx.should_stop():
                    raise Interrupted(f"stopped while waiting for another process ({self.label})", ctx.stop_signal())
                time.sleep(0.5)
            try:
                remove_stale_temporaries(self.folder)  # left by a killed builder of this folder
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _try_lock(handle: Any) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _allocated_memmap(path: Path, dtype: str, shape: tuple[int, ...], what: str) -> np.ndarray:
    """A new `.npy` memory map whose blocks are all allocated now (no SIGBUS later on a full disk)."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    size = os.path.getsize(path)
    try:
        with open(path, "r+b") as handle:
            os.posix_fallocate(handle.fileno(), 0, size)
    except OSError as exc:
        del array
        path.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(path.parent, what, size) from None
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # filesystems without fallocate: write as we go
            raise
        array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    return array


def build_split(cache: SplitCache, ctx: BuildContext) -> CachedSplit:
    """Load a split's cache, computing whatever rows are missing first (cooperatively, see the module doc).

    Every process of the run must call this for the same caches in the same order.

    Raises:
        Interrupted: a stop was requested; the computed rows are flushed and kept.
    """
    coop = ctx.cooperation
    here = cache.load()
    if coop.all_true(here is not None):
        return here
    with cache.locked(ctx) if coop.leads and here is None else contextlib.nullcontext():
        # Under the lock: another process may have finished the cache while we waited for it.
        if coop.leads and cache.load() is None:
            cache.open_partial(create=True)
        coop.barrier()
        todo = cache.load() is None  # the same answer in every process of this node: the leader holds the lock
        stopped = _compute_share(cache, ctx) if todo else False
        if coop.any_true(stopped):
            raise Interrupted(f"stopped while {cache.label}; the rows computed are kept", ctx.stop_signal())
        coop.barrier()
        if todo and coop.leads:
            cache.finish(*cache.open_partial(create=False))
    coop.barrier()
    loaded = cache.load()
    if loaded is None:
        raise DataError(f"the cache in {cache.folder} could not be read back after {cache.label}")
    return loaded


def _compute_share(cache: SplitCache, ctx: BuildContext) -> bool:
    """Compute this process's share of the pending rows; True when a stop was requested."""
    coop = ctx.cooperation
    values, table = cache.open_partial(create=False)
    pending = [i for i in range(len(cache.rows)) if not table[i, _COMPUTED]]
    mine = pending[coop.local_rank :: coop.local_world]
    total, finished = len(cache.rows), len(cache.rows) - len(pending)
    ctx.progress(cache.label, finished, total)
    stopped = False
    try:
        batches = cache.kind.encode([cache.rows[n] for n in mine], mine, ctx)
        for step, (numbers, batch_values, valid, lengths) in enumerate(batches):
            values[numbers] = batch_values
            table[numbers, _VALID] = valid
            table[numbers, _LENGTH] = lengths
            table[numbers, _COMPUTED] = 1
            finished += len(numbers) * coop.local_world  # the other processes advance at about the same rate
            ctx.progress(cache.label, min(finished, total), total)
            if step % FLUSH_EVERY == FLUSH_EVERY - 1:
                values.flush()
                table.flush()
            if ctx.should_stop():
                stopped = True
                break
    finally:
        values.flush()
        table.flush()
    return stopped
