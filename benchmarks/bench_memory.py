"""Peak memory of `meldctl train` with the feature cache on full-MELD-sized data (a stand-in; see below).

Run: `python benchmarks/bench_memory.py [--meld /work/shared/data/meld] [--epochs 1] [--threads 1]`.

Full MELD clips are not available here, so the data is an honest stand-in of the real size:
- manifests of all 13,708 real MELD utterances (text, labels, IDs from the CSVs through `prepare`), rewritten
  with status `ok` and clip/WAV paths pointing to one small placeholder file each;
- the video and audio feature caches pre-filled at their real shapes (video [N, 512] float32, audio
  [N, 1, 64, 801] float16 with each utterance's valid length) through `SplitCache.open_partial()`/`finish()`,
  under the keys and row identities that `meldctl train` computes, so training takes them as built. Their
  VALUES ARE PLACEHOLDERS (random numbers): memory and speed do not depend on them, the learned model is
  meaningless. The audio lengths are real: each utterance's CSV span (at most 8 s), since batches are cut to
  their longest utterance and the audio CNN's cost follows the lengths;
- the text feature cache is real: `meldctl train` computes it with MiniLM.
Then one `meldctl train` process (text+audio+video, MiniLM, R3D-18 weights none, cache on) runs `--epochs`
epochs; its peak RSS comes from wait4 (the process and the children it waited for).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import child_env, load_line, machine, print_table, run_child

from meldctl.data.cache import SplitCache
from meldctl.data.kinds import KINDS
from meldctl.data.manifest import ManifestRow, read_manifest, write_manifest
from meldctl.model import PreprocessConfig, build_model
from meldctl.prepare import prepare
from meldctl.settings import DataSettings, ModelSettings, TrainSettings
from meldctl.training.rng import seed_everything

CHUNK = 256  # rows filled at a time, so the pre-fill itself stays small


def stand_in_manifests(meld: Path, data_dir: Path) -> dict[str, int]:
    """Real MELD rows, marked `ok`, every clip and WAV path pointing to one placeholder file."""
    prepare(DataSettings(source=str(meld), data_dir=data_dir))
    for rel in ("clips/placeholder.mp4", "audio/placeholder.wav"):
        (data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / rel).write_bytes(b"placeholder: the feature caches stand in for this clip")
    counts = {}
    for split in ("train", "dev", "test"):
        rows = [
            dataclasses.replace(
                r, status="ok", error=None, clip="clips/placeholder.mp4", audio="audio/placeholder.wav", duration_s=3.0
            )
            for r in read_manifest(data_dir, split)
        ]
        write_manifest(data_dir, split, rows)
        counts[split] = len(rows)
    return counts


def audio_frames(row: ManifestRow, preprocess: PreprocessConfig) -> int:
    """Valid log-Mel frames of the utterance's CSV span, as `log_mel_features` would give (at most the window)."""
    seconds = (row.end_s - row.start_s) if row.start_s is not None and row.end_s is not None else 3.0
    samples = min(max(int(seconds * preprocess.sample_rate), preprocess.n_fft), preprocess.audio_samples)
    return samples // preprocess.hop_length + 1


def prefill_caches(data_dir: Path, settings: ModelSettings, seed: int) -> None:
    """Video and audio caches with placeholder values, under the keys `meldctl train --seed` will compute.

    The video key hashes the R3D-18 weights; with `none` they are a random init, so the model is built
    exactly as training builds it: seeded with the same seed, from the same settings.
    """
    seed_everything(seed)
    model, preprocess = build_model(settings.to_model_config()), settings.to_preprocess()
    kinds = [KINDS["video"], KINDS["audio"]]
    rng = np.random.default_rng(0)
    for split in ("train", "dev"):
        rows = read_manifest(data_dir, split)
        for kind in kinds:
            spec = kind.spec(model, preprocess, None)  # neither key depends on the tokenizer
            cache = SplitCache(data_dir, kind, spec, split, rows)
            values, table = cache.open_partial(create=True)
            lengths = [audio_frames(r, preprocess) if kind.modality == "audio" else 0 for r in cache.rows]
            for start in range(0, len(cache.rows), CHUNK):
                stop = min(start + CHUNK, len(cache.rows))
                chunk = rng.normal(-4.0, 2.0, (stop - start, *spec.shape)).astype(spec.dtype)  # placeholder values
                if kind.modality == "audio":
                    for k, length in enumerate(lengths[start:stop]):
                        chunk[k, ..., length:] = 0  # the padding that the cache build writes
                values[start:stop] = chunk
            table[:, 0] = 1  # computed
            table[:, 1] = 1  # valid
            table[:, 2] = lengths  # valid frames (audio)
            cache.finish(values, table)


