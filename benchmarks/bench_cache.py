"""What the feature cache buys: one training epoch from raw clips beside one from cached features.

Run: `python benchmarks/bench_cache.py [--data-dir D] [--num-frames 16] [--frame-size 112] [--audio-seconds 8]
[--text-model minilm] [--video-weights none] [--batch-size 32] [--workers 2] [--threads 1] [--epochs 3]`.
Without `--data-dir` it prepares the embedded 70-clip sample into a temporary folder.

Both rows drive the real training code on the train split, with the same model (text, audio and video;
frozen text encoder and R3D-18 backbone), optimiser, loss and loader settings: `build_datasets` (cache off,
then on), `trainer._loader`, `train_one_epoch`. An epoch's seconds are those `train_one_epoch` measures.
- no cache: every step decodes the clips (16 frames) and WAVs in DataLoader workers, tokenises the text and
  runs MiniLM and R3D-18 forward, then the trainable part forward and backward;
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

from meldctl.data.dataset import Collator, label_counts
from meldctl.data.manifest import read_manifest
from meldctl.model import build_model
from meldctl.model.text import load_tokenizer
from meldctl.prepare import prepare
from meldctl.settings import DataSettings, ModelSettings, TrainSettings
from meldctl.training.distributed import DistInfo
from meldctl.training.loop import train_one_epoch
from meldctl.training.losses import MultiTaskLoss, class_weights
from meldctl.training.trainer import (
    Reporter,
    _loader,
    _optimizer,
    _schedule,
    build_datasets,
    model_config_from,
    preprocess_from,
    seed_everything,
)


def epochs(model, dataset, collate, criterion, train: TrainSettings, count: int) -> list:  # noqa: ANN001
    """`count` epochs of `dataset` with a fresh optimiser and schedule; their `EpochStats`."""
    generator = seed_everything(train.seed)
    loader = _loader(dataset, collate, train.batch_size, train=True, workers=train.workers, generator=generator)
    optimizer = _optimizer(model, train)
    scheduler = _schedule(optimizer, count * len(loader), train.warmup_ratio)
    cpu = torch.device("cpu")
    return [
        train_one_epoch(model, criterion, optimizer, scheduler, loader, cpu, grad_clip=train.grad_clip)
        for _ in range(count)
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="a prepared folder (default: the sample, prepared here)")
    parser.add_argument("--num-frames", type=int, default=16)
    parser.add_argument("--frame-size", type=int, default=112)
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
        frame_size=args.frame_size,
        audio_seconds=args.audio_seconds,
    )
    train = TrainSettings(batch_size=args.batch_size, workers=args.workers, device="cpu")
    seed_everything(train.seed)
    model, preprocess = build_model(model_config_from(settings)), preprocess_from(settings)
    tokenizer = load_tokenizer(args.text_model)
    collate = Collator(tokenizer, preprocess.max_tokens)

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp) / "sample"
        if args.data_dir is None:
            prepare(DataSettings(source="sample", data_dir=data_dir))
        rows = {"train": read_manifest(data_dir, "train")}

        def datasets(use_cache: bool):  # noqa: ANN202
            return build_datasets(
                rows,
                data_dir,
                model,
                preprocess,
                tokenizer,
                use_cache=use_cache,
                device=torch.device("cpu"),
                workers=args.workers,
                info=DistInfo(),
                reporter=Reporter(),
                should_stop=lambda: False,
            )

        raw = datasets(use_cache=False)[0]["train"]
        emotion_counts, sentiment_counts = label_counts(raw.rows)
        criterion = MultiTaskLoss(
            class_weights(emotion_counts, train.class_weights),
            class_weights(sentiment_counts, train.class_weights),
            train.label_smoothing,
        )
        raw_stats = epochs(model, raw, collate, criterion, train, args.raw_epochs)
        print(f"  done: {args.raw_epochs} uncached epoch(s); {load_line('now')}", flush=True)
        start = time.perf_counter()
        cached, _, kinds = datasets(use_cache=True)
        build_seconds = time.perf_counter() - start
        cached_stats = epochs(model, cached["train"], collate, criterion, train, 1 + args.epochs)[1:]
        print(f"  done: cache build and {1 + args.epochs} cached epochs; {load_line('now')}", flush=True)
        cache_mb = sum(f.stat().st_size for f in (data_dir / "cache").rglob("*.npy")) / 2**20

    n = len(raw)
    raw_s = statistics.median(s.seconds for s in raw_stats)
    cached_s = statistics.median(s.seconds for s in cached_stats)
    print(
        f"\ninputs: {n} train utterances of {'the embedded sample' if args.data_dir is None else data_dir}; "
        f"text+audio+video, text {args.text_model} (frozen), R3D-18 weights {args.video_weights} (frozen), "
        f"{preprocess.num_frames} frames at {preprocess.frame_size}x{preprocess.frame_size}, "
        f"{preprocess.audio_seconds:g} s audio, batch {train.batch_size}, {train.workers} DataLoader workers "
        f"(raw only; cached data loads in the main process)"
    )
    print(f"cached: {', '.join(kinds)} ({cache_mb:.1f} MiB of .npy); {load_line('after the runs')}\n")
    table = [
        [
            "one epoch, no cache (decode + encoders every step)",
            f"{raw_s:.2f}",
            f"{n / raw_s:.1f}",
            "1x",
            f"median of {len(raw_stats)}",
        ],
        [
            "one epoch, cached features",
            f"{cached_s:.3f}",
            f"{n / cached_s:.0f}",
            f"{raw_s / cached_s:.0f}x",
            f"median of {len(cached_stats)}",
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
    print(f"break-even: the cache pays for itself after {build_seconds / (raw_s - cached_s):.2f} epochs")


if __name__ == "__main__":
    main()
