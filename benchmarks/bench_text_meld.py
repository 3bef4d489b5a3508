"""Real-data, text-only MELD benchmark with the offline all-MiniLM-L6-v2 encoder.

Run: `python benchmarks/bench_text_meld.py [--data-dir DIR] [--finetune] [--json FILE]`.

One command, side by side on MELD's real label CSVs (train 9,989 / dev 1,109 / test 2,610 utterances):
- majority class: always the most frequent training label (the floor);
- logistic regression (scikit-learn) on the frozen MiniLM sentence embeddings (mean-pooled, L2-normalised),
  C chosen on dev;
- meldctl, text encoder frozen (features cached), trained with `run_training` and the default settings;
- with `--finetune`: meldctl with the encoder fine-tuned (`freeze_text=False`, the cache off).

Every choice is made on dev: the logistic regression's C by dev emotion weighted F1, and each meldctl run's
`best.pt` by the same. Test is scored once, from those choices, with the same `predict` and `dev_metrics`
the trainer uses on dev. The data folder is built from the CSV-only source with `meldctl prepare` (rows get
status `missing`: text-only needs no clip). The first run encodes the 13,708 utterances once into the feature
cache under the data folder; later runs reuse it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meldctl.data.dataset import Collator, DataPlan, UtteranceDataset, build_datasets, label_counts  # noqa: E402
from meldctl.data.dialogue import eval_batches  # noqa: E402
from meldctl.data.kinds import kinds_for  # noqa: E402
from meldctl.data.manifest import read_manifest  # noqa: E402
from meldctl.labels import EMOTION_INDEX, EMOTIONS, SENTIMENT_INDEX, SENTIMENTS  # noqa: E402
from meldctl.model.checkpoint import load_checkpoint, read_checkpoint  # noqa: E402
from meldctl.model.text import tokenizer_digest, tokenizer_to_files  # noqa: E402
from meldctl.reporting import Reporter  # noqa: E402
from meldctl.settings import Settings, load_settings  # noqa: E402
from meldctl.training import distributed as dist  # noqa: E402
from meldctl.training.loop import predict  # noqa: E402
from meldctl.training.metrics import head_metrics, majority_baseline  # noqa: E402
from meldctl.training.trainer import dev_metrics, run_training  # noqa: E402

SOURCE = Path("/work/shared/data/meld")
SPLITS = ("train", "dev", "test")
LOGREG_C = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
# Fine-tuning settings (see docs/benchmarks.md). MELD utterances are short (all but 2 of the 9,989 train ones
# fit in 64 MiniLM tokens), so 64 tokens loses nothing and keeps the CPU cost down; 5e-5 is a usual encoder
# learning rate for a 6-layer MiniLM (the default 2e-5 is BERT-base's).
FINETUNE = {"model": {"max_tokens": 64}, "train": {"encoder_lr": 5e-5, "epochs": 3}}


class Progress(Reporter):
    """One line per cache split and per epoch on stderr."""

    def __init__(self, name: str) -> None:
        self.name, self._last = name, ""

    def progress(self, label: str, done: int, total: int) -> None:
        if done == total and label != self._last:
            self._last = label
            print(f"  [{self.name}] cached {label}: {total} rows", file=sys.stderr, flush=True)

    def epoch_end(self, record: dict[str, Any]) -> None:
        print(
            f"  [{self.name}] epoch {record['epoch']}: train loss {record['train_loss']:.3f}, "
            f"dev emotion wF1 {100 * record['dev_emotion_weighted_f1']:.2f}, "
            f"dev sentiment wF1 {100 * record['dev_sentiment_weighted_f1']:.2f}, "
            f"{record['train_seconds']:.0f} s{' (best)' if record.get('improved') else ''}",
            file=sys.stderr,
            flush=True,
        )


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def prepare_data(source: Path, data_dir: Path) -> None:
    """Text-only manifests from the CSV-only folder (idempotent: a prepared folder is left as it is)."""
    from meldctl.prepare import prepare
    from meldctl.settings import DataSettings

    if all((data_dir / "manifest" / f"{s}.jsonl").is_file() for s in SPLITS):
        return
    prepare(DataSettings(data_dir=data_dir, source=str(source)))


def settings_for(data_dir: Path, run_dir: Path, *, finetune: bool, args: argparse.Namespace) -> Settings:
    overrides: dict[str, dict[str, Any]] = {
        "data": {"data_dir": data_dir, "cache": not finetune},
        "model": {
            "modalities": ["text"],
            "text_model": "minilm",
            "video_weights": "none",
            "freeze_text": not finetune,
            "context_past": args.context_past,
            "context_future": args.context_future,
            "context_speakers": not args.no_speakers,
        },
        "train": {"run_dir": run_dir, "seed": args.seed, "device": args.device, "workers": 0},
    }
    if finetune:
        for section, values in FINETUNE.items():
            overrides[section].update(values)
        if args.finetune_epochs:
            overrides["train"]["epochs"] = args.finetune_epochs
    return load_settings(overrides=overrides)


def _loader(dataset: Any, collate: Collator, context: bool) -> torch.utils.data.DataLoader:
    batches = eval_batches(dataset.rows, 128, context)  # whole dialogues per batch with context
    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=0, collate_fn=collate)


def score_checkpoint(
    path: Path, data_dir: Path, device: torch.device, *, use_cache: bool, context: bool = True
) -> dict[str, Any]:
    """A checkpoint's dev and test scores, with the trainer's own `predict` and `dev_metrics`.

    With a context checkpoint, `context=False` scores every utterance alone (the `--no-context` ablation).
    """
    loaded = load_checkpoint(path, device)
    rows = {split: read_manifest(data_dir, split) for split in ("dev", "test")}
    plan = DataPlan(
        data_dir, loaded.preprocess, loaded.tokenizer, tokenizer_digest(loaded.tokenizer_files), use_cache, device, 0
    )
    datasets, _ = build_datasets(rows, loaded.model, plan)
    used = context and loaded.model.config.uses_context
    collate = Collator(kinds_for(loaded.model.config.modalities), loaded.preprocess, loaded.tokenizer, context=used)
    return {
        split: dev_metrics(predict(loaded.model, _loader(ds, collate, used), device)) for split, ds in datasets.items()
    }


def frozen_features(settings: Settings, device: torch.device) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Mean-pooled MiniLM embeddings (from the feature cache, built here when missing) and both labels."""
    from meldctl.model import build_model
    from meldctl.model.text import load_tokenizer

    model = build_model(settings.model.to_model_config()).to(device)
    tokenizer = load_tokenizer(settings.model.text_model)
    rows = {split: read_manifest(settings.data.data_dir, split) for split in SPLITS}
    plan = DataPlan(
        settings.data.data_dir,
        settings.model.to_preprocess(),
        tokenizer,
        tokenizer_digest(tokenizer_to_files(tokenizer)),
        True,
        device,
        0,
        progress=Progress("cache").progress,
    )
    datasets, _ = build_datasets(rows, model, plan)
    out = {}
    for split, ds in datasets.items():
        feats = cached_text(ds)
        if feats.ndim == 3:  # per-layer pools (model.text_layer_mix): the published embedding is the last layer's
            feats = feats[:, -1, :]
        emotion = np.array([EMOTION_INDEX[r.emotion] for r in ds.rows])
        sentiment = np.array([SENTIMENT_INDEX[r.sentiment] for r in ds.rows])
        out[split] = (feats.astype(np.float32), emotion, sentiment)
    return out


