"""A training run from settings to checkpoints: set up, then a loop that reads on one screen.

`run_training` sets up (device and process group, seeds, model, datasets and feature cache, loss, loaders,
optimiser, resume state, TensorBoard) and hands over to `_fit`: per epoch, train batch by batch (saving
`last.pt` when asked to stop or every `checkpoint_interval_s`), score dev, log, save `best.pt` and `last.pt`.

Resume is exact: `last.pt` holds the weights, optimiser, scheduler, every rank's RNG states, the epoch and
how many of its batches are done, and the epoch's running totals. The batch order of an epoch is a pure
function of (seed, epoch), so a resumed run skips the batches already done and continues with the same
ones, in the same order, with the same dropout masks: on the CPU its final weights equal an uninterrupted run's.
"""

from __future__ import annotations

import math
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from meldctl.data.dataset import Collator, DataPlan, UtteranceDataset, build_datasets, label_counts, missing_counts
from meldctl.data.dialogue import dialogue_groups, eval_batches
from meldctl.data.kinds import kinds_for
from meldctl.data.loading import worker_init
from meldctl.data.manifest import read_manifest
from meldctl.errors import DataError, MeldError
from meldctl.io import write_text_atomic
from meldctl.labels import EMOTIONS, SENTIMENTS
from meldctl.model import MeldModel, PreprocessConfig, build_model
from meldctl.model.checkpoint import load_checkpoint, save_checkpoint
from meldctl.model.text import load_tokenizer, tokenizer_digest, tokenizer_to_files
from meldctl.reporting import Reporter
from meldctl.settings import DataSettings, ModelSettings, TrainSettings
from meldctl.training import distributed as dist
from meldctl.training.board import TensorBoard
from meldctl.training.loop import Meter, predict, train_step
from meldctl.training.losses import MultiTaskLoss, class_weights
from meldctl.training.metrics import head_metrics
from meldctl.training.optim import build_optimizer, build_schedule, mixed_precision
from meldctl.training.rng import rng_state, seed_everything, set_rng_state
from meldctl.training.sampler import EpochBatches

_NORMALISATION_ROWS = 4000  # training rows sampled for the audio statistics when they must be decoded


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
    missing: dict[str, dict[str, int]]  # split -> modality -> rows without it
    cached: list[str]
    tensorboard_dir: Path | None = None
    signal: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunState:
    """Where training stands: what `last.pt` carries besides weights, optimiser and scheduler."""

    epoch: int = 1  # the epoch in progress (or next)
    batches_done: int = 0  # of that epoch
    best_metric: float = -1.0
    best_epoch: int | None = None
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    meter: dict[str, Any] | None = None  # running totals of the epoch in progress

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_training(
    data: DataSettings,
    model_settings: ModelSettings,
    train: TrainSettings,
    *,
    run_dir: Path,
    resume: Path | None = None,
    reporter: Reporter | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    stop_signal: Callable[[], str | None] = lambda: None,
    settings_toml: str | None = None,
) -> TrainResult:
    """Train, score dev every epoch, keep best.pt (by dev emotion weighted F1) and last.pt.

    Args:
        data: Where the prepared data is, and whether to cache features.
        model_settings: The model and preprocessing (ignored when resuming: the checkpoint decides).
        train: The loop's settings.
        run_dir: Where checkpoints and TensorBoard go (created when the first file is written).
        resume: A run folder or its last.pt to continue from.
        reporter: Progress callbacks.
        should_stop: Polled every batch; true saves last.pt and returns (Ctrl-C, SIGTERM).
        stop_signal: The name of the signal that asked to stop, for the messages.
        settings_toml: Written to `run_dir/settings.toml` once the set-up has succeeded (nothing is created
            for a run that fails its checks).
    """
    if train.batch_size < 2:
        raise MeldError(f"batch size {train.batch_size} is too small to train", hint="use --batch-size 2 or more")
    device = dist.resolve_device(train.device)
    info = dist.setup(device, train.dist_timeout_s)
    reporter = reporter if reporter is not None and info.is_main else Reporter()
    try:
        return _train(
            data, model_settings, train, run_dir=run_dir, resume=resume, info=info, device=device, reporter=reporter,
            should_stop=should_stop, stop_signal=stop_signal, settings_toml=settings_toml,
        )  # fmt: skip
    except BaseException as exc:
        # A failed run's traceback keeps its frames, and with them DDP: let go of it before the group goes.
        traceback.clear_frames(exc.__traceback__)
        raise
    finally:
        dist.teardown(info)


