"""A training run from settings to checkpoints: data, feature cache, model, loop, TensorBoard, resume.

`run_training` reads top to bottom: set up, build inputs, then per epoch train, score dev, log, save.
"""

from __future__ import annotations

import math
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from meldctl.data.cache import BuildContext, CachedSplit, SplitCache, audio_spec, build_split, text_spec, video_spec
from meldctl.data.dataset import Collator, UtteranceDataset, label_counts, select_rows
from meldctl.data.manifest import ManifestRow, read_manifest
from meldctl.errors import DataError, MeldError
from meldctl.labels import EMOTIONS, SENTIMENTS
from meldctl.model import MeldModel, ModelConfig, PreprocessConfig, build_model
from meldctl.model.checkpoint import read_checkpoint, save_checkpoint
from meldctl.model.text import load_tokenizer, tokenizer_to_files
from meldctl.settings import DataSettings, ModelSettings, TrainSettings
from meldctl.training import distributed as dist
from meldctl.training.loop import EpochStats, predict, train_one_epoch
from meldctl.training.losses import MultiTaskLoss, class_weights
from meldctl.training.metrics import head_metrics


class Reporter:
    """Where a run tells its progress; the CLI draws bars, tests and other ranks use this silent one."""

    def progress(self, label: str, done: int, total: int) -> None: ...
    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None: ...
    def batch(self, samples: int, loss: float) -> None: ...
    def epoch_end(self, record: dict[str, Any]) -> None: ...
    def note(self, text: str) -> None: ...


@dataclass
class TrainResult:
    run_dir: Path
    best_path: Path | None
    last_path: Path | None
    best_epoch: int | None
    best_metrics: dict[str, float]
    epochs_run: int
    stopped: str  # completed | early_stopping | interrupted
    history: list[dict[str, Any]]
    skipped: dict[str, dict[str, int]]
    cached: list[str]
    tensorboard_dir: Path | None = None
    signal: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def preprocess_from(settings: ModelSettings) -> PreprocessConfig:
    """The preprocessing the settings ask for: the settings fields that PreprocessConfig shares by name."""
    return PreprocessConfig.from_dict(settings.model_dump())


def model_config_from(settings: ModelSettings) -> ModelConfig:
    """The architecture the settings ask for: the settings fields that ModelConfig shares by name."""
    return ModelConfig.from_dict(settings.model_dump())


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass
class _Start:
    """The model and where training starts: fresh from settings, or from a last.pt."""

    model: MeldModel
    preprocess: PreprocessConfig
    tokenizer: Any | None
    tokenizer_files: dict[str, str] | None
    training: dict[str, Any] | None = None


def _start(model_settings: ModelSettings, resume: Path | None) -> _Start:
    if resume is None:
        model = build_model(model_config_from(model_settings))
        tokenizer = load_tokenizer(model_settings.text_model) if model.text is not None else None
        files = tokenizer_to_files(tokenizer) if tokenizer is not None else None
        return _Start(model, preprocess_from(model_settings), tokenizer, files)
    # A resumed run takes the architecture and preprocessing from its checkpoint, not from the settings.
    payload = read_checkpoint(resume)
    if not payload.get("training"):
        raise MeldError(f"{resume} has no training state to resume from", hint="resume from a run's last.pt")
    model = build_model(ModelConfig.from_dict(payload["model_config"]), pretrained=False)
    model.load_state_dict(payload["state_dict"])
    files = payload.get("tokenizer")
    tokenizer = None
    if files:
        from meldctl.model.text import tokenizer_from_files

        tokenizer = tokenizer_from_files(files)
    return _Start(model, PreprocessConfig.from_dict(payload["preprocess"]), tokenizer, files, payload["training"])


def resolve_resume(resume: Path | None) -> Path | None:
    """`--resume` takes a run folder (its last.pt) or a checkpoint file."""
    if resume is None:
        return None
    path = resume / "last.pt" if resume.is_dir() else resume
    if not path.is_file():
        raise MeldError(f"nothing to resume at {resume}: no last.pt", hint="pass a run folder or its last.pt")
    return path


