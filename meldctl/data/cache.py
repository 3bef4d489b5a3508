"""The feature cache: frozen encoders' outputs computed once per utterance and kept on disk.

Layout: `DATA_DIR/cache/{name}-{key}/{split}.npy` (one row per eligible utterance of the split) beside
`{split}.json` (the rows' identities and which rows are valid). `key` hashes exactly what changes the
features: the encoder's name and weights and the preprocessing parameters that feed it; a row's identity
adds the clip's path, size and modification time (or the text). While a cache is built, rows go into
`{split}.partial.npy` with a `{split}.done.npy` mask, flushed as it goes: an interrupted build keeps what it
computed, and the next run computes only the rest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from meldctl.data.manifest import ManifestRow
from meldctl.errors import MediaError, MeldError
from meldctl.io import write_text_atomic
from meldctl.model.config import PreprocessConfig

CACHE_VERSION = 1
FLUSH_EVERY = 8  # batches between flushes of a partial cache


class Interrupted(MeldError):
    """A stop was requested (Ctrl-C, SIGTERM) while the cache was being built; what was computed is kept."""


@dataclass(frozen=True)
class CacheSpec:
    """One cached array: its name in a batch, the key of what produced it, and one row's shape."""

    name: str  # "text_features" | "video_features" | "audio"
    key: str
    shape: tuple[int, ...]
    dtype: str


def digest(parts: dict[str, Any]) -> str:
    """A short, stable hash of JSON-able parameters."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def weights_digest(module: nn.Module) -> str:
    """Hash of a module's parameters and buffers: a different weights file means a different cache."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def text_spec(encoder: nn.Module, text_model: str, preprocess: PreprocessConfig, shape: tuple[int, ...]) -> CacheSpec:
    pool = "mean" if len(shape) == 1 else "mean-per-layer"
    key = digest(
        {
            "v": CACHE_VERSION,
            "kind": "text",
            "model": text_model,
            "weights": weights_digest(encoder),
            "max_tokens": preprocess.max_tokens,
            "pool": pool,
        }
    )
    return CacheSpec("text_features", key, tuple(shape), "float32")


def video_spec(backbone: nn.Module, preprocess: PreprocessConfig, dim: int) -> CacheSpec:
    params = {k: getattr(preprocess, k) for k in ("num_frames", "frame_size", "mean", "std")}
    key = digest({"v": CACHE_VERSION, "kind": "video", "weights": weights_digest(backbone), **params})
    return CacheSpec("video_features", key, (dim,), "float32")


def audio_spec(preprocess: PreprocessConfig) -> CacheSpec:
    params = {k: getattr(preprocess, k) for k in ("sample_rate", "n_mels", "n_fft", "hop_length", "audio_seconds")}
    key = digest({"v": CACHE_VERSION, "kind": "audio", **params})
    # Log-Mel values are a few dB apart; float16 halves the largest cache with no effect on training.
    return CacheSpec("audio", key, (1, preprocess.n_mels, preprocess.audio_frames), "float16")


def eligible(rows: Sequence[ManifestRow], name: str) -> list[ManifestRow]:
    """The rows a cache covers: every row for text, rows with a usable clip (and WAV) for video (audio)."""
    if name == "text_features":
        return list(rows)
    if name == "video_features":
        return [r for r in rows if r.status == "ok" and r.clip]
    return [r for r in rows if r.status == "ok" and r.audio]


def _identity(row: ManifestRow, name: str, data_dir: Path) -> str:
    if name == "text_features":
        return f"{row.key}|{hashlib.sha1(row.text.encode()).hexdigest()[:12]}"
    rel = row.clip if name == "video_features" else row.audio
    try:
        stat = (data_dir / rel).stat()
        return f"{row.key}|{rel}|{stat.st_size}|{stat.st_mtime_ns}"
    except OSError:
        return f"{row.key}|{rel}|missing"


