"""`POST /analyze`: a whole video (and its subtitles) -> the timeline `meldctl analyze --json` prints.

The video arrives as a multipart upload, as base64 inside JSON, or as an S3 URI under an allowed prefix, and
is always written to the request's folder as it arrives, never held whole in memory. The analysis is
`meldctl.analysis.pipeline.analyze` with the server's already loaded `Predictor`: its forwards go through the
batcher's one model thread, beside the clips of other requests, and its progress goes to the server log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from meldctl.protocol import SEGMENT, VIDEO_B64, VIDEO_PATH, VIDEO_S3
from meldctl.serving.forms import FieldSpec, Form, FormSpec, RequestError, over_limit, upload_name, upload_path
from meldctl.serving.jsonbody import Base64Target, Decoded
from meldctl.serving.s3access import S3Access
from meldctl.serving.uploads import b64_length, validated

SUBTITLES_LIMIT = 16 * 2**20
"""The largest subtitle file accepted: a feature film's SRT is about 100 KB."""
VIDEO_KEYS = (VIDEO_S3, VIDEO_B64, VIDEO_PATH)
"""A JSON body with any of these asks for an analysis (how `/invocations` tells it from a clip)."""
SEGMENTS = ("auto", "subtitles", "asr", "vad")
VIDEO, SUBTITLES = "video", "subtitles"
"""The multipart form's files of a whole video (its JSON names are in `meldctl.protocol`)."""
log = logging.getLogger("meldctl.serve")


class AnalyzeRequest(BaseModel):
    """The JSON form of `/analyze`: the video as an S3 URI or base64, optional subtitles, the segmentation."""

    model_config = ConfigDict(extra="forbid")

    video_s3: str | None = Field(None, description="s3://bucket/key of the video, fetched by the server.")
    video_b64: str | None = Field(None, description="The video's bytes in base64 (small videos).")
    video_path: str | None = Field(None, description="The seed endpoint's name for video_s3 (an s3:// URI).")
    video_name: str | None = Field(None, description="What the answer calls the video (default: video, or the URI).")
    subtitles_s3: str | None = Field(None, description="s3://bucket/key of an SRT, WebVTT or ASS file.")
    subtitles_text: str | None = Field(None, description="The subtitles themselves (SRT, WebVTT or ASS text).")
    segment: Literal["auto", "subtitles", "asr", "vad"] = Field(
        "auto", description="Utterances from subtitles, speech recognition or voice activity; auto picks."
    )


@dataclass(frozen=True)
class VideoLimits:
    """What `/analyze` accepts: the video's bytes and minutes, the subtitles' bytes."""

    video_bytes: int
    max_minutes: float
    subtitles_bytes: int = SUBTITLES_LIMIT

    @property
    def video_over(self) -> str:
        return over_limit("the video is", self.video_bytes, " (--max-video-mb)")

    @property
    def subtitles_over(self) -> str:
        return f"the subtitles are over the server's limit of {self.subtitles_bytes // 2**20} MB"

    @property
    def form(self) -> FormSpec:
        """The form of `/analyze`: a video, its subtitles, the segmentation."""
        return FormSpec(
            {
                VIDEO: FieldSpec(file=True, limit=self.video_bytes, over=self.video_over),
                SUBTITLES: FieldSpec(file=True, limit=self.subtitles_bytes, over=self.subtitles_over),
                SEGMENT: FieldSpec(file=False, limit=64, over="segment is one of auto, subtitles, asr, vad"),
            },
            self.video_over,
        )

    @property
    def json_bytes(self) -> int:
        return b64_length(self.video_bytes) + 6 * self.subtitles_bytes + 2**20

    @property
    def base64(self) -> dict[str, Base64Target]:
        return {VIDEO_B64: Base64Target(Path(), self.video_bytes, self.video_over)}


