"""MELD's metrics, from scikit-learn: accuracy, weighted F1 (the headline), macro F1, per class, confusion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# The per-epoch log line, `[meldctl] epoch=N key=value ...`: the CLI prints it and SageMaker metric
# definitions parse it, so both take the keys from here.
EPOCH_LINE_METRICS: tuple[str, ...] = (
    "train_loss",
    "dev_loss",
    "dev_emotion_accuracy",
    "dev_emotion_weighted_f1",
    "dev_sentiment_accuracy",
    "dev_sentiment_weighted_f1",
)


# What a SageMaker job prints at its end, for the `best_*` and `test_*` metric definitions: the best epoch's dev
# scores, and the scores of best.pt on the test split.
TEST_LINE_METRICS: tuple[str, ...] = (
    "emotion_weighted_f1",
    "emotion_accuracy",
    "sentiment_weighted_f1",
    "sentiment_accuracy",
)


def epoch_line(record: dict[str, Any]) -> str:
    """`[meldctl] epoch=3 train_loss=2.1403 ...` for one epoch's record."""
    values = " ".join(f"{key}={record[key]:.4f}" for key in EPOCH_LINE_METRICS)
    return f"[meldctl] epoch={record['epoch']} {values}"


def best_line(epoch: int | None, dev: dict[str, float]) -> str:
    """`[meldctl] best epoch=3 dev_emotion_weighted_f1=0.4876 ...` for the best epoch's dev scores."""
    return f"[meldctl] best epoch={epoch} " + " ".join(f"{k}={v:.4f}" for k, v in dev.items())


def report_line(report: dict[str, Any]) -> str:
    """`[meldctl] test emotion_weighted_f1=0.5012 ...` from an evaluation report (`meldctl.evaluation`)."""
    values = []
    for name in TEST_LINE_METRICS:
        head, _, metric = name.partition("_")
        values.append(f"{name}={report[head][metric]:.4f}")
    return "[meldctl] test " + " ".join(values)


def head_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """Scores of one head.

    Args:
        y_true: Gold class indices.
        y_pred: Predicted class indices.
        labels: Class names in index order.

    Returns:
        `{"accuracy", "weighted_f1", "macro_f1", "per_class": {label: {precision, recall, f1, support}},
        "confusion": [[...]]}` with rows as gold classes, columns as predictions.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    ids = list(range(len(labels)))
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "weighted_f1": float(f1_score(y_true, y_pred, labels=ids, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
    }


def majority_baseline(y_true: Sequence[int], train_counts: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """Scores of always predicting the most frequent training class: the floor every model must beat."""
    majority = int(np.argmax(train_counts))
    scores = head_metrics(y_true, [majority] * len(y_true), labels)
    return {
        "label": labels[majority],
        "accuracy": scores["accuracy"],
        "weighted_f1": scores["weighted_f1"],
        "macro_f1": scores["macro_f1"],
    }
