"""Every video of a folder through one loaded model: `meldctl analyze FOLDER`, and so each instance of the
SageMaker Processing job that `meldctl analyze s3://... --remote` creates (its share of the videos).

What the container sees (SageMaker's Processing contract, `docs/analyze.md`): this instance's share of the videos
under the `videos` input's LocalPath (sharded by S3 key), every subtitle file under the `subtitles` input's
(replicated), the checkpoint under `model`'s; it writes `OUT/<video without extension>/timeline.*` under the output's
LocalPath, which SageMaker uploads as it goes. `/opt/ml/config/resourceconfig.json` names this host (`algo-2`) and
`/opt/ml/config/processingjobconfig.json` the job: together they name this instance's report,
`OUT/_meldctl/JOB/HOST.jsonl`, one line per video (done, skipped, failed and why). This module is the only one
below `cli/` that reads the Processing contract; `SM_ML_ROOT` moves `/opt/ml` (tests run instances in a folder).
"""

from __future__ import annotations

import json
import os
import socket
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meldctl.analysis.outputs import write_outputs
from meldctl.analysis.pipeline import analyze
from meldctl.analysis.subtitles import find_subtitles
from meldctl.errors import CheckpointError, DataError, MeldError
from meldctl.io import atomic_path, write_text_atomic
from meldctl.media.names import REPORTS, TIMELINE, is_video, timeline_key

if TYPE_CHECKING:
    from meldctl.analysis.pipeline import Progress
    from meldctl.inference import Predictor

ML_ROOT = Path("/opt/ml")
LOCAL_JOB = "local"


@dataclass(frozen=True)
class Instance:
    """Which job and host this process runs as (outside SageMaker: `local` and the machine's name)."""

    job: str
    host: str


@dataclass
class VideoOutcome:
    """One video of a share: done (its timeline written), skipped (one was already there) or failed (why)."""

    video: str
    status: str
    utterances: int | None = None
    seconds: float | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


def this_instance(environ: Mapping[str, str] | None = None) -> Instance:
    """The job and host from SageMaker's config files; `local` and the hostname where there are none."""
    env = os.environ if environ is None else environ
    config = Path(env.get("SM_ML_ROOT") or ML_ROOT) / "config"
    resources = _json_file(config / "resourceconfig.json")
    job = _json_file(config / "processingjobconfig.json")
    return Instance(
        job=str(job.get("ProcessingJobName") or LOCAL_JOB), host=str(resources.get("current_host") or _hostname())
    )


def list_videos(folder: Path) -> list[str]:
    """The videos under `folder` (recursively, by suffix), as sorted relative posix paths.

    Raises:
        DataError: `folder` is not a folder.
    """
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder of videos")
    found = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return sorted(v for v in found if is_video(v))


def timeline_folder(out_dir: Path, video: str) -> Path:
    """`OUT/<video without its extension>/`: where a video's timeline.{json,csv,srt,png} go."""
    return out_dir / timeline_key(video)


def report_path(out_dir: Path, instance: Instance) -> Path:
    """This instance's report: `OUT/_meldctl/JOB/HOST.jsonl`."""
    return out_dir / REPORTS / instance.job / f"{instance.host}.jsonl"


def find_checkpoint(path: Path, scratch: Path) -> Path:
    """The checkpoint at `path`: a file, or in a folder (a Processing input) `best.pt`, its only `.pt`, or
    `best.pt` inside a training job's `model.tar.gz` (read without unpacking anything else, so no member can land
    outside `scratch`).

    Raises:
        CheckpointError: nothing that holds a checkpoint.
    """
    if path.is_file() and not path.name.endswith(".tar.gz"):
        return path
    archives = [path] if path.is_file() else sorted(path.glob("*.tar.gz")) if path.is_dir() else []
    if path.is_dir():
        weights = sorted(path.glob("*.pt"))
        chosen = [p for p in weights if p.name == "best.pt"] or (weights if len(weights) == 1 else [])
        if chosen:
            return chosen[0]
    for archive in archives:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                member = next(m for m in tar.getmembers() if m.isfile() and m.name.removeprefix("./") == "best.pt")
                source = tar.extractfile(member)
                target = scratch / "best.pt"
                with atomic_path(target) as tmp, open(tmp, "wb") as out:
                    while block := source.read(1 << 20):  # type: ignore[union-attr]  # a file member has a reader
                        out.write(block)
                return target
        except (tarfile.TarError, OSError, StopIteration):
            continue
    raise CheckpointError(
        f"no checkpoint in {path}", hint="give best.pt, a folder holding it, or a training job's model.tar.gz"
    )