def cache_sizes(data_dir: Path) -> list[list[str]]:
    rows = []
    for path in sorted((data_dir / "cache").rglob("*.npy")):
        array = np.load(path, mmap_mode="r")
        kind = path.parent.name.split("-")[0]
        source = "computed by meldctl train (MiniLM)" if kind == "text_features" else "placeholder values"
        rows.append(
            [
                f"{path.parent.name}/{path.name}",
                f"{list(array.shape)}",
                str(array.dtype),
                f"{path.stat().st_size / 2**20:.1f}",
                source,
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meld", type=Path, default=Path("/work/shared/data/meld"), help="folder of MELD CSVs")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    args = parser.parse_args(argv)
    print(machine(args.threads), flush=True)
    settings = ModelSettings(modalities=["text", "audio", "video"], text_model="minilm", video_weights="none")
    seed = TrainSettings().seed

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "meld"
        counts = stand_in_manifests(args.meld, data_dir)
        prefill_caches(data_dir, settings, seed)
        before = {p.name for p in (data_dir / "cache").iterdir()}
        print(f"  stand-in ready: {counts}; {load_line('now')}", flush=True)
        exe = str(Path(sys.executable).parent / "meldctl")
        command = [
            exe,
            "train",
            "--data-dir",
            str(data_dir),
            "--run-dir",
            str(Path(tmp) / "run"),
            "--epochs",
            str(args.epochs),
            "--batch-size",
            str(args.batch_size),
            "--modalities",
            "text,audio,video",
            "--text-model",
            "minilm",
            "--video-weights",
            "none",
            "--device",
            "cpu",
            "--workers",
            "0",
            "--seed",
            str(seed),
            "--cache",
            "--json",
        ]
        run = run_child(command, env=child_env(args.threads))
        if run.returncode != 0:
            raise SystemExit(f"meldctl train failed ({run.returncode}):\n{run.stderr[-3000:]}")
        after = {p.name for p in (data_dir / "cache").iterdir()}
        new = sorted(after - before)
        # Only the text cache may be new: a new video or audio folder would mean the pre-fill missed the key.
        assert all(name.startswith("text_features-") for name in new), f"caches rebuilt by train: {new}"
        sizes = cache_sizes(data_dir)
        total_mb = sum(float(r[3]) for r in sizes)

    rss_mb = run.max_rss_mb
    print(
        f"\ninputs: stand-in for full MELD: {sum(counts.values())} real MELD utterances "
        f"({', '.join(f'{k} {v}' for k, v in counts.items())}); train uses train + dev. Video and audio "
        f"caches hold PLACEHOLDER values (random numbers) at the real shapes; the text cache is real (MiniLM)."
    )
    print(
        f"`meldctl train` text+audio+video, minilm, video weights none, cache on, {args.epochs} epoch(s), batch "
        f"{args.batch_size}, workers 0, {args.threads} thread(s); {load_line('after the run')}\n"
    )
    print_table(["cache file", "shape", "dtype", "MiB", "values"], sizes)
    print()
    print_table(
        ["what", "value"],
        [
            ["`meldctl train` wall time (incl. text caching)", f"{run.seconds:.0f} s"],
            ["`meldctl train` peak RSS (wait4 ru_maxrss)", f"{rss_mb:.0f} MiB"],
            ["cache files, all", f"{total_mb:.0f} MiB"],
            ["peak RSS / cache size", f"{rss_mb / total_mb:.2f}x"],
        ],
    )
    print(f"\ntarget: peak RSS < 4 GB: {rss_mb:.0f} MiB -> {'PASS' if rss_mb < 4096 else 'FAIL'}")


if __name__ == "__main__":
    main()
