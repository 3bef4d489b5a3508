"""`prepare`: from a MELD source to per-split manifests and 16 kHz mono WAVs under the data folder.

Sources: `default` (the official archive, downloaded), `labels` (only the three label CSVs, downloaded: a
text-only dataset), a URL, a local archive or folder, or `sample` (the embedded sample). Every step is
idempotent: a rerun keeps what is complete and finishes what is not.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from meldctl.data.download import download
from meldctl.data.extract import extract_meld
from meldctl.data.manifest import ManifestRow, Status, count_statuses, read_manifest, write_manifest
from meldctl.data.meld import (
    CSV_NAMES,
    LABEL_SHA256,
    LabelRow,
    MeldLayout,
    find_layout,
    parse_clip_name,
    read_labels,
)
from meldctl.errors import DataError, DiskFullError, MediaError
from meldctl.io import atomic_path, check_free_space, disk_full, remove_stale_temporaries, write_text_atomic
from meldctl.media.ffmpeg import extract_audio, probe_clip
from meldctl.settings import DataSettings

# A 16 kHz mono 16-bit WAV of a MELD utterance (3.6 s on average, plus margin): to say how much room is needed.
_WAV_BYTES_PER_CLIP = 5 * 32_000


@dataclass(frozen=True)
class PrepareEvent:
    """Progress of one stage: `download` (bytes), `extract` (archive members) or `clips` (per split)."""

    stage: str
    done: int
    total: int | None = None
    split: str | None = None


Progress = Callable[[PrepareEvent], None]


@dataclass(frozen=True)
class SplitSummary:
    """What `prepare` found and did for one split."""

    split: str
    counts: dict[str, int]
    extracted: int  # WAVs written by this run
    no_csv_row: list[str]  # clip files with no label row: reported, not in the manifest
    zero_length: list[str]  # utterances whose CSV span has StartTime == EndTime (kept)
    text_only: bool
    seconds: float
    manifest: Path

    def to_json(self) -> dict[str, Any]:
        return {
            **self.counts,
            "extracted": self.extracted,
            "no_csv_row": self.no_csv_row,
            "zero_length": self.zero_length,
            "text_only": self.text_only,
            "seconds": round(self.seconds, 2),
        }


@dataclass(frozen=True)
class PrepareSummary:
    """The result of one `prepare` run."""

    data_dir: Path
    source: str
    splits: dict[str, SplitSummary] = field(default_factory=dict)

    @property
    def extracted(self) -> int:
        return sum(s.extracted for s in self.splits.values())

    def to_json(self) -> dict[str, Any]:
        """`{split: {status: n, ..., "extracted": n}, ..., "extracted": total, "data_dir", "source"}`."""
        return {
            **{name: s.to_json() for name, s in self.splits.items()},
            "extracted": self.extracted,
            "data_dir": str(self.data_dir),
            "source": self.source,
        }


@dataclass(frozen=True)
class ClipOutcome:
    """What examining one clip decided."""

    status: Status
    duration_s: float | None = None
    error: str | None = None
    extracted: bool = False


def sample_dir() -> Path:
    """The embedded sample dataset shipped inside the package (MELD layout, three splits)."""
    return Path(str(resources.files("meldctl.data") / "sample"))


def _notify(progress: Progress | None, event: PrepareEvent) -> None:
    if progress is not None:
        progress(event)


def _from_archive(archive: Path, data_dir: Path, progress: Progress | None) -> Path:
    stem = archive.name.removesuffix(".gz").removesuffix(".tgz").removesuffix(".tar")
    count = itertools.count(1)
    return extract_meld(
        archive,
        data_dir / "raw" / f"{stem}.extracted",
        progress=lambda _name: _notify(progress, PrepareEvent("extract", next(count))),
    )


def _from_url(url: str, data: DataSettings, progress: Progress | None) -> Path:
    name = urllib.parse.urlparse(url).path.rstrip("/").rsplit("/", 1)[-1] or "MELD.Raw.tar.gz"
    result = download(
        url,
        data.data_dir / "raw" / name,
        sha256=data.sha256,
        progress=lambda done, total: _notify(progress, PrepareEvent("download", done, total)),
    )
    return _from_archive(result.path, data.data_dir, progress)


_LABELS_HINT = (
    "set data.labels_url (MELDCTL_DATA__LABELS_URL, or labels_url in meldctl.toml's [data]) to a mirror of the "
    "label CSVs, or put the CSVs in a folder and use --source FOLDER"
)


def _labels_only(data: DataSettings, progress: Progress | None) -> Path:
    """Download the label CSVs of `data.splits` from `data.labels_url`, each checked against its published
    SHA-256; the folder holding them (a text-only MELD layout)."""
    folder = data.data_dir / "raw" / "labels"
    base = data.labels_url.rstrip("/") + "/"
    for split in data.splits:
        download(
            base + CSV_NAMES[split],
            folder / CSV_NAMES[split],
            sha256=LABEL_SHA256[split],
            hint=_LABELS_HINT,
            progress=lambda done, total, split=split: _notify(progress, PrepareEvent("download", done, total, split)),
        )
    return folder


def resolve_source(data: DataSettings, progress: Progress | None = None) -> Path:
    """Turn `data.source` into a folder holding a MELD layout, downloading and extracting as needed.

    Raises:
        DataError: an unknown source, a path that does not exist, or a failed download/extraction.
    """
    source = data.source.strip()
    if source == "sample":
        return sample_dir()
    if source == "default":
        return _from_url(data.mirror or data.url, data, progress)
    if source == "labels":
        return _labels_only(data, progress)
    if source.startswith(("http://", "https://")):
        return _from_url(source, data, progress)
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        return _from_archive(path, data.data_dir, progress)
    raise DataError(
        f"source {source!r} is neither default, sample, labels, a URL, nor an existing file or folder",
        hint="use --source default|sample|labels|URL|PATH (PATH: MELD.Raw.tar.gz, an extracted folder, or the "
        "three CSVs)",
    )


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _attach_clips(source: Path | None, data_dir: Path, split: str, *, copy: bool) -> Path | None:
    """Make `data_dir/clips/{split}` show `source`'s clips: a copy (the sample) or a symlink (a folder).

    When the source changed since the last run, the old clips and their WAVs are dropped first, so audio
    extracted from another source is never reused.
    """
    clips, audio = data_dir / "clips" / split, data_dir / "audio" / split
    stamp = data_dir / "clips" / f".{split}.source"
    identity = f"{'copy' if copy else 'link'}:{source.resolve() if source else None}"
    previous = stamp.read_text(encoding="utf-8") if stamp.is_file() else None
    if previous is None and clips.exists() and not clips.is_symlink():
        # Never delete a folder that prepare did not make.
        raise DataError(f"{clips} exists but was not made by prepare", hint="move it away, or use another --data-dir")
    if previous != identity:
        _remove(clips)
        if previous is not None:
            _remove(audio)
    if source is None:
        write_text_atomic(stamp, identity)
        return None
    if copy:
        clips.mkdir(parents=True, exist_ok=True)
        todo = [c for c in source.glob("*.mp4") if not (clips / c.name).is_file()]
        check_free_space(clips, sum(c.stat().st_size for c in todo), f"the {split} clips")
        for clip in todo:
            with atomic_path(clips / clip.name) as tmp:  # a full disk never leaves a clip that looks complete
                shutil.copyfile(clip, tmp)
    elif not clips.is_symlink():
        clips.parent.mkdir(parents=True, exist_ok=True)
        target = source.resolve()
        # Relative when the clips live inside the data folder, so the folder can be moved or uploaded whole.
        inside = target.is_relative_to(data_dir.resolve())
        clips.symlink_to(os.path.relpath(target, clips.parent.resolve()) if inside else target)
    write_text_atomic(stamp, identity)
    return clips


def _scan_clips(clips: Path | None) -> dict[str, Path]:
    """`{file name: path}` of the mp4 files in a clip folder (hidden AppleDouble `._*` files skipped)."""
    if clips is None:
        return {}
    return {p.name: p for p in sorted(clips.iterdir()) if p.suffix == ".mp4" and not p.name.startswith(".")}


def examine_clip(
    clip: Path, wav: Path, *, max_seconds: float, timeout_s: float, previous: ManifestRow | None = None
) -> ClipOutcome:
    """Decide one clip's status and extract its audio when it is usable.

    A clip that a previous run found `ok` and whose WAV exists is trusted without probing it again, which
    keeps a rerun over 13,000 clips fast.
    """
    if previous is not None and previous.status == "ok" and wav.is_file():
        if previous.duration_s is None or previous.duration_s <= max_seconds:
            return ClipOutcome("ok", previous.duration_s)
    try:
        info = probe_clip(clip)
    except MediaError as exc:
        return ClipOutcome("corrupt", error=str(exc).replace(f"{clip}: ", ""))
    if info.duration_s is not None and info.duration_s > max_seconds:
        error = f"clip lasts {info.duration_s:.1f} s, over data.max_clip_seconds = {max_seconds:g}"
        return ClipOutcome("too_long", info.duration_s, error)
    if not info.has_audio:
        return ClipOutcome("no_audio", info.duration_s, "clip has no audio stream")
    if wav.is_file():
        return ClipOutcome("ok", info.duration_s)
    try:
        extract_audio(clip, wav, timeout_s=timeout_s)
    except MediaError as exc:
        return ClipOutcome("corrupt", info.duration_s, str(exc).replace(f"{clip.absolute()}: ", ""))
    return ClipOutcome("ok", info.duration_s, extracted=True)


_FROM_LABEL = tuple("dialogue_id utterance_id text speaker emotion sentiment season episode start_s end_s".split())
"""The fields a manifest row takes unchanged from its label CSV row."""


def _row(split: str, utt: LabelRow, clip: str | None, audio: str | None, outcome: ClipOutcome) -> ManifestRow:
    return ManifestRow(
        split=split,
        clip=clip,
        audio=audio if outcome.status == "ok" else None,
        duration_s=round(outcome.duration_s, 3) if outcome.duration_s is not None else None,
        status=outcome.status,
        error=outcome.error,
        note="zero-length span in the label CSV (StartTime == EndTime)" if utt.zero_length else None,
        **{name: getattr(utt, name) for name in _FROM_LABEL},
    )


def _previous_rows(data_dir: Path, split: str) -> dict[str, ManifestRow]:
    try:
        return {row.key: row for row in read_manifest(data_dir, split)}
    except DataError:
        return {}  # no manifest yet, or an unreadable one: examine every clip


def _prepare_split(
    split: str, layout: MeldLayout, data: DataSettings, pool: ThreadPoolExecutor, progress: Progress | None, copy: bool
) -> SplitSummary:
    started, data_dir = time.monotonic(), data.data_dir
    utterances = read_labels(layout.csvs[split])
    clips_dir = _attach_clips(layout.clip_dirs[split], data_dir, split, copy=copy)
    files = _scan_clips(clips_dir)
    audio_dir = data_dir / "audio" / split
    remove_stale_temporaries(audio_dir)  # a run killed mid-extraction leaves `.name.wav.*.tmp`
    previous = _previous_rows(data_dir, split)
    outcomes: dict[str, ClipOutcome] = {}
    futures: dict[Future[ClipOutcome], str] = {}
    for utt in utterances:
        clip = files.get(f"{utt.key}.mp4")
        if clip is None:
            outcomes[utt.key] = ClipOutcome("missing", error="no clip" if clips_dir is None else "clip file missing")
            continue
        future = pool.submit(
            examine_clip,
            clip,
            audio_dir / f"{utt.key}.wav",
            max_seconds=data.max_clip_seconds,
            timeout_s=data.ffmpeg_timeout_s,
            previous=previous.get(utt.key),
        )
        futures[future] = utt.key
    _notify(progress, PrepareEvent("clips", 0, len(futures), split))
    for done, future in enumerate(as_completed(futures), start=1):
        try:
            outcomes[futures[future]] = future.result()
        except DiskFullError as exc:
            left = sum(1 for f in futures if not f.done()) + 1
            raise disk_full(audio_dir, f"the audio of {left} more {split} clips", left * _WAV_BYTES_PER_CLIP) from exc
        _notify(progress, PrepareEvent("clips", done, len(futures), split))
    rows = [
        _row(
            split,
            utt,
            f"clips/{split}/{utt.key}.mp4" if f"{utt.key}.mp4" in files else None,
            f"audio/{split}/{utt.key}.wav",
            outcomes[utt.key],
        )
        for utt in utterances
    ]
    keys = {utt.key for utt in utterances}
    return SplitSummary(
        split=split,
        counts=count_statuses(rows),
        extracted=sum(o.extracted for o in outcomes.values()),
        no_csv_row=[name for name in files if parse_clip_name(name) not in keys],
        zero_length=[utt.key for utt in utterances if utt.zero_length],
        text_only=clips_dir is None,
        seconds=time.monotonic() - started,
        manifest=write_manifest(data_dir, split, rows),
    )


def prepare(data: DataSettings, *, progress: Progress | None = None) -> PrepareSummary:
    """Build `data.data_dir/manifest/{split}.jsonl` and the WAVs for every split in `data.splits`.

    Args:
        data: The `data` settings section (source, data_dir, splits, workers, limits).
        progress: Called as the download, the extraction and each split's clips advance.

    Returns:
        Per split: utterances by status, WAVs extracted by this run, clips without a label row.

    Raises:
        DataError: the source cannot be fetched or read, or a label CSV is malformed. A bad clip never
            raises: it gets a status in the manifest.
    """
    data = data.model_copy(update={"data_dir": Path(data.data_dir).absolute()})
    data.data_dir.mkdir(parents=True, exist_ok=True)
    root = resolve_source(data, progress)
    layout = find_layout(root, data.splits)
    workers = data.workers or os.cpu_count() or 1
    summary = PrepareSummary(data_dir=data.data_dir, source=data.source)
    copy = data.source.strip() == "sample"  # the sample lives in the package: copy it, never link into it
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="meldctl-prepare") as pool:
        try:
            for split in data.splits:
                summary.splits[split] = _prepare_split(split, layout, data, pool, progress, copy)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # an interrupt stops queued clips, not half-written files
            raise
    return summary
