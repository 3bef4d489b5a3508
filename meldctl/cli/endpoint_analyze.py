"""`meldctl endpoint invoke NAME VIDEO --analyze`: a whole video's timeline from an endpoint, as four files.

The endpoint's container answers the timeline JSON exactly as `meldctl analyze --json` prints it; here it
becomes a `Timeline` again and goes through the analysis package's own writers, so the files (JSON, CSV, SRT,
and the PNG rendered here) are the ones `meldctl analyze` writes for the same answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from meldctl.cli.common import console, print_json, resolve_settings
from meldctl.errors import MeldError


def invoke_analyze(
    name: str,
    video: Path,
    *,
    subtitles: Path | None,
    segment: str,
    out: Path | None,
    bucket: str | None,
    region: str | None,
    as_json: bool,
) -> None:
    """Send the video (and its subtitles) to the endpoint, wait for the timeline, write the four files."""
    from meldctl.analysis.outputs import check_output_folder, write_outputs
    from meldctl.analysis.subtitles import find_subtitles
    from meldctl.analysis.timeline import summary
    from meldctl.cli.analyze import _table, default_out_dir
    from meldctl.remote import aws
    from meldctl.remote.endpoint_invoke import analyze

    out_dir = out or default_out_dir(video)
    check_output_folder(out_dir)  # before the upload and the endpoint's work, not after
    subtitles = subtitles or (find_subtitles(video) if segment in ("auto", "subtitles") else None)
    subtitles_text = read_subtitles(subtitles) if subtitles is not None else None
    remote = resolve_settings(remote={"bucket": bucket, "region": region}).remote
    with _Waiting(name, video) as waiting:
        answer = analyze(
            aws.session(remote.region),
            name,
            video,
            subtitles_text=subtitles_text,
            segment=None if segment == "auto" else segment,
            bucket=remote.bucket,
            prefix=remote.prefix,
            on_wait=waiting,
        )
    timeline = timeline_from_json(answer, name)
    files = write_outputs(timeline, out_dir)
    for warning in timeline.warnings:
        console.print(f"[yellow]Warning:[/] {escape(warning)}", soft_wrap=True)
    if as_json:
        print_json(answer)
    else:
        console.print(_table(summary(timeline), timeline))
    console.print(f"Wrote {', '.join(escape(str(p)) for p in files.values())}", soft_wrap=True)


def read_subtitles(path: Path) -> str:
    """The subtitle file's text, to send along (UTF-8, or UTF-16 with its byte-order mark).

    Raises:
        typer.BadParameter: not a file, or not text.
    """
    if not path.is_file():
        raise typer.BadParameter(f"{path} is not a file", param_hint="--subtitles")
    data = path.read_bytes()
    encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        raise typer.BadParameter(f"{path} is not UTF-8 or UTF-16 text", param_hint="--subtitles") from None


def timeline_from_json(answer: dict[str, Any], endpoint: str) -> Any:
    """The `Timeline` behind a timeline JSON (`analysis.timeline.to_json`'s inverse), for the writers.

    Raises:
        MeldError: the answer is not a timeline (another route answered, or an older server).
    """
    from meldctl.analysis.segments import Segmentation, Utterance
    from meldctl.analysis.timeline import Timeline
    from meldctl.inference import Prediction

    try:
        rows = answer["utterances"]
        utterances = [
            Utterance(float(row["start"]), float(row["end"]), row.get("text"), row.get("speaker")) for row in rows
        ]
        predictions = [
            Prediction(
                clip=None,
                text=row.get("text"),
                emotion={label: float(p) for label, p in row["emotion"].items()},
                sentiment={label: float(p) for label, p in row["sentiment"].items()},
                warnings=list(row.get("warnings", [])),
                missing=list(row.get("missing", [])),
            )
            for row in rows
        ]
        seg = answer["segmentation"]
        return Timeline(
            video=str(answer["video"]),
            duration=float(answer["duration"]),
            segmentation=Segmentation(seg["method"], seg["source"], utterances),
            model={key: answer[key] for key in ("checkpoint", "modalities", "labels")},
            utterances=utterances,
            predictions=predictions,
            warnings=list(answer.get("warnings", [])),
            seconds=dict(answer.get("seconds", {})),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MeldError(
            f"endpoint {endpoint} answered JSON that is not a timeline (no {exc})",
            hint="deploy a meldctl image that has POST /analyze (meldctl 0.2 or later)",
        ) from None


class _Waiting:
    """A status line while the endpoint works: what it analyses and for how long (async endpoints)."""

    def __init__(self, endpoint: str, video: Path) -> None:
        self.what = f"endpoint {endpoint}: analysing {video.name}"
        self.status = console.status(escape(self.what))

    def __enter__(self) -> _Waiting:
        self.status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.status.stop()

    def __call__(self, elapsed: float) -> None:
        minutes, seconds = divmod(int(elapsed), 60)
        self.status.update(escape(f"{self.what} ({minutes}:{seconds:02d})"))