def _train(
    data: DataSettings,
    model_settings: ModelSettings,
    train: TrainSettings,
    *,
    run_dir: Path,
    resume: Path | None,
    info: dist.DistInfo,
    device: torch.device,
    reporter: Reporter,
    should_stop: Callable[[], bool],
    stop_signal: Callable[[], str | None],
    settings_toml: str | None,
) -> TrainResult:
    """The run, once the process group is up.

    Everything that holds the group (DDP and its reducer) is local here, so it is gone when this returns, before
    `run_training` destroys the group: a reducer freed after `destroy_process_group` can deadlock gloo's destructor.
    """
    seed_everything(train.seed)  # the same initial weights on every rank (and in `meldctl cache build`)
    start = _start(model_settings, resume, device)
    plan = DataPlan(
        data.data_dir, start.preprocess, start.tokenizer, tokenizer_digest(start.tokenizer_files), data.cache,
        device, train.workers, reporter.progress, should_stop, stop_signal, dist.cooperation(info, device),
    )  # fmt: skip
    datasets, cached = _datasets(start, plan, train.seed)
    counts = label_counts(datasets["train"].rows)
    context = start.model.config.uses_context
    sampler = EpochBatches(
        len(datasets["train"]), train.batch_size, seed=train.seed, rank=info.rank, world=info.world_size,
        groups=dialogue_groups(datasets["train"].rows) if context else None,
    )  # fmt: skip
    optimizer = build_optimizer(start.model, train)
    amp_dtype, scaler = mixed_precision(device, train.precision)
    run = _Run(
        model=start.model, wrapped=_wrap(start.model, info, device), preprocess=start.preprocess,
        tokenizer_files=start.tokenizer_files, criterion=_criterion(counts, train, device), optimizer=optimizer,
        scheduler=build_schedule(optimizer, train.epochs * max(1, len(sampler)), train.warmup_ratio),
        amp_dtype=amp_dtype, scaler=scaler, train=train, run_dir=run_dir, info=info, device=device,
        reporter=reporter, should_stop=should_stop, stop_signal=stop_signal,
        extra={"train_counts": {"emotion": counts[0], "sentiment": counts[1]}, "data_dir": str(data.data_dir)},
    )  # fmt: skip
    collate = Collator(kinds_for(start.model.config.modalities), start.preprocess, start.tokenizer, context=context)
    train_loader = _loader(datasets["train"], collate, train, batch_sampler=sampler)
    dev_batches = eval_batches(datasets["dev"].rows, train.batch_size, context)
    run.dev_loader = _loader(datasets["dev"], collate, train, batch_sampler=dev_batches)
    seed_everything(train.seed + info.rank)  # dropout masks differ between ranks; the data order does not
    state = RunState()
    if start.training is not None:
        state = _restore(start.training, run.optimizer, run.scheduler, run.scaler, info)
        _carry_best(resume if resume.is_dir() else resume.parent, run_dir)
    if settings_toml is not None and info.is_main:
        write_text_atomic(run_dir / "settings.toml", settings_toml)
    result = _fit(run, state, train_loader, sampler)
    result.missing = {split: missing_counts(ds) for split, ds in datasets.items()}
    result.cached = cached
    return result


@dataclass
class _Start:
    """What a run starts from: a fresh model from the settings, or a last.pt's weights and training state."""

    model: MeldModel
    preprocess: PreprocessConfig
    tokenizer: Any
    tokenizer_files: dict[str, str] | None
    training: dict[str, Any] | None = None  # optimiser, scheduler, RNG and loop state when resuming


def _start(settings: ModelSettings, resume: Path | None, device: torch.device) -> _Start:
    """The model and what it needs: fresh from the settings, or from a last.pt's weights and state."""
    if resume is None:
        model = build_model(settings.to_model_config())
        tokenizer = load_tokenizer(settings.text_model) if model.text is not None else None
        files = tokenizer_to_files(tokenizer) if tokenizer is not None else None
        return _Start(model.to(device), settings.to_preprocess(), tokenizer, files)
    # A resumed run takes the architecture and preprocessing from its checkpoint, not from the settings.
    loaded = load_checkpoint(resume / "last.pt" if resume.is_dir() else resume, device)
    if loaded.training is None:
        raise MeldError(f"{resume} has no training state to resume from", hint="resume from a run's last.pt")
    return _Start(loaded.model, loaded.preprocess, loaded.tokenizer, loaded.tokenizer_files, loaded.training)