def analyze_share(
    videos_dir: Path,
    out_dir: Path,
    load_predictor: Callable[[], Predictor],
    *,
    subtitles_dir: Path | None = None,
    segment: str = "auto",
    asr_model: str | None = None,
    batch_size: int = 8,
    by_speaker: bool = False,
    context: str = "full",
    instance: Instance | None = None,
    on_outcome: Callable[[VideoOutcome, int, int], None] | None = None,
    progress: Progress | None = None,
) -> list[VideoOutcome]:
    """Analyse every video under `videos_dir` that has no timeline in `out_dir` yet, with one model load.

    A video that fails is a `failed` line of the report and the next one goes on; the report
    (`report_path(out_dir, instance)`) is rewritten atomically after each video, so it is complete up to the
    video in progress whenever the job stops.

    Args:
        videos_dir: This instance's videos (any depth).
        out_dir: Where `<video without extension>/timeline.*` and the report go.
        load_predictor: Loads the checkpoint; called once, and only when a video needs it. Its errors end the
            share (a bad checkpoint fails every video alike).
        subtitles_dir: Where subtitles sit at the videos' relative paths (default: beside the videos).
        segment: "auto", "subtitles", "asr" or "vad".
        asr_model: faster-whisper model for ASR (default: the bundled tiny.en).
        batch_size: Utterances per forward.
        by_speaker: One panel per speaker in each timeline.png.
        context: Dialogue context: "full", "causal" or "none" (`meldctl.analysis.pipeline.CONTEXTS`).
        instance: Names the report (default: `this_instance()`).
        on_outcome: Called after each video with its outcome, its 1-based position and the number of videos.
        progress: The analysis progress of the video in hand.

    Raises:
        DataError: `videos_dir` is not a folder.
        MeldError: the checkpoint cannot be loaded.
    """
    videos = list_videos(videos_dir)
    report = report_path(out_dir, instance or this_instance())
    outcomes: list[VideoOutcome] = []
    predictor: Predictor | None = None
    claimed: dict[Path, str] = {}
    for position, video in enumerate(videos, 1):
        folder = timeline_folder(out_dir, video)
        if folder in claimed:
            outcome = VideoOutcome(video, "failed", error=f"same output folder as {claimed[folder]}: rename one")
        elif (folder / TIMELINE).is_file():
            outcome = VideoOutcome(video, "skipped")
        else:
            predictor = predictor or load_predictor()
            outcome = _analyze_one(
                videos_dir / video, video, folder, predictor,
                subtitles=(subtitles_dir or videos_dir) / video, segment=segment, asr_model=asr_model,
                batch_size=batch_size, by_speaker=by_speaker, context=context, progress=progress,
            )  # fmt: skip
        claimed.setdefault(folder, video)
        outcomes.append(outcome)
        write_text_atomic(report, "".join(json.dumps(o.as_json()) + "\n" for o in outcomes))
        if on_outcome is not None:
            on_outcome(outcome, position, len(videos))
    if not videos:
        write_text_atomic(report, "")
    return outcomes


def _analyze_one(
    path: Path,
    video: str,
    folder: Path,
    predictor: Predictor,
    *,
    subtitles: Path,
    segment: str,
    asr_model: str | None,
    batch_size: int,
    by_speaker: bool,
    context: str,
    progress: Progress | None,
) -> VideoOutcome:
    try:
        found = find_subtitles(subtitles) if segment in ("auto", "subtitles") else None
        timeline = analyze(
            path, predictor, segment=segment, subtitles=found, asr_model=asr_model, batch_size=batch_size,
            context=context, progress=progress,
        )  # fmt: skip
        write_outputs(timeline, folder, by_speaker=by_speaker)
    except MeldError as exc:
        return VideoOutcome(video, "failed", error=exc.message + (f" ({exc.hint})" if exc.hint else ""))
    except Exception as exc:  # noqa: BLE001 - one video's bug or odd file must not stop the others
        return VideoOutcome(video, "failed", error=f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
    return VideoOutcome(video, "done", utterances=len(timeline.utterances), seconds=timeline.seconds["total"])


def _json_file(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _hostname() -> str:
    return socket.gethostname().split(".")[0] or "host"
