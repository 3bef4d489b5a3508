"""One definition per modality: what reaches the model for it, raw or cached, and how a batch carries it.

A `FeatureKind` says, for its modality:
- which manifest rows can have it (`covers`): every row with text; rows whose clip (video) or WAV (audio)
  prepare found usable;
- how one row is decoded (`decode`, the functions of `meldctl.media`, shared with predict), and how predict
  reads it from a user's clip and text (`from_clip`) or from media decoded elsewhere (`from_media`, a span of
  a long video), raising `NoStreamError` when the input lacks it (the model then uses its stand-in);
- what the feature cache stores for it (`spec`, `encode`): the frozen text encoder's or R3D-18's pooled
  output, or the log-Mel spectrogram (fixed preprocessing, cacheable although the audio CNN trains);
- how samples become a batch (`collate`): stacked or padded values, plus `{modality}_present` `[B]`, False
  where a row lacks the modality (the model then uses its learned stand-in).
- which media stream it comes from (`stream`: None for text) and whether a probed file lacks it (`absent_from`).
The dataset, the cache, eval, predict, serve and analyze all go through these, never through their own branches
on names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from meldctl.data.manifest import ManifestRow
from meldctl.errors import MediaError, MeldError, NoStreamError
from meldctl.model.config import PreprocessConfig
from meldctl.model.fusion import MeldModel

if TYPE_CHECKING:
    from meldctl.media.stream import VideoInfo

CACHE_VERSION = 2  # 2: Kinetics geometry (resize + centre crop), utterance-length log-Mel, tokenizer in the key


@dataclass(frozen=True)
class CacheSpec:
    """One cached array: the batch key of its values, the hash of what produced them, one row's shape."""

    name: str  # "text_features" | "video_features" | "audio"
    key: str
    shape: tuple[int, ...]
    dtype: str


