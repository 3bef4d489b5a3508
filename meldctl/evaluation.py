"""Score a checkpoint on a split with the preprocessing it was trained with: MELD's metrics and figures."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from meldctl.data.dataset import Collator, DataPlan, build_datasets, label_counts
from meldctl.data.dialogue import eval_batches
from meldctl.data.kinds import kinds_for
from meldctl.data.loading import worker_init
from meldctl.data.manifest import read_manifest
from meldctl.errors import DataError, Interrupted
from meldctl.io import atomic_path, write_text_atomic
from meldctl.labels import parse_modalities
from meldctl.model.checkpoint import load_checkpoint
from meldctl.model.text import tokenizer_digest
from meldctl.reporting import Reporter
from meldctl.training import distributed
from meldctl.training.loop import predict
from meldctl.training.metrics import head_metrics, majority_baseline


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
    modalities: Sequence[str] | None = None,
    context: bool = True,
    reporter: Reporter | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    stop_signal: Callable[[], str | None] = lambda: None,
) -> EvalResult:
    """Score `checkpoint` on every row of `split`; write `report.json` and one confusion-matrix PNG per head.

    Args:
        checkpoint: A meldctl checkpoint (best.pt).
        data_dir: The prepared data folder holding the split's manifest.
        split: train, dev or test.
        out_dir: Where the report goes; default `eval/<split>/` beside the checkpoint (`eval/<split>-<used>/`
            when modalities are ablated).
        device: auto, cpu or cuda.
        workers: DataLoader workers for decoding clips.
        use_cache: Read (and complete) the feature cache when the checkpoint's frozen encoders match it.
        modalities: Use only these of the checkpoint's modalities (evaluation-time ablation); None uses all.
        context: Score each utterance in its dialogue when the checkpoint was trained with context; False
            scores every utterance alone (the `--no-context` ablation).
        reporter: Progress callbacks.
        should_stop: Polled while the cache is built (Ctrl-C, SIGTERM).
        stop_signal: The name of the signal that asked to stop.

    Raises:
        DataError: the split has no rows, or the modalities are not a subset of the checkpoint's.
    """
    torch_device = distributed.resolve_device(device)
    loaded = load_checkpoint(checkpoint, torch_device)
    model, config = loaded.model, loaded.model.config
    used = _used_modalities(config.modalities, modalities)
    rows = read_manifest(data_dir, split)
    if not rows:
        raise DataError(f"split {split!r} of {data_dir} has no utterances")
    reporter = reporter or Reporter()
    plan = DataPlan(
        data_dir, loaded.preprocess, loaded.tokenizer, tokenizer_digest(loaded.tokenizer_files), use_cache,
        torch_device, workers, reporter.progress, should_stop, stop_signal,
        ablate=[m for m in config.modalities if m not in used],
    )  # fmt: skip
    datasets, _ = build_datasets({split: rows}, model, plan)
    dataset = datasets[split]
    with_context = config.uses_context and context
    loader = _scoring_loader(dataset, loaded, workers, with_context)
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        reporter.progress(f"scoring {split}", done, len(dataset))

    try:
        preds = predict(model, loader, torch_device, on_batch=progress, should_stop=should_stop)
    except Interrupted as exc:
        raise Interrupted(exc.message, stop_signal(), hint="nothing was written; run the command again") from None
    report = build_report(preds, config.emotions, config.sentiments, loaded.extra.get("train_counts"), dataset.rows)
    report.update(
        checkpoint=str(checkpoint),
        split=split,
        modalities=list(used),
        ablated=[m for m in config.modalities if m not in used],
        missing={m: int((~preds.present[m]).sum()) for m in used if m in preds.present},
        context=context_report(config, with_context),
    )
    if out_dir is None:
        suffix = ("" if used == config.modalities else "-" + "+".join(used)) + (
            "-no-context" if config.uses_context and not context else ""
        )
        out_dir = Path(checkpoint).parent / "eval" / f"{split}{suffix}"
    return EvalResult(report, out_dir, write_report(report, out_dir))


def _used_modalities(trained: tuple[str, ...], asked: Sequence[str] | None) -> tuple[str, ...]:
    """The modalities an evaluation uses: all the checkpoint's, or the subset asked for (an ablation)."""
    used = tuple(trained if asked is None else parse_modalities(list(asked)))
    if set(used) - set(trained):
        raise DataError(
            f"--modalities {','.join(used)}: the checkpoint has only {','.join(trained)}",
            hint="ablate a subset of the checkpoint's modalities",
        )
    return used


def _scoring_loader(dataset: Any, loaded: Any, workers: int, context: bool) -> torch.utils.data.DataLoader:
    """Batches of 64 rows (whole dialogues with context), decoded in workers only when something is raw."""
    config = loaded.model.config
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=eval_batches(dataset.rows, 64, context),
        num_workers=workers if dataset.raw else 0,
        collate_fn=Collator(kinds_for(config.modalities), loaded.preprocess, loaded.tokenizer, context=context),
        worker_init_fn=worker_init,
    )


def context_report(config: Any, used: bool) -> dict[str, Any]:
    """What the report says of dialogue context: the checkpoint's window, and whether scoring used it."""
    return {
        "past": config.context_past,
        "future": config.context_future,
        "speakers": config.context_speakers,
        "used": used,
    }


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