def cached_text(dataset: UtteranceDataset) -> np.ndarray:
    """The cached text features of every row of `dataset`, in row order."""
    cache = dataset.cached["text"]
    where, valid = cache.lookup(dataset.rows)
    if not valid.all():
        raise SystemExit(f"{int((~valid).sum())} rows have no cached text features")
    return np.asarray(cache.array)[where]


def logistic_regression(features: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """One multinomial logistic regression per head on the L2-normalised embeddings; C picked on dev per head.

    L2 normalisation after mean pooling is how sentence-transformers' all-MiniLM-L6-v2 pipeline ends: these
    are the model's sentence embeddings as published.
    """
    from sklearn.linear_model import LogisticRegression

    def embed(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)

    x_train, x_dev, x_test = (embed(features[s][0]) for s in SPLITS)
    result: dict[str, Any] = {"dev": {}, "test": {}, "C": {}, "dev_by_C": {}}
    for head, column, labels in (("emotion", 1, EMOTIONS), ("sentiment", 2, SENTIMENTS)):
        best = None
        for c in LOGREG_C:
            clf = LogisticRegression(C=c, max_iter=3000).fit(x_train, features["train"][column])
            dev = head_metrics(features["dev"][column], clf.predict(x_dev), labels)
            result["dev_by_C"].setdefault(head, {})[c] = dev["weighted_f1"]
            if best is None or dev["weighted_f1"] > best[0]["weighted_f1"]:
                best = (dev, clf, c)
        dev, clf, c = best
        result["C"][head] = c
        result["dev"][head] = dev
        result["test"][head] = head_metrics(features["test"][column], clf.predict(x_test), labels)
    return result


def majority(data_dir: Path) -> dict[str, Any]:
    emotion_counts, sentiment_counts = label_counts(read_manifest(data_dir, "train"))
    out: dict[str, Any] = {}
    for split in ("dev", "test"):
        rows = read_manifest(data_dir, split)
        out[split] = {
            "emotion": majority_baseline([EMOTION_INDEX[r.emotion] for r in rows], emotion_counts, EMOTIONS),
            "sentiment": majority_baseline([SENTIMENT_INDEX[r.sentiment] for r in rows], sentiment_counts, SENTIMENTS),
        }
    return out


def train_and_score(name: str, settings: Settings, device: torch.device, *, finetune: bool) -> dict[str, Any]:
    start = time.perf_counter()
    result = run_training(
        settings.data, settings.model, settings.train, run_dir=settings.train.run_dir, reporter=Progress(name)
    )
    train_s = time.perf_counter() - start
    if result.best_path is None:
        raise SystemExit(f"{name}: training left no best.pt in {result.run_dir}")
    scores = score_checkpoint(result.best_path, settings.data.data_dir, device, use_cache=not finetune)
    # The checkpoint's dev scores must be the ones the trainer selected it by.
    assert abs(scores["dev"]["emotion"]["weighted_f1"] - result.best_metrics["dev_emotion_weighted_f1"]) < 1e-6
    if settings.model.context_past or settings.model.context_future:
        alone = score_checkpoint(
            result.best_path, settings.data.data_dir, device, use_cache=not finetune, context=False
        )
        scores["no_context"] = alone
    seconds = [r["train_seconds"] for r in result.history]
    return {
        **scores,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped": result.stopped,
        "seconds": train_s,
        "epoch_seconds": float(np.median(seconds)) if seconds else None,
        "run_dir": str(result.run_dir),
        "settings": {
            "model": settings.model.model_dump(
                mode="json",
                include={
                    "text_model",
                    "freeze_text",
                    "text_layer_mix",
                    "projection_dim",
                    "fusion_dim",
                    "dropout",
                    "max_tokens",
                    "context_past",
                    "context_future",
                    "context_speakers",
                },
            ),
            "train": settings.train.model_dump(
                mode="json",
                include={
                    "epochs",
                    "batch_size",
                    "lr",
                    "encoder_lr",
                    "weight_decay",
                    "label_smoothing",
                    "class_weights",
                    "warmup_ratio",
                    "patience",
                    "seed",
                },
            ),
        },
        "history": [
            {k: r[k] for k in ("epoch", "dev_emotion_weighted_f1", "dev_sentiment_weighted_f1")} for r in result.history
        ],
    }


def score_run(run_dir: Path, data_dir: Path, device: torch.device) -> dict[str, Any]:
    """Dev and test scores of an existing fine-tuning run's best.pt (chosen by dev), with its own settings."""
    import tomllib

    best = run_dir / "best.pt"
    loaded = load_checkpoint(best, device)
    scores = score_checkpoint(best, data_dir, device, use_cache=False)
    resolved = tomllib.loads((run_dir / "settings.toml").read_text(encoding="utf-8"))
    last = read_checkpoint(run_dir / "last.pt").get("metrics", {}) if (run_dir / "last.pt").is_file() else {}
    return {
        **scores,
        "best_epoch": loaded.metrics.get("epoch"),
        "epochs_run": last.get("epoch"),
        "stopped": f"scored the existing run {run_dir}",
        "epoch_seconds": loaded.metrics.get("train_seconds"),
        "run_dir": str(run_dir),
        "time": f"{loaded.metrics.get('train_seconds', 0) / 60:.0f} min/epoch",
        "settings": {"model": resolved.get("model", {}), "train": resolved.get("train", {})},
    }


def table(report: dict[str, Any]) -> str:
    cols = [
        (split, head, metric)
        for split in ("dev", "test")
        for head in ("emotion", "sentiment")
        for metric in ("weighted_f1", "accuracy")
    ]
    short = {"weighted_f1": "wF1", "accuracy": "acc"}
    lines = [
        "| model | " + " | ".join(f"{s} {h[:3]} {short[m]}" for s, h, m in cols) + " | time |",
        "|---|" + "---:|" * (len(cols) + 1),
    ]
    for name, entry in report["results"].items():
        cells = [f"{100 * entry[s][h][m]:.2f}" for s, h, m in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {entry.get('time', '')} |")
    return "\n".join(lines)


def _context(args: argparse.Namespace) -> bool:
    return bool(args.context_past or args.context_future)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="Folder with MELD's three label CSVs.")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/meldctl-bench-text/data"))
    parser.add_argument("--runs-dir", type=Path, default=None, help="Default: DATA_DIR/../runs.")
    parser.add_argument("--finetune", action="store_true", help="Also fine-tune the encoder (slow on CPU).")
    parser.add_argument("--finetune-epochs", type=int, default=None, help="Override the fine-tuning epochs.")
    parser.add_argument(
        "--finetune-run",
        type=Path,
        default=None,
        help="Score the best.pt of a finished fine-tuning run folder instead of training one.",
    )
    parser.add_argument("--skip-frozen", action="store_true", help="Skip the frozen meldctl run.")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--context-past", type=int, default=0, help="Dialogue context: earlier utterances seen.")
    parser.add_argument("--context-future", type=int, default=0, help="Dialogue context: later utterances seen.")
    parser.add_argument("--no-speakers", action="store_true", help="Context without same-speaker information.")
    parser.add_argument("--skip-logreg", action="store_true", help="Skip the logistic-regression baseline.")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the full report here.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data_dir = args.data_dir.absolute()
    runs = (args.runs_dir or data_dir.parent / "runs").absolute()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    device = dist.resolve_device(args.device)

    t0 = time.perf_counter()
    prepare_data(args.source, data_dir)
    frozen = settings_for(data_dir, runs / f"frozen-{stamp}", finetune=False, args=args)
    features = frozen_features(frozen, device)
    cache_s = time.perf_counter() - t0
    report: dict[str, Any] = {
        "machine": machine(),
        "data_dir": str(data_dir),
        "sizes": {s: len(f[0]) for s, f in features.items()},
        "results": {},
    }
    report["results"]["majority class"] = {**majority(data_dir), "time": "-"}
    logreg = None
    if not args.skip_logreg:
        t0 = time.perf_counter()
        logreg = logistic_regression(features)
        report["results"]["logistic regression (frozen MiniLM)"] = {
            "dev": logreg["dev"],
            "test": logreg["test"],
            "time": f"{time.perf_counter() - t0:.0f} s",
        }
        report["logreg"] = {"C": logreg["C"], "dev_weighted_f1_by_C": logreg["dev_by_C"]}
    window = f", context {args.context_past} past / {args.context_future} future" if _context(args) else ""
    if not args.skip_frozen:
        entry = train_and_score("frozen", frozen, device, finetune=False)
        entry["time"] = f"{entry['seconds']:.0f} s ({entry['epochs_run']} ep)"
        report["results"][f"meldctl, encoder frozen{window}"] = entry
        if "no_context" in entry:
            report["results"]["  same checkpoint, --no-context"] = {**entry.pop("no_context"), "time": "-"}
    if args.finetune:
        tuned = settings_for(data_dir, runs / f"finetune-{stamp}", finetune=True, args=args)
        entry = train_and_score("finetune", tuned, device, finetune=True)
        entry["time"] = f"{entry['seconds'] / 60:.0f} min ({entry['epochs_run']} ep)"
        report["results"][f"meldctl, encoder fine-tuned{window}"] = entry
        if "no_context" in entry:
            report["results"]["  same checkpoint, --no-context "] = {**entry.pop("no_context"), "time": "-"}
    elif args.finetune_run:
        report["results"]["meldctl, encoder fine-tuned"] = score_run(args.finetune_run, data_dir, device)

    m = report["machine"]
    print(
        f"machine: {m['platform']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"python {m['python']}, device {device}{' ' + m['cuda'] if m['cuda'] else ''}"
    )
    print(
        f"data: {data_dir} (train/dev/test {report['sizes']['train']}/{report['sizes']['dev']}/"
        f"{report['sizes']['test']} utterances); prepare + feature cache {cache_s:.0f} s"
    )
    if logreg is not None:
        print(
            f"logistic regression: C chosen on dev emotion/sentiment = {logreg['C']['emotion']}/"
            f"{logreg['C']['sentiment']} (grid {list(LOGREG_C)})"
        )
    for name, entry in report["results"].items():
        if "settings" in entry:
            print(
                f"{name}: best epoch {entry['best_epoch']} of {entry['epochs_run']} ({entry['stopped']}), "
                f"median {entry['epoch_seconds']:.1f} s/epoch, settings {json.dumps(entry['settings'])}"
            )
    print()
    print(table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
