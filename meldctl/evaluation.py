"""Score a checkpoint on a split with the preprocessing it was trained with: MELD's metrics and figures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from meldctl.data.dataset import Collator, label_counts
from meldctl.data.manifest import read_manifest
from meldctl.errors import DataError
from meldctl.io import atomic_path, write_text_atomic
from meldctl.model.checkpoint import load_checkpoint
from meldctl.training import distributed
from meldctl.training.loop import predict
from meldctl.training.metrics import head_metrics, majority_baseline
from meldctl.training.trainer import Reporter, build_datasets


@dataclass
class EvalResult:
    report: dict[str, Any]
    out_dir: Path
    files: list[Path]


def evaluate_checkpoint(
    checkpoint: Path,
    data_dir: Path,
    split: str,
    *,
    out_dir: Path | None = None,
    device: str = "auto",
    workers: int = 2,
    use_cache: bool = True,
    reporter: Reporter | None = None,
) -> EvalResult:
    """Score `checkpoint` on `split` and write `report.json` and one confusion-matrix PNG per head.

    Args:
        checkpoint: A meldctl checkpoint (best.pt).
        data_dir: The prepared data folder holding the split's manifest.
        split: train, dev or test.
        out_dir: Where the report goes; default `eval/<split>/` beside the checkpoint.
        device: auto, cpu or cuda.
        workers: DataLoader workers for decoding clips.
        use_cache: Read (and complete) the feature cache when the checkpoint's frozen encoders match it.
        reporter: Progress callbacks.
    """
    torch_device = distributed.resolve_device(device)
    loaded = load_checkpoint(checkpoint, torch_device)
    model, labels = loaded.model, loaded.model.config
    rows = read_manifest(data_dir, split)
    datasets, skipped, _ = build_datasets(
        {split: rows},
        data_dir,
        model,
        loaded.preprocess,
        loaded.tokenizer,
        use_cache=use_cache,
        device=torch_device,
        workers=workers,
        info=distributed.DistInfo(),
        reporter=reporter or Reporter(),
        should_stop=lambda: False,
    )
    dataset = datasets[split]
    if len(dataset) == 0:
        raise DataError(
            f"no usable utterances in split {split!r} of {data_dir} for modalities "
            f"{','.join(labels.modalities)} (skipped: {skipped[split]})"
        )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=64,
        num_workers=workers if dataset.raw else 0,
        collate_fn=Collator(loaded.tokenizer, loaded.preprocess.max_tokens),
    )
    preds = predict(model, loader, torch_device, on_batch=lambda n: None)
    report = build_report(preds, labels.emotions, labels.sentiments, loaded.extra.get("train_counts"), dataset.rows)
    report.update(checkpoint=str(checkpoint), split=split, skipped=skipped[split])
    out_dir = out_dir or Path(checkpoint).parent / "eval" / split
    return EvalResult(report, out_dir, write_report(report, out_dir))


def build_report(
    preds: Any,
    emotions: tuple[str, ...],
    sentiments: tuple[str, ...],
    train_counts: dict[str, list[int]] | None,
    rows: list,
) -> dict[str, Any]:
    """The report's scores: both heads, and the majority-class baseline beside them."""
    report: dict[str, Any] = {"n": int(len(preds.emotion))}
    baseline = {}
    for head, names, gold, probs in (
        ("emotion", emotions, preds.emotion, preds.emotion_probs),
        ("sentiment", sentiments, preds.sentiment, preds.sentiment_probs),
    ):
        report[head] = head_metrics(gold.tolist(), probs.argmax(1).tolist(), names)
        counts = (train_counts or {}).get(head)
        if counts is None:  # an old checkpoint: fall back to the evaluated split's own majority
            counts = label_counts(rows)[0 if head == "emotion" else 1]
        baseline[head] = majority_baseline(gold.tolist(), counts, names)
    report["baseline"] = baseline
    return report


def write_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """`report.json` plus `confusion_emotion.png` and `confusion_sentiment.png`, each written atomically."""
    from meldctl.training.plots import confusion_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "report.json"]
    write_text_atomic(files[0], json.dumps(report, indent=2) + "\n")
    for head in ("emotion", "sentiment"):
        labels = list(report[head]["per_class"])
        figure = confusion_figure(report[head]["confusion"], labels, f"{head} ({report.get('split', '')})")
        path = out_dir / f"confusion_{head}.png"
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=110)
        files.append(path)
    return files