def _cache_kinds(model: MeldModel, use_cache: bool) -> list[str]:
    if not use_cache:
        return []
    kinds = []
    if model.text is not None and model.text.frozen:
        kinds.append("text_features")
    if model.video is not None and model.video.frozen:
        kinds.append("video_features")
    if model.audio is not None:
        kinds.append("audio")  # log-Mel is fixed preprocessing: cacheable though the CNN trains
    return kinds


def _specs(model: MeldModel, preprocess: PreprocessConfig, kinds: list[str]) -> list:
    specs = []
    if "text_features" in kinds:
        specs.append(text_spec(model.text.encoder, model.config.text_model, preprocess, model.text.feature_shape))
    if "video_features" in kinds:
        specs.append(video_spec(model.video.backbone, preprocess, model.video.feature_dim))
    if "audio" in kinds:
        specs.append(audio_spec(preprocess))
    return specs


def build_datasets(
    rows: dict[str, list[ManifestRow]],
    data_dir: Path,
    model: MeldModel,
    preprocess: PreprocessConfig,
    tokenizer: Any | None,
    *,
    use_cache: bool,
    device: torch.device,
    workers: int,
    info: dist.DistInfo,
    reporter: Reporter,
    should_stop: Any,
) -> tuple[dict[str, UtteranceDataset], dict[str, dict[str, int]], list[str]]:
    """Select rows, build or load the feature cache (rank 0 builds, the others wait), wrap in datasets."""
    modalities = model.config.modalities
    kinds = _cache_kinds(model, use_cache)
    specs = _specs(model, preprocess, kinds)
    datasets, skipped = {}, {}
    for split, split_rows in rows.items():
        selection = select_rows(split_rows, modalities)
        caches: dict[str, CachedSplit] = {}
        for spec in specs:
            cache = SplitCache(data_dir, spec, split, split_rows)
            if info.is_main:
                ctx = BuildContext(
                    data_dir, model, preprocess, tokenizer, device, workers, reporter.progress, should_stop
                )
                caches[spec.name] = build_split(cache, ctx)
        dist.barrier(info)
        if not info.is_main:
            caches = {spec.name: SplitCache(data_dir, spec, split, split_rows).load() for spec in specs}
        broken = set().union(*(c.invalid_keys() for c in caches.values())) if caches else set()
        kept = [r for r in selection.rows if r.key not in broken]
        if broken:
            selection.skipped["corrupt"] = selection.skipped.get("corrupt", 0) + len(selection.rows) - len(kept)
        raw = [m for m in modalities if m in ("video", "audio") and not any(k.startswith(m) for k in caches)]
        datasets[split] = UtteranceDataset(
            kept,
            data_dir,
            preprocess,
            raw=raw,
            arrays={name: c.array for name, c in caches.items()},
            positions={name: c.positions(kept) for name, c in caches.items()},
        )
        skipped[split] = selection.skipped
    return datasets, skipped, kinds


def _loader(
    dataset: UtteranceDataset,
    collate: Collator,
    batch_size: int,
    *,
    train: bool,
    workers: int,
    generator: torch.Generator | None = None,
    info: dist.DistInfo | None = None,
) -> torch.utils.data.DataLoader:
    sampler = None
    if train and info is not None and info.enabled:
        sampler = torch.utils.data.DistributedSampler(
            dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=int(generator.initial_seed())
        )
    # BatchNorm in the fusion layer cannot train on a batch of one: drop such a last batch.
    per_rank = len(dataset) // (info.world_size if sampler else 1)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=workers if dataset.raw else 0,
        collate_fn=collate,
        generator=generator,
        drop_last=train and per_rank % batch_size == 1,
        persistent_workers=False,
    )


def _optimizer(model: MeldModel, train: TrainSettings) -> torch.optim.AdamW:
    encoders, rest = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (encoders if name.startswith(("text.encoder", "video.backbone")) else rest).append(param)
    groups = [{"params": rest, "lr": train.lr}]
    if encoders:
        groups.append({"params": encoders, "lr": train.encoder_lr})
    return torch.optim.AdamW(groups, weight_decay=train.weight_decay)


def _schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = max(1, int(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))  # cosine decay to zero

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _amp(device: torch.device, precision: str) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    if device.type != "cuda" or precision == "fp32":
        return None, None
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")


