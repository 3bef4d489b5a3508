"""Modality dropout: one three-modality model trained with it, one without; each scored on modality subsets.

Run: `python benchmarks/bench_modality_dropout.py [--data-dir D] [--epochs 20] [--batch-size 8] [--dropout 0.3]
[--threads 1]`. Without `--data-dir` it prepares the embedded 70-clip sample into a temporary folder.

Two `run_training` runs on the same data with the same settings and seed (text+audio+video, MiniLM, R3D-18
weights none, cache on), differing only in `model.modality_dropout`: `--dropout` (default 0.3, the setting's
default) and 0.0. Each run's `best.pt` (best dev emotion weighted F1) is then scored with
`evaluate_checkpoint(..., modalities=SUBSET)`, what `meldctl eval --modalities SUBSET` runs, on dev and test
for the subsets text, text+audio, text+video and all three: the modalities left out are treated as missing
in every row, and the model's learned stand-ins take their place. Every cell comes from one checkpoint per
training. The sample is tiny (42 train, 14 dev, 14 test utterances): the values are noise-sized; the point is
that the whole ablation table comes from this one command.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _common import load_line, machine, print_table

from meldctl.data.manifest import read_manifest
from meldctl.evaluation import evaluate_checkpoint
from meldctl.prepare import prepare
from meldctl.settings import DataSettings, ModelSettings, TrainSettings
from meldctl.training.trainer import TrainResult, run_training

SUBSETS = (("text",), ("text", "audio"), ("text", "video"), ("text", "audio", "video"))
SPLITS = ("dev", "test")


def train(data_dir: Path, run_dir: Path, dropout: float, args: argparse.Namespace) -> TrainResult:
    model = ModelSettings(
        modalities=["text", "audio", "video"], text_model="minilm", video_weights="none", modality_dropout=dropout
    )
    settings = TrainSettings(
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, device="cpu", workers=args.workers
    )
    start = time.perf_counter()
    result = run_training(DataSettings(data_dir=data_dir, cache=True), model, settings, run_dir=run_dir)
    if result.best_path is None:
        raise SystemExit(f"training with modality dropout {dropout} wrote no best.pt")
    print(
        f"  trained modality dropout {dropout:g}: best epoch {result.best_epoch} of {result.epochs_run} "
        f"({result.stopped}) in {time.perf_counter() - start:.0f} s; {load_line('now')}",
        flush=True,
    )
    return result


def scores(checkpoint: Path, data_dir: Path, out: Path, workers: int) -> dict[tuple[str, ...], dict[str, dict]]:
    """`{subset: {split: report}}` of one checkpoint, ablating at evaluation time."""
    found: dict[tuple[str, ...], dict[str, dict]] = {}
    for subset in SUBSETS:
        for split in SPLITS:
            result = evaluate_checkpoint(
                checkpoint,
                data_dir,
                split,
                out_dir=out / f"{split}-{'+'.join(subset)}",
                device="cpu",
                workers=workers,
                modalities=subset,
            )
            found.setdefault(subset, {})[split] = result.report
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="a prepared folder (default: the sample, prepared here)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dropout", type=float, default=0.3, help="modality dropout of the first model")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (the cache does the decoding)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the machine is shared)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine(args.threads), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp) / "sample"
        if args.data_dir is None:
            prepare(DataSettings(source="sample", data_dir=data_dir))
        sizes = {split: len(read_manifest(data_dir, split)) for split in ("train", *SPLITS)}
        table, best = {}, {}
        for dropout in (args.dropout, 0.0):
            result = train(data_dir, Path(tmp) / f"run-{dropout:g}", dropout, args)
            best[dropout] = (result.best_epoch, result.epochs_run)
            table[dropout] = scores(result.best_path, data_dir, Path(tmp) / f"eval-{dropout:g}", args.workers)

    print(
        f"\ninputs: {'the embedded sample' if args.data_dir is None else data_dir} "
        f"({', '.join(f'{s} {n}' for s, n in sizes.items())} utterances); text+audio+video, text minilm (frozen), "
        f"R3D-18 weights none (frozen), cache on; up to {args.epochs} epochs (patience 4), batch "
        f"{args.batch_size}, seed {args.seed}; best.pt chosen by dev emotion weighted F1 with all modalities"
    )
    print(f"{load_line('after the runs')}\n")
    rows = []
    for dropout, by_subset in table.items():
        epoch, ran = best[dropout]
        for subset, by_split in by_subset.items():
            cells = [f"{100 * by_split[s][h]['weighted_f1']:.1f}" for s in SPLITS for h in ("emotion", "sentiment")]
            rows.append([f"{dropout:g} (best epoch {epoch} of {ran})", "+".join(subset), *cells])
    print_table(
        ["modality dropout", "eval modalities", "dev emo wF1", "dev sen wF1", "test emo wF1", "test sen wF1"], rows
    )
    print("\nweighted F1 in %; every row of each split is scored (missing modalities use the learned stand-ins)")


if __name__ == "__main__":
    main()
