"""What the feature cache buys: one training epoch from raw clips beside one from cached features.

Run: `python benchmarks/bench_cache.py [--data-dir D] [--num-frames 16] [--audio-seconds 8]
[--text-model minilm] [--video-weights none] [--batch-size 32] [--workers 2] [--threads 1] [--epochs 3]`.
Without `--data-dir` it prepares the embedded 70-clip sample into a temporary folder.

Both rows drive the real training code on the train split, with the same model (text, audio and video;
frozen text encoder and R3D-18 backbone; the default modality dropout), optimiser, loss and loader settings:
`build_datasets` (cache off, then on), `Collator`, `EpochBatches`, `trainer._loader`, `optim.build_optimizer` and
`train_step`, as `run_training` wires them. An epoch's seconds are the wall time of its batches.
- no cache: every step decodes the clips (16 frames, Kinetics resize + centre crop) and WAVs in DataLoader
  workers, tokenises the text and runs MiniLM and R3D-18 forward, then the trainable part forward and
  backward;
- cache: text and video features and log-Mel spectrograms read from the .npy memory maps; only the
  trainable part (projections, audio CNN, fusion, heads) runs. Building the cache is timed separately.
The cached epoch is the median of `--epochs` after one warm-up epoch; the raw epochs are few and slow, so
their median is taken without a warm-up (the first one includes starting the DataLoader workers).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _common import load_line, machine, print_table

from meldctl.data.dataset import Collator, DataPlan, UtteranceDataset, build_datasets, label_counts
from meldctl.data.dialogue import dialogue_groups
from meldctl.data.kinds import kinds_for
from meldctl.data.manifest import read_manifest
from meldctl.model import MeldModel, build_model
from meldctl.model.text import load_tokenizer, tokenizer_digest, tokenizer_to_files
from meldctl.prepare import prepare
from meldctl.settings import DataSettings, ModelSettings, TrainSettings
from meldctl.training.loop import train_step
from meldctl.training.losses import MultiTaskLoss, class_weights
from meldctl.training.optim import build_optimizer, build_schedule
from meldctl.training.rng import seed_everything
from meldctl.training.sampler import EpochBatches
from meldctl.training.trainer import _loader, audio_statistics

CPU = torch.device("cpu")


def epochs(
    model: MeldModel,
    dataset: UtteranceDataset,
    collate: Collator,
    criterion: MultiTaskLoss,
    train: TrainSettings,
    count: int,
    groups: list[list[int]] | None = None,
) -> list[float]:
    """`count` epochs of `dataset` with a fresh optimiser and schedule; the seconds of each.

    `groups` (dialogues) makes the batches hold whole dialogues, as training a context model does.
    """
    seed_everything(train.seed)
    sampler = EpochBatches(len(dataset), train.batch_size, seed=train.seed, groups=groups)
    loader = _loader(dataset, collate, train, batch_sampler=sampler)
    optimizer = build_optimizer(model, train)
    scheduler = build_schedule(optimizer, count * len(sampler), train.warmup_ratio)
    seconds = []
    for epoch in range(1, count + 1):
        sampler.start(epoch)
        model.train()
        start = time.perf_counter()
        for batch in loader:
            train_step(model, criterion, optimizer, scheduler, batch, CPU, grad_clip=train.grad_clip)
        seconds.append(time.perf_counter() - start)
    return seconds


CONTEXT = {"context_past": 5, "context_future": 2}


def context_cost(
    settings: ModelSettings,
    plain: MeldModel,
    dataset: UtteranceDataset,
    criterion: MultiTaskLoss,
    train: TrainSettings,
    args: argparse.Namespace,
) -> tuple[list[float], list[float]]:
    """Cached epochs of the plain model and of the same model with dialogue context, interleaved, after a
    warm-up epoch each: what turning context on costs per epoch (the cache is shared, nothing re-encoded)."""
    seed_everything(train.seed)
    model = build_model(settings.model_copy(update=CONTEXT).to_model_config())
    model.load_state_dict(plain.state_dict(), strict=False)  # the same encoders; the context layer is new
    plain_collate = Collator(kinds_for(plain.config.modalities), settings.to_preprocess(), None)
    collate = Collator(kinds_for(model.config.modalities), settings.to_preprocess(), None, context=True)
    groups = dialogue_groups(dataset.rows)
    plain_times: list[float] = []
    context_times: list[float] = []
    for _ in range(1 + args.epochs):
        plain_times += epochs(plain, dataset, plain_collate, criterion, train, 1)
        context_times += epochs(model, dataset, collate, criterion, train, 1, groups=groups)
    return plain_times[1:], context_times[1:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="a prepared folder (default: the sample, prepared here)")
    parser.add_argument("--num-frames", type=int, default=16)
    parser.add_argument("--audio-seconds", type=float, default=8.0)
    parser.add_argument("--text-model", default="minilm")
    parser.add_argument("--video-weights", default="none", help="none: random init, the same compute as kinetics400")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (training's default)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the machine is shared)")
    parser.add_argument("--epochs", type=int, default=3, help="cached epochs timed (after one warm-up)")
    parser.add_argument("--raw-epochs", type=int, default=1, help="uncached epochs timed")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine(args.threads), flush=True)
    settings = ModelSettings(
        modalities=["text", "audio", "video"],
        text_model=args.text_model,
        video_weights=args.video_weights,
        num_frames=args.num_frames,
        audio_seconds=args.audio_seconds,
    )
    train = TrainSettings(batch_size=args.batch_size, workers=args.workers, device="cpu")
    seed_everything(train.seed)
    model, preprocess = build_model(settings.to_model_config()), settings.to_preprocess()
    tokenizer = load_tokenizer(args.text_model)
    tokenizer_key = tokenizer_digest(tokenizer_to_files(tokenizer))
    collate = Collator(kinds_for(model.config.modalities), preprocess, tokenizer)

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp) / "sample"
        if args.data_dir is None:
            prepare(DataSettings(source="sample", data_dir=data_dir))
        rows = {"train": read_manifest(data_dir, "train")}

        def datasets(use_cache: bool) -> tuple[dict[str, UtteranceDataset], list[str]]:
            plan = DataPlan(data_dir, preprocess, tokenizer, tokenizer_key, use_cache, CPU, args.workers)
            return build_datasets(rows, model, plan)

        raw = datasets(use_cache=False)[0]["train"]
        model.audio.set_normalisation(*audio_statistics(raw, train.seed))  # as run_training does, once
        emotion_counts, sentiment_counts = label_counts(raw.rows)
        criterion = MultiTaskLoss(
            class_weights(emotion_counts, train.class_weights),
            class_weights(sentiment_counts, train.class_weights),
            train.label_smoothing,
        )
        raw_times = epochs(model, raw, collate, criterion, train, args.raw_epochs)
        print(f"  done: {args.raw_epochs} uncached epoch(s); {load_line('now')}", flush=True)
        start = time.perf_counter()
        cached, kinds = datasets(use_cache=True)
        build_seconds = time.perf_counter() - start
        cached_times = epochs(model, cached["train"], collate, criterion, train, 1 + args.epochs)[1:]
        print(f"  done: cache build and {1 + args.epochs} cached epochs; {load_line('now')}", flush=True)
        plain_times, context_times = context_cost(settings, model, cached["train"], criterion, train, args)
        print(f"  done: cached epochs with and without dialogue context; {load_line('now')}", flush=True)
        cache_mb = sum(f.stat().st_size for f in (data_dir / "cache").rglob("*.npy")) / 2**20

    n = len(raw)
    raw_s, cached_s = statistics.median(raw_times), statistics.median(cached_times)
    crop = preprocess.crop_size
    print(
        f"\ninputs: {n} train utterances of {'the embedded sample' if args.data_dir is None else data_dir}; "
        f"text+audio+video, text {args.text_model} (frozen), R3D-18 weights {args.video_weights} (frozen), "
        f"{preprocess.num_frames} frames (resize {preprocess.resize_size[0]}x{preprocess.resize_size[1]}, crop "
        f"{crop}x{crop}), up to {preprocess.audio_seconds:g} s audio, modality dropout "
        f"{model.config.modality_dropout:g}, batch {train.batch_size}, {train.workers} DataLoader workers "
        f"(raw only; cached data loads in the main process)"
    )
    print(f"cached: {', '.join(kinds)} ({cache_mb:.1f} MiB of .npy); {load_line('after the runs')}\n")
    table = [
        [
            "one epoch, no cache (decode + encoders every step)",
            f"{raw_s:.2f}",
            f"{n / raw_s:.1f}",
            "1x",
            f"median of {len(raw_times)}",
        ],
        [
            "one epoch, cached features",
            f"{cached_s:.3f}",
            f"{n / cached_s:.0f}",
            f"{raw_s / cached_s:.0f}x",
            f"median of {len(cached_times)}",
        ],
        [
            "building the cache (train split, once)",
            f"{build_seconds:.2f}",
            f"{n / build_seconds:.1f}",
            "",
            "text + video features, log-Mel",
        ],
    ]
    print_table(["what", "seconds", "samples/s", "cheaper than no cache", "note"], table)
    ratio = raw_s / cached_s
    print(f"\ntarget: cached epoch >= 100x cheaper: {ratio:.0f}x -> {'PASS' if ratio >= 100 else 'FAIL'}")
    plain_s, context_s = statistics.median(plain_times), statistics.median(context_times)
    print(
        f"dialogue context ({CONTEXT['context_past']} past / {CONTEXT['context_future']} future, whole-dialogue "
        f"batches) vs none, cached epochs interleaved, median of {len(plain_times)}: {context_s:.3f} s vs "
        f"{plain_s:.3f} s = {context_s / plain_s:.2f}x -> {'PASS' if context_s / plain_s <= 1.3 else 'FAIL'} "
        "(target <= 1.3x)"
    )
    print(f"break-even: the cache pays for itself after {build_seconds / (raw_s - cached_s):.2f} epochs")


if __name__ == "__main__":
    main()