def dev_metrics(preds: Any) -> dict[str, Any]:
    """Both heads' scores from a `predict` pass."""
    return {
        "emotion": head_metrics(preds.emotion.tolist(), preds.emotion_probs.argmax(1).tolist(), EMOTIONS),
        "sentiment": head_metrics(preds.sentiment.tolist(), preds.sentiment_probs.argmax(1).tolist(), SENTIMENTS),
    }


def _record(epoch: int, stats: EpochStats, dev: dict[str, Any], dev_loss: float, lr: float) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "lr": lr,
        "train_loss": stats.loss,
        "train_emotion_loss": stats.emotion_loss,
        "train_sentiment_loss": stats.sentiment_loss,
        "train_emotion_accuracy": stats.emotion_accuracy,
        "train_sentiment_accuracy": stats.sentiment_accuracy,
        "train_samples_per_s": stats.samples_per_s,
        "train_seconds": stats.seconds,
        "dev_loss": dev_loss,
        "dev_emotion_accuracy": dev["emotion"]["accuracy"],
        "dev_emotion_weighted_f1": dev["emotion"]["weighted_f1"],
        "dev_sentiment_accuracy": dev["sentiment"]["accuracy"],
        "dev_sentiment_weighted_f1": dev["sentiment"]["weighted_f1"],
    }


class _TensorBoard:
    """Per-epoch scalars and confusion matrices on rank 0; nothing elsewhere."""

    def __init__(self, folder: Path | None) -> None:
        self.writer = None
        if folder is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(folder))

    def epoch(self, record: dict[str, Any], dev: dict[str, Any], improved: bool) -> None:
        if self.writer is None:
            return
        step = record["epoch"]
        for key, value in record.items():
            if key != "epoch":
                group, _, name = key.partition("_")
                self.writer.add_scalar(f"{group}/{name}", value, step)
        if improved:  # the confusion matrices of the checkpoint that best.pt holds, at each new best
            from meldctl.training.plots import confusion_figure

            for head, labels in (("emotion", EMOTIONS), ("sentiment", SENTIMENTS)):
                figure = confusion_figure(dev[head]["confusion"], labels, head)
                self.writer.add_figure(f"dev/confusion_{head}", figure, step)
        self.writer.flush()

    def close(self, hparams: dict[str, Any], final: dict[str, float]) -> None:
        if self.writer is None:
            return
        if final:
            self.writer.add_hparams(hparams, {f"hparam/{k}": v for k, v in final.items()}, run_name=".")
        self.writer.close()


def _save_copy(path: Path, folder: Path | None) -> None:
    """Keep a copy in the checkpoint folder (SageMaker syncs it to S3 for spot resumption)."""
    if folder is None:
        return
    from meldctl.io import atomic_path

    with atomic_path(Path(folder) / path.name) as tmp:
        shutil.copyfile(path, tmp)


def run_training(
    data: DataSettings,
    model_settings: ModelSettings,
    train: TrainSettings,
    *,
    run_dir: Path,
    resume: Path | None = None,
    reporter: Reporter | None = None,
    should_stop: Any = lambda: False,
) -> TrainResult:
    """Train, score dev every epoch, keep best.pt (by dev emotion weighted F1) and last.pt.

    Args:
        data: Where the prepared data is, and whether to cache features.
        model_settings: The model and preprocessing (ignored for both when resuming: the checkpoint decides).
        train: The loop's settings.
        run_dir: Where checkpoints and TensorBoard go.
        resume: A run folder or last.pt to continue from.
        reporter: Progress callbacks.
        should_stop: Polled every batch; true stops after saving last.pt (Ctrl-C, SIGTERM).
    """
    reporter = reporter or Reporter()
    device = dist.resolve_device(train.device)
    info = dist.setup(device)
    if not info.is_main:
        reporter = Reporter()
    try:
        run = _Run(data, model_settings, train, run_dir, resolve_resume(resume), reporter, should_stop, device, info)
        return run.fit()
    finally:
        dist.teardown(info)


