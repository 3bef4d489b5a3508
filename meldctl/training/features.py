"""Build the feature cache ahead of training (`meldctl cache build`), on one process or several (torchrun).

The cache is keyed by exactly what changes its values, so a later `meldctl train` (or `eval`) with the same
encoders and preprocessing simply finds it. Under torchrun the processes of a node split the rows, and each
node builds its own copy on its own disk (see `meldctl.data.cache`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meldctl.data.dataset import DataPlan, build_datasets
from meldctl.data.manifest import read_manifest
from meldctl.model.text import load_tokenizer, tokenizer_digest, tokenizer_to_files
from meldctl.reporting import Reporter
from meldctl.settings import DataSettings, ModelSettings, TrainSettings
from meldctl.training import distributed as dist
from meldctl.training.rng import seed_everything


@dataclass
class CacheSummary:
    """What a cache build found or made: per split, the cached modalities and rows with a valid value."""

    data_dir: Path
    splits: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # split -> modality -> counts
    seconds: float = 0.0
    processes: int = 1

    def to_json(self) -> dict[str, Any]:
        return {"data_dir": str(self.data_dir), "splits": self.splits, "seconds": round(self.seconds, 2),
                "processes": self.processes}  # fmt: skip


def build_feature_cache(
    data: DataSettings,
    model_settings: ModelSettings,
    train: TrainSettings,
    *,
    splits: list[str],
    reporter: Reporter | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    stop_signal: Callable[[], str | None] = lambda: None,
) -> CacheSummary:
    """Compute (or complete) the cache of every cacheable modality of the model the settings describe.

    Raises:
        Interrupted: a stop was requested (what was computed is kept).
    """
    from meldctl.model import build_model

    started = time.perf_counter()
    device = dist.resolve_device(train.device)
    info = dist.setup(device, train.dist_timeout_s)
    reporter = reporter if reporter is not None and info.is_main else Reporter()
    try:
        seed_everything(train.seed)  # as train does: encoders with random weights (`none`) get the same ones
        model = build_model(model_settings.to_model_config()).to(device)
        tokenizer = load_tokenizer(model_settings.text_model) if model.text is not None else None
        files = tokenizer_to_files(tokenizer) if tokenizer is not None else None
        plan = DataPlan(
            data.data_dir, model_settings.to_preprocess(), tokenizer, tokenizer_digest(files), True, device,
            train.workers, reporter.progress, should_stop, stop_signal, dist.cooperation(info, device),
        )  # fmt: skip
        rows = {split: read_manifest(data.data_dir, split) for split in splits}
        datasets, cached = build_datasets(rows, model, plan)
        summary = CacheSummary(data.data_dir, processes=info.world_size)
        for split, dataset in datasets.items():
            summary.splits[split] = {
                m: {"rows": len(dataset), "valid": int(dataset.available(m).sum())} for m in cached
            }
        summary.seconds = time.perf_counter() - started
        return summary
    finally:
        dist.teardown(info)


def list_caches(data_dir: Path) -> list[dict[str, Any]]:
    """Every cache folder under `data_dir/cache`: its kind, key, complete splits and size on disk."""
    found = []
    for folder in sorted((Path(data_dir) / "cache").glob("*-*")):
        if not folder.is_dir():
            continue
        name, _, key = folder.name.rpartition("-")
        complete = []
        for index in sorted(folder.glob("*.json")):
            try:
                if json.loads(index.read_text(encoding="utf-8")).get("complete"):
                    complete.append(index.stem)
            except (OSError, json.JSONDecodeError):
                continue
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        found.append({"kind": name, "key": key, "complete": complete, "bytes": size, "folder": str(folder)})
    return found