def digest(parts: dict[str, Any]) -> str:
    """A short, stable hash of JSON-able parameters."""
    import json

    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def weights_digest(module: torch.nn.Module) -> str:
    """Hash of a module's parameters and buffers: a different weights file means a different cache."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class FeatureKind:
    """The interface; one subclass per modality.

    Attributes:
        modality: The modality's name, as in `ModelConfig.modalities`.
        cache_name: The batch key of cached values.
        stream: The media stream the modality is decoded from ("video", "audio"), as `stream_utterances`
            names it; None for one read from the utterance text.
        read_order: The order in which predict reads a clip's modalities: the text first (a cheap check), then
            the video, so that an unreadable clip is reported as a video clip.
        file_field: The `ManifestRow` field naming the file the modality is decoded from (a media modality).
    """

    modality: str
    cache_name: str
    stream: str | None = None
    read_order: int = 0
    file_field: str = ""

    @property
    def media(self) -> bool:
        """Whether the modality is decoded from media (a clip, a WAV) rather than read from the text."""
        return self.stream is not None

    def covers(self, row: ManifestRow) -> bool:
        """Whether the row can have this modality at all (before any decoding): a media modality needs its file
        extracted."""
        return row.status == "ok" and bool(self.source(row))

    def cacheable(self, model: MeldModel) -> bool:
        """Whether the model's input for this modality never changes during training (so it can be cached)."""
        raise NotImplementedError

    def spec(self, model: MeldModel, preprocess: PreprocessConfig, tokenizer_key: str | None) -> CacheSpec:
        """The cached array for this modality: its name, the hash of everything that produces its values, and
        one row's shape and dtype. A different encoder, weights file or preprocessing gives a different key."""
        raise NotImplementedError

    def source(self, row: ManifestRow) -> str:
        """The file (relative to the data folder) that the row's value is decoded from."""
        return getattr(row, self.file_field)

    def identity(self, row: ManifestRow, data_dir: Path) -> str:
        """What a cached value of this row depends on besides the spec: the row and its file's size and time,
        so that a replaced clip is encoded again."""
        rel = self.source(row)
        try:
            stat = (data_dir / rel).stat()
            return f"{row.key}|{rel}|{stat.st_size}|{stat.st_mtime_ns}"
        except OSError:
            return f"{row.key}|{rel}|missing"

    def decode(self, row: ManifestRow, data_dir: Path, preprocess: PreprocessConfig) -> dict[str, Any]:
        """The row's raw input (a tensor, or the text), keyed like a sample. Raises MediaError."""
        raise NotImplementedError

    def cached_sample(self, value: np.ndarray, length: int) -> dict[str, Any]:
        """A sample's entries for one cached value (`length`: the valid frames stored beside it, or 0)."""
        return {self.cache_name: torch.from_numpy(value.astype(np.float32))}

    def from_clip(self, clip: Path | None, text: str | None, preprocess: PreprocessConfig) -> dict[str, Any]:
        """Predict's input for one utterance given as a clip file (any container FFmpeg reads) and its text.

        Raises:
            NoStreamError: the clip lacks this modality's stream (answered without it, or refused with --strict).
            MeldError: the input cannot be used at all (an unreadable clip, empty text).
        """
        raise NotImplementedError

    def from_media(self, media: DecodedMedia, preprocess: PreprocessConfig) -> dict[str, Any]:
        """Predict's input for one utterance whose media was decoded elsewhere (a span of a long video).

        Raises:
            NoStreamError: the utterance lacks this modality (the message says why).
        """
        raise NotImplementedError

    def warnings(self, sample: dict[str, Any], ctx: CollateContext) -> list[str]:
        """What the user should know about a prepared sample's value of this modality (e.g. truncated text)."""
        return []

    def absent_from(self, info: VideoInfo) -> bool:
        """Whether a probed file lacks this modality's stream altogether (text is never in a file)."""
        return False

    def collate(self, samples: list[dict[str, Any]], ctx: CollateContext) -> dict[str, torch.Tensor]:
        """The batch entries of this modality: raw or cached values `[B, ...]` and `{modality}_present` `[B]`."""
        raise NotImplementedError

    def encode(self, rows: list[ManifestRow], numbers: list[int], ctx: Any) -> Iterator[Encoded]:
        """Cache values for `rows` (numbered `numbers` in the cache), in batches; a row that fails is invalid."""
        raise NotImplementedError

    def present(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """`{modality}_present` `[B]` (bool) from the samples' flags (a sample without a flag lacks it)."""
        return {f"{self.modality}_present": torch.tensor([bool(s.get(f"{self.modality}_present")) for s in samples])}


@dataclass(frozen=True)
class DecodedMedia:
    """One utterance's inputs decoded elsewhere (a span of a long video), for `FeatureKind.from_media`.

    Attributes:
        text: The utterance text, or None.
        frames: `num_frames` RGB frames as `FrameConverter(preprocess)` returns them, or None.
        waveform: float32 mono `[samples]` at `preprocess.sample_rate`, or None.
    """

    text: str | None
    frames: list[np.ndarray] | None
    waveform: torch.Tensor | None


@dataclass(frozen=True)
class CollateContext:
    """What collating needs besides the samples."""

    preprocess: PreprocessConfig
    tokenizer: Any | None


class TextKind(FeatureKind):
    modality, cache_name = "text", "text_features"

    def covers(self, row: ManifestRow) -> bool:
        return bool(row.text and row.text.strip())

    def cacheable(self, model: MeldModel) -> bool:
        return model.text is not None and model.text.frozen

    def identity(self, row: ManifestRow, data_dir: Path) -> str:
        return f"{row.key}|{hashlib.sha1(row.text.encode(), usedforsecurity=False).hexdigest()[:12]}"

    def spec(self, model: MeldModel, preprocess: PreprocessConfig, tokenizer_key: str | None) -> CacheSpec:
        shape = model.text.feature_shape
        key = digest(
            {
                "v": CACHE_VERSION,
                "kind": "text",
                "model": model.config.text_model,
                "weights": weights_digest(model.text.encoder),
                "tokenizer": tokenizer_key,
                "max_tokens": preprocess.max_tokens,
                "pool": "mean" if len(shape) == 1 else "mean-per-layer",
            }
        )
        return CacheSpec(self.cache_name, key, tuple(shape), "float32")

    def decode(self, row: ManifestRow, data_dir: Path, preprocess: PreprocessConfig) -> dict[str, Any]:
        return {"text": row.text}

    def from_clip(self, clip: Path | None, text: str | None, preprocess: PreprocessConfig) -> dict[str, Any]:
        if not text or not text.strip():
            raise MeldError("empty text: this checkpoint reads the utterance text", hint='pass --text "..."')
        return {"text": text}

    def from_media(self, media: DecodedMedia, preprocess: PreprocessConfig) -> dict[str, Any]:
        if not media.text or not media.text.strip():
            raise NoStreamError("no text")
        return {"text": media.text}

    def warnings(self, sample: dict[str, Any], ctx: CollateContext) -> list[str]:
        from meldctl.model.text import token_count

        count, limit = token_count(ctx.tokenizer, sample["text"]), ctx.preprocess.max_tokens
        return [f"text truncated to the model's {limit} tokens (it has {count})"] if count > limit else []

    def collate(self, samples: list[dict[str, Any]], ctx: CollateContext) -> dict[str, torch.Tensor]:
        if any(self.cache_name in s for s in samples):
            return {**stack_present(samples, self.cache_name), **self.present(samples)}
        from meldctl.model.text import tokenize

        texts = [s.get("text") or "" for s in samples]
        return {**tokenize(ctx.tokenizer, texts, ctx.preprocess.max_tokens), **self.present(samples)}

    @torch.no_grad()
    def encode(self, rows: list[ManifestRow], numbers: list[int], ctx: Any, batch_size: int = 128) -> Iterator[Encoded]:
        from meldctl.model.text import token_lengths, tokenize

        limit = ctx.preprocess.max_tokens
        lengths = token_lengths(ctx.tokenizer, [r.text for r in rows], limit)
        # Sorting by length makes each batch pad to a similar length: far fewer wasted tokens than in manifest
        # order, where one long utterance pads its whole batch.
        order = sorted(range(len(rows)), key=lengths.__getitem__)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            tokens = tokenize(ctx.tokenizer, [rows[k].text for k in chunk], limit)
            feats = ctx.model.text.features(tokens["input_ids"].to(ctx.device), tokens["attention_mask"].to(ctx.device))
            yield [numbers[k] for k in chunk], feats.float().cpu().numpy(), [True] * len(chunk), [0] * len(chunk)


class VideoKind(FeatureKind):
    modality, cache_name, stream, read_order, file_field = "video", "video_features", "video", 1, "clip"

    def cacheable(self, model: MeldModel) -> bool:
        return model.video is not None and model.video.frozen

    def spec(self, model: MeldModel, preprocess: PreprocessConfig, tokenizer_key: str | None) -> CacheSpec:
        params = {k: getattr(preprocess, k) for k in ("num_frames", "resize_size", "crop_size", "mean", "std")}
        key = digest({"v": CACHE_VERSION, "kind": "video", "weights": weights_digest(model.video.backbone), **params})
        return CacheSpec(self.cache_name, key, (model.video.feature_dim,), "float32")

    def decode(self, row: ManifestRow, data_dir: Path, preprocess: PreprocessConfig) -> dict[str, Any]:
        from meldctl.media.video import read_video

        return {"video": read_video(data_dir / row.clip, preprocess, threads=1)}  # [C, T, H, W]

    def from_clip(self, clip: Path | None, text: str | None, preprocess: PreprocessConfig) -> dict[str, Any]:
        from meldctl.media.video import read_video

        return {"video": read_video(clip, preprocess)}  # [C, T, H, W]

    def from_media(self, media: DecodedMedia, preprocess: PreprocessConfig) -> dict[str, Any]:
        from meldctl.media.video import clip_tensor

        if not media.frames:
            raise NoStreamError("no video frames")
        return {"video": clip_tensor(media.frames, preprocess)}  # [C, T, H, W]

    def absent_from(self, info: VideoInfo) -> bool:
        return not info.has_video

    def collate(self, samples: list[dict[str, Any]], ctx: CollateContext) -> dict[str, torch.Tensor]:
        return {**stack_present(samples, self.cache_name), **stack_present(samples, "video"), **self.present(samples)}

    @torch.no_grad()
    def encode(self, rows: list[ManifestRow], numbers: list[int], ctx: Any) -> Iterator[Encoded]:
        for batch_numbers, decoded, valid in _decoded(self, rows, numbers, ctx, batch_size=8):
            clips = stack_present(decoded, "video").get("video")
            if clips is None:  # not one clip of the batch decoded
                yield (
                    batch_numbers,
                    np.zeros((len(decoded), ctx.model.video.feature_dim), np.float32),
                    valid,
                    [0] * len(valid),
                )
                continue
            feats = ctx.model.video.features(clips.to(ctx.device))  # [B, 512]
            yield batch_numbers, feats.float().cpu().numpy(), valid, [0] * len(valid)


class AudioKind(FeatureKind):
    modality, cache_name, stream, read_order, file_field = "audio", "audio", "audio", 2, "audio"

    def cacheable(self, model: MeldModel) -> bool:
        return model.audio is not None

    def spec(self, model: MeldModel, preprocess: PreprocessConfig, tokenizer_key: str | None) -> CacheSpec:
        params = {k: getattr(preprocess, k) for k in ("sample_rate", "n_mels", "n_fft", "hop_length", "audio_seconds")}
        key = digest({"v": CACHE_VERSION, "kind": "audio", **params})
        # Log-Mel values are a few dB apart; float16 halves the largest cache with no effect on training.
        return CacheSpec(self.cache_name, key, (1, preprocess.n_mels, preprocess.audio_frames), "float16")

    def decode(self, row: ManifestRow, data_dir: Path, preprocess: PreprocessConfig) -> dict[str, Any]:
        from meldctl.media.audio import read_wav
        from meldctl.media.features import log_mel_features

        waveform = read_wav(data_dir / row.audio, preprocess.sample_rate, max_seconds=preprocess.audio_seconds)
        mel = log_mel_features(waveform, preprocess)  # [1, n_mels, frames]
        return {"audio": mel, "audio_length": mel.shape[-1]}

    def cached_sample(self, value: np.ndarray, length: int) -> dict[str, Any]:
        return {**super().cached_sample(value, length), "audio_length": length}

    def from_clip(self, clip: Path | None, text: str | None, preprocess: PreprocessConfig) -> dict[str, Any]:
        from meldctl.media.audio import read_clip_audio

        waveform = read_clip_audio(clip, preprocess.sample_rate, max_seconds=preprocess.audio_seconds)
        return _spectrogram(waveform, preprocess)

    def from_media(self, media: DecodedMedia, preprocess: PreprocessConfig) -> dict[str, Any]:
        if media.waveform is None:
            raise NoStreamError("no audio")
        return _spectrogram(media.waveform, preprocess)

    def absent_from(self, info: VideoInfo) -> bool:
        return not info.has_audio

    def collate(self, samples: list[dict[str, Any]], ctx: CollateContext) -> dict[str, torch.Tensor]:
        from meldctl.media.features import pad_frames

        lengths = [int(s.get("audio_length") or 0) if s.get("audio_present") else 0 for s in samples]
        frames = padded_frames(max(lengths), ctx.preprocess.audio_frames)
        blank = torch.zeros(1, ctx.preprocess.n_mels, frames)
        mels = [pad_frames(s["audio"], frames) if n else blank for s, n in zip(samples, lengths, strict=True)]
        return {"audio": torch.stack(mels), "audio_length": torch.tensor(lengths), **self.present(samples)}

    def encode(self, rows: list[ManifestRow], numbers: list[int], ctx: Any) -> Iterator[Encoded]:
        from meldctl.media.features import pad_frames

        frames = ctx.preprocess.audio_frames
        for batch_numbers, decoded, valid in _decoded(self, rows, numbers, ctx, batch_size=32):
            blank = torch.zeros(1, ctx.preprocess.n_mels, frames)
            mels = [pad_frames(d["audio"], frames) if ok else blank for d, ok in zip(decoded, valid, strict=True)]
            lengths = [int(d["audio_length"]) if ok else 0 for d, ok in zip(decoded, valid, strict=True)]
            yield batch_numbers, torch.stack(mels).numpy().astype(np.float16), valid, lengths  # [B, 1, n_mels, frames]


def _spectrogram(waveform: torch.Tensor, preprocess: PreprocessConfig) -> dict[str, Any]:
    """Predict's audio input from a waveform; audio too short to analyse counts as no audio."""
    from meldctl.media.features import log_mel_features

    try:
        mel = log_mel_features(waveform, preprocess)  # [1, n_mels, frames]
    except MediaError as exc:
        raise NoStreamError(exc.message) from None
    return {"audio": mel, "audio_length": mel.shape[-1]}


AUDIO_PAD_MULTIPLE = 64
"""Batches of log-Mel frames are padded to a multiple of this (0.64 s), not to each batch's exact longest.

Padding never changes an embedding (the audio encoder masks it), but every distinct batch shape costs memory:
glibc's allocator and oneDNN keep blocks per size, and with the exact longest utterance (hundreds of shapes
an epoch) a training process on full MELD grew by 2 GB within one epoch. Measured on 200 steps of the audio
encoder: 2.3 GB anonymous memory with exact lengths, 0.9 GB with multiples of 64, as with one fixed shape.
"""


def padded_frames(longest: int, window: int) -> int:
    """Frames to pad a batch whose longest utterance has `longest` to: the next multiple, at most `window`."""
    return max(min(-(-longest // AUDIO_PAD_MULTIPLE) * AUDIO_PAD_MULTIPLE, window), 1)


Encoded = tuple[list[int], np.ndarray, list[bool], list[int]]
"""A batch of cache values: cache row numbers, values, whether each is valid, valid lengths (audio)."""


class _DecodeRows(torch.utils.data.Dataset):
    """Decodes one modality per row for cache building; a clip that fails is reported, not fatal."""

    def __init__(self, kind: FeatureKind, rows: list[ManifestRow], data_dir: Path, preprocess: PreprocessConfig):
        self.kind, self.rows, self.data_dir, self.preprocess = kind, rows, data_dir, preprocess

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> tuple[int, dict[str, Any], bool]:
        try:
            return k, self.kind.decode(self.rows[k], self.data_dir, self.preprocess), True
        except MediaError:
            return k, {}, False


def _decoded(
    kind: FeatureKind, rows: list[ManifestRow], numbers: list[int], ctx: Any, batch_size: int
) -> Iterator[tuple[list[int], list[dict[str, Any]], list[bool]]]:
    from meldctl.data.loading import worker_init

    loader = torch.utils.data.DataLoader(
        _DecodeRows(kind, rows, ctx.data_dir, ctx.preprocess),
        batch_size=batch_size,
        num_workers=ctx.workers,
        collate_fn=_as_list,
        worker_init_fn=worker_init,
        # Its own generator: building a cache must not draw from the global RNG, or a run that builds the
        # cache would train differently from one that finds it built.
        generator=torch.Generator().manual_seed(0),
    )
    for items in loader:
        yield [numbers[k] for k, _, _ in items], [d for _, d, _ in items], [ok for *_, ok in items]


def _as_list(items: list[Any]) -> list[Any]:
    return items


def stack_present(samples: list[dict[str, Any]], key: str) -> dict[str, torch.Tensor]:
    """`{key: [B, ...]}` with zeros for samples that lack the value; nothing when no sample has it."""
    found = next((s[key] for s in samples if s.get(key) is not None), None)
    if found is None:
        return {}
    blank = torch.zeros_like(found)
    return {key: torch.stack([s[key] if s.get(key) is not None else blank for s in samples])}


KINDS: dict[str, FeatureKind] = {kind.modality: kind for kind in (TextKind(), AudioKind(), VideoKind())}
"""The kind of each modality, in the canonical order."""


def kinds_for(modalities: Sequence[str]) -> list[FeatureKind]:
    """The kinds of a model's modalities, in its order."""
    return [KINDS[m] for m in modalities]
