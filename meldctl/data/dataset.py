"""Datasets over a split's manifest: raw (decode clips, read WAVs) or cached (precomputed features).

Both yield samples as dicts keyed by modality, so the model, the loop and eval never care which one fed them.
The functions that decode and transform media are those of `meldctl.media`, shared with predict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from meldctl.data.manifest import ManifestRow
from meldctl.labels import EMOTION_INDEX, SENTIMENT_INDEX
from meldctl.model.config import PreprocessConfig


@dataclass
class Selection:
    """The rows a modality set can use, and how many were left out and why."""

    rows: list[ManifestRow]
    skipped: dict[str, int] = field(default_factory=dict)


def select_rows(rows: Sequence[ManifestRow], modalities: Sequence[str]) -> Selection:
    """Keep the rows whose media the modalities need; text needs no clip at all.

    A row is skipped (and counted by its status) when audio or video is asked for and its clip is not `ok`.
    """
    needs_media = bool({"audio", "video"} & set(modalities))
    kept, skipped = [], Counter()
    for row in rows:
        if needs_media and row.status != "ok":
            skipped[row.status] += 1
        elif "audio" in modalities and not row.audio:
            skipped["no_audio"] += 1
        else:
            kept.append(row)
    return Selection(kept, dict(skipped))


def label_counts(rows: Sequence[ManifestRow]) -> tuple[list[int], list[int]]:
    """Emotion and sentiment counts in label order (for class weights and the majority baseline)."""
    emotion = Counter(EMOTION_INDEX[r.emotion] for r in rows)
    sentiment = Counter(SENTIMENT_INDEX[r.sentiment] for r in rows)
    return [emotion.get(i, 0) for i in range(len(EMOTION_INDEX))], [
        sentiment.get(i, 0) for i in range(len(SENTIMENT_INDEX))
    ]


def _labels(row: ManifestRow, index: int) -> dict[str, Any]:
    return {
        "index": index,
        "emotion": EMOTION_INDEX[row.emotion],
        "sentiment": SENTIMENT_INDEX[row.sentiment],
        "text": row.text,
    }


def load_media(row: ManifestRow, data_dir: Path, modalities: Sequence[str], preprocess: PreprocessConfig) -> dict:
    """Decode the clip-based inputs `modalities` asks for: `video` `[C, T, H, W]`, `audio` `[1, n_mels, frames]`."""
    from meldctl.media.audio import read_wav
    from meldctl.media.features import log_mel_features
    from meldctl.media.video import read_video

    out = {}
    if "video" in modalities:
        out["video"] = read_video(data_dir / row.clip, preprocess)  # [C, T, H, W]
    if "audio" in modalities:
        out["audio"] = log_mel_features(read_wav(data_dir / row.audio, preprocess.sample_rate), preprocess)
    return out


class UtteranceDataset(Dataset):
    """Samples of selected rows: cached features where a cache is given, decoded media otherwise.

    Args:
        rows: Selected manifest rows.
        data_dir: The folder manifest paths are relative to.
        preprocess: Frame count and size, audio parameters.
        raw: Clip-based modalities to decode on the fly (`video`, `audio`). Text always travels as a string
            that the collator tokenises unless `text_features` are cached.
        arrays: Cached arrays over a whole split (`text_features` [N, D], `video_features` [N, 512],
            `audio` [N, 1, n_mels, frames]), numpy arrays or memory maps.
        positions: For each cached array, each selected row's index in it.
    """

    def __init__(
        self,
        rows: Sequence[ManifestRow],
        data_dir: Path,
        preprocess: PreprocessConfig,
        raw: Sequence[str] = (),
        arrays: dict[str, np.ndarray] | None = None,
        positions: dict[str, Sequence[int]] | None = None,
    ) -> None:
        self.rows, self.data_dir, self.preprocess = list(rows), Path(data_dir), preprocess
        self.raw = tuple(m for m in raw if m in ("video", "audio"))
        self.arrays = arrays or {}
        self.positions = {k: np.asarray(v, dtype=np.int64) for k, v in (positions or {}).items()}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        samples = [_labels(self.rows[i], int(i)) for i in indices]
        for name, array in self.arrays.items():
            where = self.positions[name][np.asarray(indices)]
            order = np.argsort(where)  # sorted reads: memory maps then touch contiguous pages
            values = np.asarray(array[where[order]])
            for slot, k in enumerate(order):
                samples[k][name] = torch.from_numpy(values[slot].astype(np.float32))
        if self.raw:
            for sample, i in zip(samples, indices, strict=True):
                sample.update(load_media(self.rows[i], self.data_dir, self.raw, self.preprocess))
        return samples


class Collator:
    """Stacks samples into a batch and tokenises text (padding to the longest in the batch)."""

    def __init__(self, tokenizer: Any | None, max_tokens: int) -> None:
        self.tokenizer, self.max_tokens = tokenizer, max_tokens

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {
            "index": torch.tensor([s["index"] for s in samples]),
            "emotion": torch.tensor([s["emotion"] for s in samples]),
            "sentiment": torch.tensor([s["sentiment"] for s in samples]),
        }
        for name in ("video", "audio", "text_features", "video_features"):
            if name in samples[0]:
                batch[name] = torch.stack([s[name] for s in samples])
        if self.tokenizer is not None and "text_features" not in batch:
            tokens = self.tokenizer(
                [s["text"] for s in samples],
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            )
            batch["input_ids"], batch["attention_mask"] = tokens["input_ids"], tokens["attention_mask"]
        return batch