def _datasets(start: _Start, plan: DataPlan, seed: int) -> tuple[dict[str, UtteranceDataset], list[str]]:
    """The train and dev datasets (building the feature cache), and the audio statistics of a fresh model."""
    rows = {split: read_manifest(plan.data_dir, split) for split in ("train", "dev")}
    for split, least in (("train", 2), ("dev", 1)):  # before any feature is computed for them
        if len(rows[split]) < least:
            found = f"{len(rows[split])} {split} utterances in {plan.data_dir}"
            raise DataError(f"too few to train: {found}, at least {least} needed", hint="run meldctl prepare")
    datasets, cached = build_datasets(rows, start.model, plan)
    if start.training is None and start.model.audio is not None:
        start.model.audio.set_normalisation(*audio_statistics(datasets["train"], seed))
    return datasets, cached


@torch.no_grad()
def audio_statistics(dataset: UtteranceDataset, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-band mean and standard deviation `[n_mels]` of the log-Mel frames of training utterances.

    Only valid frames count (padding never does). From the cache every row is used; decoding on the fly, a
    fixed random subset of rows keeps it affordable.
    """
    rows = np.flatnonzero(dataset.available("audio"))
    if dataset.cached.get("audio") is None and len(rows) > _NORMALISATION_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, _NORMALISATION_ROWS, replace=False))
    total = torch.zeros(dataset.preprocess.n_mels, dtype=torch.float64)
    squares, frames = torch.zeros_like(total), 0
    for start in range(0, len(rows), 256):
        for sample in dataset.__getitems__(rows[start : start + 256].tolist()):
            if not sample.get("audio_present"):
                continue
            mel = sample["audio"][0, :, : int(sample["audio_length"])].double()  # [n_mels, frames]
            total += mel.sum(1)
            squares += (mel**2).sum(1)
            frames += mel.shape[1]
    if frames == 0:
        return torch.zeros_like(total).float(), torch.ones_like(total).float()
    mean = total / frames
    std = (squares / frames - mean**2).clamp(min=0).sqrt()
    return mean.float(), std.float()


def _wrap(model: MeldModel, info: dist.DistInfo, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around `model` under torchrun; the model itself in one process."""
    if not info.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def _criterion(counts: tuple[list[int], list[int]], train: TrainSettings, device: torch.device) -> MultiTaskLoss:
    """Both heads' losses, class-weighted from the training label counts when the settings ask for it."""
    weights = (class_weights(c, train.class_weights) for c in counts)
    return MultiTaskLoss(*(None if w is None else w.to(device) for w in weights), train.label_smoothing)


def _loader(dataset: UtteranceDataset, collate: Collator, train: TrainSettings, **batching: Any) -> Any:
    # Its own generator: creating a loader's iterator must not draw from the global RNG that dropout uses,
    # or a resumed run (which creates one more iterator) would see other dropout masks.
    return torch.utils.data.DataLoader(
        dataset,
        num_workers=train.workers if dataset.raw else 0,
        collate_fn=collate,
        worker_init_fn=worker_init,
        generator=torch.Generator().manual_seed(train.seed),
        **batching,
    )


def _restore(training: dict[str, Any], optimizer: Any, scheduler: Any, scaler: Any, info: dist.DistInfo) -> RunState:
    optimizer.load_state_dict(training["optimizer"])
    scheduler.load_state_dict(training["scheduler"])
    if scaler is not None and training.get("scaler"):
        scaler.load_state_dict(training["scaler"])
    rngs = training.get("rng") or []
    if len(rngs) == info.world_size:
        set_rng_state(rngs[info.rank])
    return RunState(**training["state"])


def dev_metrics(preds: Any) -> dict[str, Any]:
    """Both heads' scores from a `predict` pass."""
    return {
        "emotion": head_metrics(preds.emotion.tolist(), preds.emotion_probs.argmax(1).tolist(), EMOTIONS),
        "sentiment": head_metrics(preds.sentiment.tolist(), preds.sentiment_probs.argmax(1).tolist(), SENTIMENTS),
    }


@dataclass
class _Run:
    """The parts of a run that the loop uses, built by `run_training`."""

    model: MeldModel
    wrapped: torch.nn.Module  # DDP around `model` under torchrun
    preprocess: PreprocessConfig
    tokenizer_files: dict[str, str] | None
    criterion: MultiTaskLoss
    optimizer: torch.optim.Optimizer
    scheduler: Any
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None
    train: TrainSettings
    run_dir: Path
    info: dist.DistInfo
    device: torch.device
    reporter: Reporter
    should_stop: Callable[[], bool]
    stop_signal: Callable[[], str | None]
    extra: dict[str, Any]
    dev_loader: Any = None
    board: Any = None

    def save(self, name: str, metrics: dict[str, Any], state: RunState | None = None) -> Path | None:
        """Write `name` on rank 0 (with resume state when `state` is given); every rank must call it.

        Raises:
            MeldError: the weights are not finite (the same on every rank: DDP keeps them equal).
        """
        if not _finite(self.model):
            raise _diverged(self.train, f"the weights are no longer finite; {name} was not written")
        rngs = dist.gather_objects(self.info, rng_state()) if state is not None else None
        if not self.info.is_main:
            return None
        training = None
        if state is not None:
            training = {
                "state": state.to_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "rng": rngs,
                "epochs": self.train.epochs,
            }
        path = save_checkpoint(
            self.run_dir / name, self.model, self.preprocess, tokenizer_files=self.tokenizer_files,
            metrics=metrics, training=training, extra=self.extra,
        )  # fmt: skip
        _save_copy(path, self.train.checkpoint_dir)
        return path


def _fit(run: _Run, state: RunState, train_loader: Any, sampler: EpochBatches) -> TrainResult:
    """The loop: epochs of batches; a stop request or the checkpoint clock saves last.pt mid-epoch."""
    train, info, device = run.train, run.info, run.device
    if info.is_main:
        run.board = TensorBoard(Path(train.tensorboard_dir) if train.tensorboard_dir else run.run_dir / "tensorboard")
    stopped, epochs_run, last_save = "completed", 0, time.monotonic()
    if state.epoch > train.epochs:
        run.reporter.note(f"nothing to do: the run already trained {state.epoch - 1} of {train.epochs} epochs")
    while state.epoch <= train.epochs:
        sampler.start(state.epoch, skip=state.batches_done)
        meter = Meter.from_state(state.meter)
        run.reporter.epoch_start(state.epoch, train.epochs, len(sampler))
        run.wrapped.train()
        for batch in train_loader:
            loss, parts, logits = train_step(
                run.wrapped, run.criterion, run.optimizer, run.scheduler, batch, device,
                amp_dtype=run.amp_dtype, scaler=run.scaler, grad_clip=train.grad_clip,
            )  # fmt: skip
            meter.add(loss, parts, logits, batch)
            state.batches_done += 1
            value = loss.item()
            run.reporter.batch(len(batch["emotion"]), value)
            due = 0 < train.checkpoint_interval_s <= time.monotonic() - last_save
            stop, due, diverged = dist.any_flags(info, [run.should_stop(), due, not math.isfinite(value)], device)
            if diverged:  # every rank stops here, before any checkpoint of the weights this step has made
                where = f"epoch {state.epoch}, batch {state.batches_done}"
                raise _diverged(train, f"the training loss is no longer finite ({where})")
            if stop or due:
                state.meter = meter.state()
                run.save("last.pt", {"epoch": state.epoch - 1}, state)
                last_save = time.monotonic()
            if stop:
                return _result(run, state, "interrupted", epochs_run)
        record, dev, improved = _score(run, state, meter)
        if improved:
            run.save("best.pt", record)
        state.epoch, state.batches_done, state.meter = state.epoch + 1, 0, None
        run.save("last.pt", record, state)
        last_save = time.monotonic()
        epochs_run += 1
        if info.is_main:  # after the checkpoints: losing a log line must never cost a checkpoint
            run.board.epoch(record, dev, improved)
            run.reporter.epoch_end({**record, "improved": improved})
        if dist.broadcast_flag(info, 0 < train.patience <= state.bad_epochs, device):
            stopped = "early_stopping"
            break
    return _result(run, state, stopped, epochs_run)


def _score(run: _Run, state: RunState, meter: Meter) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """End of an epoch: the train loss over every rank, dev scores on rank 0, and whether they are the best."""
    samples, loss = dist.all_reduce_sum(
        run.info, [float(meter.samples), meter.summary()["train_loss"] * meter.samples], run.device
    )
    record: dict[str, Any] = {"epoch": state.epoch, "lr": run.scheduler.get_last_lr()[0]}
    record.update(meter.summary(total_samples=samples, total_loss=loss))
    improved, dev = False, {}
    if run.info.is_main:
        preds = predict(run.model, run.dev_loader, run.device, criterion=run.criterion, amp_dtype=run.amp_dtype)
        dev = dev_metrics(preds)
        record.update(_dev_record(dev, preds.loss))
        state.history.append(record)
        improved = record["dev_emotion_weighted_f1"] > state.best_metric
        if improved:
            state.best_metric, state.best_epoch, state.bad_epochs = record["dev_emotion_weighted_f1"], state.epoch, 0
        else:
            state.bad_epochs += 1
    return record, dev, dist.broadcast_flag(run.info, improved, run.device)


def _dev_record(dev: dict[str, Any], loss: float) -> dict[str, float]:
    return {
        "dev_loss": loss,
        "dev_emotion_accuracy": dev["emotion"]["accuracy"],
        "dev_emotion_weighted_f1": dev["emotion"]["weighted_f1"],
        "dev_sentiment_accuracy": dev["sentiment"]["accuracy"],
        "dev_sentiment_weighted_f1": dev["sentiment"]["weighted_f1"],
    }


def _result(run: _Run, state: RunState, stopped: str, epochs_run: int) -> TrainResult:
    best = next((r for r in state.history if r["epoch"] == state.best_epoch), {})
    best_dev = {k: v for k, v in best.items() if k.startswith("dev_")}
    if run.board is not None:
        run.board.close(_hparams(run.model, run.train), best_dev)
    best_path, last_path = run.run_dir / "best.pt", run.run_dir / "last.pt"
    return TrainResult(
        run_dir=run.run_dir,
        best_path=best_path if best_path.is_file() else None,
        last_path=last_path if last_path.is_file() else None,
        best_epoch=state.best_epoch,
        best_metrics=best_dev,
        epochs_run=epochs_run,
        stopped=stopped,
        history=state.history,
        missing={},
        cached=[],
        tensorboard_dir=run.board.folder if run.board is not None else None,
        signal=run.stop_signal() if stopped == "interrupted" else None,
    )


def _finite(model: MeldModel) -> bool:
    """Whether every trainable weight and every buffer (BatchNorm's statistics) is finite."""
    tensors = [p for p in model.parameters() if p.requires_grad] + [b for b in model.buffers() if b.is_floating_point()]
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()) if tensors else True