class _Run:
    """One run's moving parts, built once, so that `fit` and `_epoch` read top to bottom."""

    def __init__(
        self,
        data: DataSettings,
        model_settings: ModelSettings,
        train: TrainSettings,
        run_dir: Path,
        resume: Path | None,
        reporter: Reporter,
        should_stop: Any,
        device: torch.device,
        info: dist.DistInfo,
    ) -> None:
        self.train, self.run_dir, self.reporter, self.should_stop = train, run_dir, reporter, should_stop
        self.device, self.info = device, info
        seed_everything(train.seed)
        self.start = _start(model_settings, resume)
        self.model, self.preprocess = self.start.model.to(device), self.start.preprocess
        rows = {split: read_manifest(data.data_dir, split) for split in ("train", "dev")}
        datasets, self.skipped, self.cached = build_datasets(
            rows,
            data.data_dir,
            self.model,
            self.preprocess,
            self.start.tokenizer,
            use_cache=data.cache,
            device=device,
            workers=train.workers,
            info=info,
            reporter=reporter,
            should_stop=should_stop,
        )
        # Building the cache draws on the global RNG (DataLoader seeds) only when it has work to do: re-seed so
        # a run that builds the cache and one that reuses it train identically.
        generator = seed_everything(train.seed + 1)
        if len(datasets["train"]) < 2:
            raise DataError(
                f"only {len(datasets['train'])} usable training utterances in {data.data_dir}",
                hint="check the manifest statuses (meldctl prepare) or the --modalities",
            )
        emotion_counts, sentiment_counts = label_counts(datasets["train"].rows)
        self.criterion = MultiTaskLoss(
            _to(class_weights(emotion_counts, train.class_weights), device),
            _to(class_weights(sentiment_counts, train.class_weights), device),
            train.label_smoothing,
        )
        collate = Collator(self.start.tokenizer, self.preprocess.max_tokens)
        self.train_loader = _loader(
            datasets["train"],
            collate,
            train.batch_size,
            train=True,
            workers=train.workers,
            generator=generator,
            info=info,
        )
        self.dev_loader = _loader(
            datasets["dev"], collate, max(train.batch_size, 64), train=False, workers=train.workers
        )
        self.wrapped = self.model
        if info.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.wrapped = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = _optimizer(self.model, train)
        self.scheduler = _schedule(self.optimizer, train.epochs * max(1, len(self.train_loader)), train.warmup_ratio)
        self.amp_dtype, self.scaler = _amp(device, train.precision)
        self.state = {"next_epoch": 1, "best_metric": -1.0, "best_epoch": None, "bad_epochs": 0, "history": []}
        if self.start.training:
            self._restore(self.start.training, resume)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.tb_dir = Path(train.tensorboard_dir) if train.tensorboard_dir else run_dir / "tensorboard"
        self.board = _TensorBoard(self.tb_dir if info.is_main else None)
        self.extra = {
            "train_counts": {"emotion": emotion_counts, "sentiment": sentiment_counts},
            "data_dir": str(data.data_dir),
        }
        self.last_path: Path | None = None

    def _restore(self, training: dict[str, Any], resume: Path | None) -> None:
        self.optimizer.load_state_dict(training["optimizer"])
        self.scheduler.load_state_dict(training["scheduler"])
        if self.scaler is not None and training.get("scaler"):
            self.scaler.load_state_dict(training["scaler"])
        self.state.update({k: training[k] for k in self.state})
        if training.get("rng") is not None:
            torch.set_rng_state(training["rng"])
        _carry_best(resume, self.run_dir)

    def save(self, name: str, metrics: dict[str, Any], next_epoch: int | None = None) -> Path:
        """Write a checkpoint (with resume state when `next_epoch` is given) and copy it to checkpoint_dir."""
        training = None
        if next_epoch is not None:
            training = {
                **self.state,
                "next_epoch": next_epoch,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "rng": torch.get_rng_state(),
                "epochs": self.train.epochs,
            }
        path = save_checkpoint(
            self.run_dir / name,
            self.model,
            self.preprocess,
            tokenizer_files=self.start.tokenizer_files,
            metrics=metrics,
            training=training,
            extra=self.extra,
        )
        _save_copy(path, self.train.checkpoint_dir)
        return path

    def fit(self) -> TrainResult:
        stopped, epochs_run = "completed", 0
        first, last = self.state["next_epoch"], self.train.epochs
        if first > last:
            self.reporter.note(f"nothing to do: the run already trained {first - 1} of {last} epochs")
        for epoch in range(first, last + 1):
            reason = self._epoch(epoch)
            if reason == "interrupted":
                stopped = reason
                break
            epochs_run += 1
            if reason is not None:
                stopped = reason
                break
        history = self.state["history"]
        best = next((r for r in history if r["epoch"] == self.state["best_epoch"]), {})
        best_dev = {k: v for k, v in best.items() if k.startswith("dev_")}
        self.board.close(_hparams(self.model.config, self.train), best_dev)
        best_path, last_path = self.run_dir / "best.pt", self.run_dir / "last.pt"
        return TrainResult(
            run_dir=self.run_dir,
            best_path=best_path if best_path.is_file() else None,
            last_path=self.last_path or (last_path if last_path.is_file() else None),
            best_epoch=self.state["best_epoch"],
            best_metrics=best_dev,
            epochs_run=epochs_run,
            stopped=stopped,
            history=history,
            skipped=self.skipped,
            cached=self.cached,
            tensorboard_dir=self.tb_dir if self.info.is_main else None,
        )

    def _epoch(self, epoch: int) -> str | None:
        """Train one epoch, score dev, log and save; return why training stops here, or None."""
        info, device = self.info, self.device
        if isinstance(self.train_loader.sampler, torch.utils.data.DistributedSampler):
            self.train_loader.sampler.set_epoch(epoch)
        self.reporter.epoch_start(epoch, self.train.epochs, len(self.train_loader))
        stats = train_one_epoch(
            self.wrapped,
            self.criterion,
            self.optimizer,
            self.scheduler,
            self.train_loader,
            device,
            amp_dtype=self.amp_dtype,
            scaler=self.scaler,
            grad_clip=self.train.grad_clip,
            on_batch=self.reporter.batch,
            should_stop=self.should_stop,
        )
        if dist.broadcast_flag(info, stats.interrupted, device):
            # The interrupted epoch is redone on resume, from the weights and optimiser state it reached.
            if info.is_main:
                self.last_path = self.save("last.pt", {"epoch": epoch - 1}, next_epoch=epoch)
            return "interrupted"
        loss_sums = dist.all_reduce_sum(info, [stats.loss * stats.samples, float(stats.samples)], device)
        stats.loss = loss_sums[0] / max(loss_sums[1], 1.0)
        stop_early = False
        if info.is_main:
            preds = predict(self.model, self.dev_loader, device, criterion=self.criterion, amp_dtype=self.amp_dtype)
            dev = dev_metrics(preds)
            record = _record(epoch, stats, dev, preds.loss, self.scheduler.get_last_lr()[0])
            self.state["history"].append(record)
            improved = record["dev_emotion_weighted_f1"] > self.state["best_metric"]
            if improved:
                self.state.update(best_metric=record["dev_emotion_weighted_f1"], best_epoch=epoch, bad_epochs=0)
                self.save("best.pt", record)
            else:
                self.state["bad_epochs"] += 1
            self.last_path = self.save("last.pt", record, next_epoch=epoch + 1)
            self.board.epoch(record, dev, improved)
            self.reporter.epoch_end({**record, "improved": improved})
            stop_early = 0 < self.train.patience <= self.state["bad_epochs"]
        return "early_stopping" if dist.broadcast_flag(info, stop_early, device) else None


def _to(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(device)


def _carry_best(resume: Path | None, run_dir: Path) -> None:
    """A run resumed into another folder keeps its best.pt (SageMaker resumes from the checkpoint folder)."""
    if resume is None:
        return
    source, target = resume.parent / "best.pt", run_dir / "best.pt"
    if source.is_file() and not target.exists() and source.resolve() != target.resolve():
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def _hparams(config: ModelConfig, train: TrainSettings) -> dict[str, Any]:
    return {
        "modalities": ",".join(config.modalities),
        "text_model": config.text_model,
        "video_weights": config.video_weights,
        "freeze_text": config.freeze_text,
        "lr": train.lr,
        "batch_size": train.batch_size,
        "label_smoothing": train.label_smoothing,
        "class_weights": train.class_weights,
        "epochs": train.epochs,
        "seed": train.seed,
    }