@dataclass
class VideoRequest:
    """A video to analyse, in the request's folder.

    Attributes:
        video: The temporary file holding it.
        name: What the answer calls it: the uploaded name, `video_name`, or the S3 URI.
        subtitles: The temporary subtitle file, or None.
        subtitles_name: What the answer calls that.
        segment: auto, subtitles, asr or vad.
    """

    video: Path
    name: str
    subtitles: Path | None = None
    subtitles_name: str | None = None
    segment: str = "auto"

    def renames(self) -> dict[str, str]:
        """Each temporary file's path -> what the client calls it."""
        out = {str(self.video): self.name}
        if self.subtitles is not None and self.subtitles_name is not None:
            out[str(self.subtitles)] = self.subtitles_name
        return out


def asks_for_analysis(fields: dict[str, Any]) -> bool:
    """Whether a JSON body names a video (and so `/invocations` should analyse it)."""
    return any(key in fields for key in VIDEO_KEYS)


def video_from_form(form: Form) -> VideoRequest:
    """The analysis a multipart form asks for.

    Raises:
        RequestError: no video, an unknown segmentation, or subtitles with asr/vad.
    """
    video = form.files.get(VIDEO)
    if video is None:
        raise RequestError(400, "send the video as a file field named video (curl -F video=@VIDEO)")
    subtitles = form.files.get(SUBTITLES)
    segment = _segment(form.texts.get(SEGMENT) or "auto", subtitles is not None)
    return VideoRequest(
        video.path, video.name, subtitles.path if subtitles else None, subtitles.name if subtitles else None, segment
    )


async def video_from_json(
    fields: dict[str, Any], decoded: dict[str, Decoded], folder: Path, limits: VideoLimits, s3: S3Access
) -> VideoRequest:
    """The analysis a JSON object asks for; an S3 video or subtitles are fetched into `folder`.

    Raises:
        RequestError: 400 for no video or two, 403 for S3 outside the allowed prefixes, 413 over the limits,
            422 for fields of the wrong type or unknown fields.
    """
    request: AnalyzeRequest = validated(AnalyzeRequest, fields)
    given = [key for key in VIDEO_KEYS if getattr(request, key) is not None]
    if len(given) != 1:
        raise RequestError(400, "give one of video_s3, video_b64 or video_path" + (", not several" if given else ""))
    if request.subtitles_s3 is not None and request.subtitles_text is not None:
        raise RequestError(400, "give subtitles_s3 or subtitles_text, not both")
    segment = _segment(request.segment, request.subtitles_s3 is not None or request.subtitles_text is not None)
    if VIDEO_B64 in decoded:
        name = upload_name(request.video_name, default=VIDEO)
        video = decoded[VIDEO_B64].path.rename(upload_path(folder, VIDEO, name))
    else:
        uri = request.video_s3 or request.video_path or ""
        name = upload_name(request.video_name, default=VIDEO) if request.video_name else uri
        video = upload_path(folder, VIDEO, uri)
        await s3.fetch_to(uri, video, limits.video_bytes, given[0], limits.video_over)
    subtitles, subtitles_name = None, None
    if request.subtitles_text is not None:
        if len(request.subtitles_text.encode("utf-8")) > limits.subtitles_bytes:
            raise RequestError(413, limits.subtitles_over)
        subtitles, subtitles_name = folder / "subtitles.txt", "subtitles_text"
        subtitles.write_text(request.subtitles_text, encoding="utf-8")
    elif request.subtitles_s3 is not None:
        subtitles, subtitles_name = upload_path(folder, SUBTITLES, request.subtitles_s3), request.subtitles_s3
        await s3.fetch_to(
            request.subtitles_s3, subtitles, limits.subtitles_bytes, "subtitles_s3", limits.subtitles_over
        )
    return VideoRequest(video, name, subtitles, subtitles_name, segment)


def _segment(value: str, has_subtitles: bool) -> str:
    if value not in SEGMENTS:
        raise RequestError(422, f"segment {value[:20]!r} is not one of {', '.join(SEGMENTS)}")
    if has_subtitles and value in ("asr", "vad"):
        raise RequestError(400, f"subtitles cannot be used with segment {value}")
    return value