@dataclass
class CachedSplit:
    """A complete cache for one split: the array and where each row lives in it."""

    array: np.ndarray
    position: dict[str, int]  # row key -> row of `array`
    valid: np.ndarray  # False where the clip could not be decoded

    def positions(self, rows: Sequence[ManifestRow]) -> list[int]:
        return [self.position[r.key] for r in rows]

    def invalid_keys(self) -> set[str]:
        return {k for k, i in self.position.items() if not self.valid[i]}


class SplitCache:
    """The files of one cached array for one split."""

    def __init__(self, data_dir: Path, spec: CacheSpec, split: str, rows: Sequence[ManifestRow]) -> None:
        self.spec, self.split = spec, split
        self.rows = eligible(rows, spec.name)
        self.folder = Path(data_dir) / "cache" / f"{spec.name}-{spec.key}"
        self.identities = [_identity(r, spec.name, Path(data_dir)) for r in self.rows]
        self.final = self.folder / f"{split}.npy"
        self.index = self.folder / f"{split}.json"
        self.partial = self.folder / f"{split}.partial.npy"
        self.done = self.folder / f"{split}.done.npy"

    def _index_matches(self) -> dict[str, Any] | None:
        if not self.index.is_file():
            return None
        try:
            index = json.loads(self.index.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return index if index.get("identities") == self.identities else None

    def load(self) -> CachedSplit | None:
        """The complete cache, memory-mapped, or None when it is absent or stale."""
        index = self._index_matches()
        if index is None or not index.get("complete") or not self.final.is_file():
            return None
        array = np.load(self.final, mmap_mode="r")
        if array.shape != (len(self.rows), *self.spec.shape):
            return None
        valid = np.asarray(index["valid"], dtype=bool)
        return CachedSplit(array, {r.key: i for i, r in enumerate(self.rows)}, valid)

    def open_partial(self) -> tuple[np.ndarray, np.ndarray]:
        """The arrays being filled, resumed when they belong to the same rows, else started afresh."""
        self.folder.mkdir(parents=True, exist_ok=True)
        shape = (len(self.rows), *self.spec.shape)
        if self._index_matches() is not None and self.partial.is_file() and self.done.is_file():
            values = np.load(self.partial, mmap_mode="r+")
            done = np.load(self.done, mmap_mode="r+")
            if values.shape == shape and done.shape == (len(self.rows), 2):
                return values, done
        write_text_atomic(self.index, json.dumps({"identities": self.identities, "complete": False}))
        values = np.lib.format.open_memmap(self.partial, mode="w+", dtype=self.spec.dtype, shape=shape)
        # Column 0: computed; column 1: valid (the clip decoded).
        done = np.lib.format.open_memmap(self.done, mode="w+", dtype=np.bool_, shape=(len(self.rows), 2))
        return values, done

    def finish(self, values: np.ndarray, done: np.ndarray) -> CachedSplit:
        values.flush()
        valid = done[:, 1].tolist()
        del values
        self.partial.replace(self.final)
        self.done.unlink(missing_ok=True)
        write_text_atomic(self.index, json.dumps({"identities": self.identities, "complete": True, "valid": valid}))
        loaded = self.load()
        assert loaded is not None
        return loaded


Batches = Iterator[tuple[list[int], np.ndarray, list[bool]]]
"""What a feature function yields: row numbers, their values, whether each is valid."""


@dataclass
class BuildContext:
    """What building needs besides the rows: the model's encoders, the tokenizer, devices and callbacks."""

    data_dir: Path
    model: nn.Module
    preprocess: PreprocessConfig
    tokenizer: Any | None
    device: torch.device
    workers: int
    progress: Callable[[str, int, int], None]  # (label, done, total)
    should_stop: Callable[[], bool]


def build_split(cache: SplitCache, ctx: BuildContext) -> CachedSplit:
    """Load a split's cache, computing whatever rows are missing first.

    Raises:
        Interrupted: a stop was requested; the computed rows are flushed and kept.
    """
    loaded = cache.load()
    if loaded is not None:
        return loaded
    values, done = cache.open_partial()
    pending = [i for i in range(len(cache.rows)) if not done[i, 0]]
    label = f"{cache.spec.name.split('_')[0]} features, {cache.split}"
    total, finished = len(cache.rows), len(cache.rows) - len(pending)
    ctx.progress(label, finished, total)
    producers = {"text_features": _text_batches, "video_features": _video_batches, "audio": _audio_batches}
    try:
        for step, (numbers, batch_values, batch_valid) in enumerate(producers[cache.spec.name](cache, pending, ctx)):
            values[numbers] = batch_values
            done[numbers, 1] = batch_valid
            done[numbers, 0] = True
            finished += len(numbers)
            ctx.progress(label, finished, total)
            if step % FLUSH_EVERY == FLUSH_EVERY - 1:
                values.flush()
                done.flush()
            if ctx.should_stop():
                raise Interrupted(f"stopped while caching {label}; {finished}/{total} rows kept for the next run")
    finally:
        values.flush()
        done.flush()
    return cache.finish(values, done)


@torch.no_grad()
def _text_batches(cache: SplitCache, pending: list[int], ctx: BuildContext, batch_size: int = 128) -> Batches:
    texts = [cache.rows[i].text for i in pending]
    lengths = [
        len(ids) for ids in ctx.tokenizer(texts, truncation=True, max_length=ctx.preprocess.max_tokens)["input_ids"]
    ]
    # Sorting by length makes each batch pad to a similar length: far fewer wasted tokens than in
    # manifest order, where one long utterance pads its whole batch.
    order = sorted(range(len(pending)), key=lengths.__getitem__)
    for start in range(0, len(order), batch_size):
        chunk = [pending[k] for k in order[start : start + batch_size]]
        tokens = ctx.tokenizer(
            [cache.rows[i].text for i in chunk],
            padding=True,
            truncation=True,
            max_length=ctx.preprocess.max_tokens,
            return_tensors="pt",
        ).to(ctx.device)
        feats = ctx.model.text.features(tokens["input_ids"], tokens["attention_mask"])  # [B, D]
        yield chunk, feats.float().cpu().numpy(), [True] * len(chunk)


class _MediaRows(torch.utils.data.Dataset):
    """Decodes one modality per row for cache building; a clip that fails is reported, not fatal."""

    def __init__(self, cache: SplitCache, pending: list[int], ctx: BuildContext) -> None:
        self.cache, self.pending, self.ctx = cache, pending, ctx

    def __len__(self) -> int:
        return len(self.pending)

    def __getitem__(self, k: int) -> tuple[int, torch.Tensor, bool]:
        from meldctl.data.dataset import load_media

        number = self.pending[k]
        row, spec, pre = self.cache.rows[number], self.cache.spec, self.ctx.preprocess
        modality = "video" if spec.name == "video_features" else "audio"
        try:
            return number, load_media(row, self.ctx.data_dir, (modality,), pre)[modality], True
        except MediaError:
            shape = (3, pre.num_frames, pre.frame_size, pre.frame_size) if modality == "video" else spec.shape
            return number, torch.zeros(shape), False


def _loader(cache: SplitCache, pending: list[int], ctx: BuildContext, batch_size: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        _MediaRows(cache, pending, ctx),
        batch_size=batch_size,
        num_workers=ctx.workers,
        collate_fn=_collate_media,
    )


def _collate_media(items: list[tuple[int, torch.Tensor, bool]]) -> tuple[list[int], torch.Tensor, list[bool]]:
    return [n for n, _, _ in items], torch.stack([x for _, x, _ in items]), [v for *_, v in items]


@torch.no_grad()
def _video_batches(cache: SplitCache, pending: list[int], ctx: BuildContext) -> Batches:
    for numbers, clips, valid in _loader(cache, pending, ctx, batch_size=8):
        feats = ctx.model.video.features(clips.to(ctx.device))  # [B, 512]
        yield numbers, feats.float().cpu().numpy(), valid


def _audio_batches(cache: SplitCache, pending: list[int], ctx: BuildContext) -> Batches:
    for numbers, mels, valid in _loader(cache, pending, ctx, batch_size=32):
        yield numbers, mels.numpy().astype(np.float16), valid  # [B, 1, n_mels, frames]
