"""Datasets over a split's manifest: every row, each modality raw (decoded on the fly) or cached.

A sample is a dict: the labels, then per modality of the model its value (cached features, or decoded media,
or the text) and `{modality}_present`. A row whose clip is missing, corrupt or mis-cut is not dropped: it is
scored on what it has (MELD test: all 2,610 rows, whatever the modalities), and the model's stand-in takes the
place of what it lacks. The per-modality logic lives in `meldctl.data.kinds`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from meldctl.data.cache import BuildContext, CachedSplit, Cooperation, SplitCache, build_split
from meldctl.data.dialogue import context_keys
from meldctl.data.kinds import CollateContext, FeatureKind, kinds_for
from meldctl.data.manifest import ManifestRow
from meldctl.errors import MediaError
from meldctl.labels import EMOTION_INDEX, SENTIMENT_INDEX
from meldctl.model.config import PreprocessConfig
from meldctl.model.fusion import MeldModel


def label_counts(rows: Sequence[ManifestRow]) -> tuple[list[int], list[int]]:
    """Emotion and sentiment counts in label order (for class weights and the majority baseline)."""
    emotion = Counter(EMOTION_INDEX[r.emotion] for r in rows)
    sentiment = Counter(SENTIMENT_INDEX[r.sentiment] for r in rows)
    return [emotion.get(i, 0) for i in range(len(EMOTION_INDEX))], [
        sentiment.get(i, 0) for i in range(len(SENTIMENT_INDEX))
    ]


class UtteranceDataset(Dataset):
    """Samples of every row of a split.

    Args:
        rows: The split's manifest rows.
        data_dir: The folder manifest paths are relative to.
        preprocess: Frame count and geometry, audio parameters, token limit.
        kinds: The model's modalities.
        cached: Complete caches by modality; the other modalities are decoded on the fly.
        ablate: Modalities to treat as missing in every row (evaluation-time ablation).
    """

    def __init__(
        self,
        rows: Sequence[ManifestRow],
        data_dir: Path,
        preprocess: PreprocessConfig,
        kinds: Sequence[FeatureKind],
        cached: dict[str, CachedSplit] | None = None,
        ablate: Sequence[str] = (),
    ) -> None:
        self.rows, self.data_dir, self.preprocess = list(rows), Path(data_dir), preprocess
        self.kinds, self.ablate = list(kinds), set(ablate)
        self.cached = dict(cached or {})
        self._lookup = {m: c.lookup(self.rows) for m, c in self.cached.items()}  # (positions, valid) per row
        self._covers = {k.modality: np.array([k.covers(r) for r in self.rows], dtype=bool) for k in self.kinds}

    @property
    def raw(self) -> list[str]:
        """Modalities decoded on the fly (DataLoader workers pay off only for these)."""
        return [k.modality for k in self.kinds if k.modality not in self.cached and k.media]

    def available(self, modality: str) -> np.ndarray:
        """`[N]` bool: rows that have `modality` as far as is known before decoding (coverage, cache validity)."""
        if modality in self.ablate:
            return np.zeros(len(self.rows), dtype=bool)
        if modality in self._lookup:
            return self._lookup[modality][1].copy()
        return self._covers[modality].copy()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        samples = [_labels(self.rows[i], int(i)) for i in indices]
        for kind in self.kinds:
            if kind.modality in self.ablate:
                for sample in samples:
                    sample[f"{kind.modality}_present"] = False
            elif kind.modality in self.cached:
                self._read_cached(kind, samples, indices)
            else:
                self._decode(kind, samples, indices)
        return samples

    def _read_cached(self, kind: FeatureKind, samples: list[dict[str, Any]], indices: Sequence[int]) -> None:
        cache = self.cached[kind.modality]
        positions, valid = self._lookup[kind.modality]
        where, ok = positions[np.asarray(indices)], valid[np.asarray(indices)]
        order = np.argsort(where)  # sorted reads: memory maps then touch contiguous pages
        kept = order[ok[order]]
        values = np.asarray(cache.array[where[kept]])
        for slot, k in enumerate(kept):
            samples[k].update(kind.cached_sample(values[slot], int(cache.lengths[where[k]])))
        for k, sample in enumerate(samples):
            sample[f"{kind.modality}_present"] = bool(ok[k])

    def _decode(self, kind: FeatureKind, samples: list[dict[str, Any]], indices: Sequence[int]) -> None:
        covers = self._covers[kind.modality]
        for sample, i in zip(samples, indices, strict=True):
            present = bool(covers[i])
            if present:
                try:
                    sample.update(kind.decode(self.rows[i], self.data_dir, self.preprocess))
                except MediaError:  # a clip that prepare found fine but does not decode now: missing, not fatal
                    present = False
            sample[f"{kind.modality}_present"] = present


def _labels(row: ManifestRow, index: int) -> dict[str, Any]:
    return {
        "index": index,
        "emotion": EMOTION_INDEX[row.emotion],
        "sentiment": SENTIMENT_INDEX[row.sentiment],
        "text": row.text,
        # Where the utterance stands in its conversation (read by a model with dialogue context).
        "dialogue": row.dialogue_id,
        "position": row.utterance_id,
        "speaker": row.speaker,
    }


class Collator:
    """Stacks samples into a model batch: labels, then each modality as its `FeatureKind` collates it.

    With `context`, also the keys that place each row in its dialogue (`meldctl.data.dialogue.context_keys`);
    without, a model with dialogue context scores every row alone (the `--no-context` ablation).
    """

    def __init__(
        self,
        kinds: Sequence[FeatureKind],
        preprocess: PreprocessConfig,
        tokenizer: Any | None,
        *,
        context: bool = False,
    ) -> None:
        self.kinds, self.ctx, self.context = list(kinds), CollateContext(preprocess, tokenizer), context

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {
            key: torch.tensor([s[key] for s in samples])
            for key in ("index", "emotion", "sentiment")
            if key in samples[0]
        }
        for kind in self.kinds:
            batch.update(kind.collate(samples, self.ctx))
        if self.context:
            batch.update(context_keys(samples))
        return batch


@dataclass
class DataPlan:
    """What `build_datasets` needs to know about the run, besides the rows and the model."""

    data_dir: Path
    preprocess: PreprocessConfig
    tokenizer: Any | None
    tokenizer_key: str | None
    use_cache: bool
    device: torch.device
    workers: int
    progress: Callable[[str, int, int], None] = lambda label, done, total: None
    should_stop: Callable[[], bool] = lambda: False
    stop_signal: Callable[[], str | None] = lambda: None
    cooperation: Cooperation = Cooperation()
    ablate: Sequence[str] = ()


def build_datasets(
    rows: dict[str, list[ManifestRow]], model: MeldModel, plan: DataPlan
) -> tuple[dict[str, UtteranceDataset], list[str]]:
    """One dataset per split, with the feature cache built (or loaded) for every cacheable modality.

    Returns:
        The datasets and the names of the cached modalities.

    Raises:
        Interrupted: a stop was requested while building the cache (what was computed is kept).
    """
    kinds = kinds_for(model.config.modalities)
    cached_kinds = [k for k in kinds if plan.use_cache and k.cacheable(model) and k.modality not in plan.ablate]
    specs = {k.modality: k.spec(model, plan.preprocess, plan.tokenizer_key) for k in cached_kinds}
    ctx = BuildContext(
        plan.data_dir,
        model,
        plan.preprocess,
        plan.tokenizer,
        plan.device,
        plan.workers,
        plan.progress,
        plan.should_stop,
        plan.cooperation,
        plan.stop_signal,
    )
    datasets = {}
    with torch.no_grad():
        for split, split_rows in rows.items():
            cached = {
                k.modality: build_split(SplitCache(plan.data_dir, k, specs[k.modality], split, split_rows), ctx)
                for k in cached_kinds
            }
            datasets[split] = UtteranceDataset(
                split_rows, plan.data_dir, plan.preprocess, kinds, cached=cached, ablate=plan.ablate
            )
    return datasets, [k.modality for k in cached_kinds]


def missing_counts(dataset: UtteranceDataset) -> dict[str, int]:
    """Rows lacking each modality, as known before decoding (coverage and cache validity)."""
    return {k.modality: int((~dataset.available(k.modality)).sum()) for k in dataset.kinds}