class Cancelled(Exception):
    """The request that asked for this analysis is gone (its time limit passed)."""


@dataclass
class _SharedModel:
    """The server's `Predictor` as the analysis sees it: every forward runs on the batcher's model thread."""

    predictor: Any
    call: Callable[..., Any]
    """Runs a function on the model thread and returns its result (`Batcher.call_blocking`)."""

    def run(self, inputs: list[Any]) -> list[Any]:
        return self.call(self.predictor.run, inputs)

    def represent(self, inputs: list[Any]) -> Any:
        return self.call(self.predictor.represent, inputs)

    def classify_conversation(self, *args: Any, **kwargs: Any) -> list[Any]:
        return self.call(self.predictor.classify_conversation, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.predictor, name)


def analyze_video(
    request: VideoRequest,
    predictor: Any,
    call: Callable[..., Any],
    limits: VideoLimits,
    cancelled: threading.Event,
) -> dict[str, Any]:
    """Analyse the video as `meldctl analyze --json` would; its timeline JSON, naming files as the client did.

    Blocking: the server calls it in a worker thread. Progress goes to the server log.

    Raises:
        RequestError: 422 for a video over `--max-video-minutes`.
        MeldError: a video or subtitles the analysis cannot use.
        Cancelled: `cancelled` was set.
    """
    from meldctl.analysis.pipeline import analyze
    from meldctl.analysis.timeline import to_json
    from meldctl.media.stream import probe_video

    minutes = probe_video(request.video).duration_s / 60
    if minutes > limits.max_minutes:
        raise RequestError(
            422,
            f"the video is {minutes:.1f} minutes long, over the server's limit of {limits.max_minutes:g} minutes "
            "(--max-video-minutes); send long videos to an async endpoint",
        )
    log.info("analyze %s: %.1f minutes of video, segment %s", request.name, minutes, request.segment)
    model = _SharedModel(predictor, call)
    timeline = analyze(
        request.video,
        lambda: model,  # type: ignore[arg-type,return-value]
        segment=request.segment,
        subtitles=request.subtitles,
        progress=_LogProgress(request.name, cancelled),
    )
    log.info("analyze %s: %d utterances in %.1f s", request.name, len(timeline.utterances), timeline.seconds["total"])
    return scrub(to_json(timeline), request.renames())


def scrub(value: Any, renames: dict[str, str]) -> Any:
    """`value` (JSON) with every temporary path replaced by what the client calls that file."""
    if isinstance(value, str):
        for path, name in renames.items():
            value = value.replace(path, name)
        return value
    if isinstance(value, list):
        return [scrub(item, renames) for item in value]
    if isinstance(value, dict):
        return {key: scrub(item, renames) for key, item in value.items()}
    return value


class _LogProgress:
    """`progress(stage, done, total)` as a plain server-log line at every tenth of a stage; stops a cancelled one."""

    def __init__(self, name: str, cancelled: threading.Event) -> None:
        self.name, self.cancelled = name, cancelled
        self._next: dict[str, float] = {}
        self._started: dict[str, float] = {}

    def __call__(self, stage: str, done: float, total: float) -> None:
        if self.cancelled.is_set():
            raise Cancelled(self.name)
        started = self._started.setdefault(stage, time.perf_counter())
        if total <= 0 or done < self._next.get(stage, total / 10) and done < total:
            return
        self._next[stage] = done + total / 10
        elapsed = time.perf_counter() - started
        unit = "s of audio" if stage == "segment" else "utterances"
        log.info(
            "analyze %s: %s %.0f/%.0f %s (%.0f%%, %.1f s)",
            self.name,
            "finding utterances" if stage == "segment" else "classifying",
            done,
            total,
            unit,
            100 * done / total,
            elapsed,
        )