def _diverged(train: TrainSettings, what: str) -> MeldError:
    return MeldError(
        f"training diverged: {what}",
        hint=f"lower the learning rate (lr = {train.lr:g}, encoder_lr = {train.encoder_lr:g}); "
        "checkpoints written before this point are kept",
    )


def _save_copy(path: Path, folder: Path | None) -> None:
    """Keep a copy in the checkpoint folder (SageMaker syncs it to S3 for spot resumption)."""
    if folder is None:
        return
    from meldctl.io import atomic_path

    with atomic_path(Path(folder) / path.name) as tmp:
        shutil.copyfile(path, tmp)


def _carry_best(resumed_from: Path, run_dir: Path) -> None:
    """A run resumed into another folder keeps its best.pt (SageMaker resumes from the checkpoint folder)."""
    source, target = resumed_from / "best.pt", run_dir / "best.pt"
    if source.is_file() and not target.exists() and source.resolve() != target.resolve():
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def _hparams(model: MeldModel, train: TrainSettings) -> dict[str, Any]:
    config = model.config
    return {
        "modalities": ",".join(config.modalities),
        "text_model": config.text_model,
        "video_weights": config.video_weights,
        "freeze_text": config.freeze_text,
        "modality_dropout": config.modality_dropout,
        "lr": train.lr,
        "batch_size": train.batch_size,
        "label_smoothing": train.label_smoothing,
        "class_weights": train.class_weights,
        "epochs": train.epochs,
        "seed": train.seed,
    }
