"""Which files are videos and which are a video's subtitles, and where a video's timeline goes: the naming rules
that `meldctl analyze FOLDER` and the Processing job of `meldctl analyze --remote` (which lists S3 keys, not files)
share. Pure functions over posix paths."""

from __future__ import annotations

from pathlib import PurePosixPath

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"})
SUBTITLE_SUFFIXES = (".srt", ".vtt", ".ass", ".ssa")
"""In the order a video's own subtitles are looked for (`ep1.srt` before `ep1.vtt`)."""
REPORTS = "_meldctl"
"""The folder of an analysis output that holds the reports (`_meldctl/JOB/HOST.jsonl`); never a video's."""
TIMELINE = "timeline.json"
"""Written last of a video's four files: where it exists, the video is done."""


def is_video(relative: str) -> bool:
    """A video by its suffix, outside the reports folder."""
    path = PurePosixPath(relative)
    return path.suffix.lower() in VIDEO_SUFFIXES and path.parts[0] != REPORTS


def timeline_key(video: str) -> str:
    """`show/ep1.mp4` -> `show/ep1`: the folder of the video's timeline.{json,csv,srt,png} in the output."""
    return str(PurePosixPath(video).with_suffix(""))


def is_subtitle_of(video: str, candidate: str) -> bool:
    """Whether `candidate` is one of `video`'s subtitle files: beside it, its stem, a subtitle suffix
    (`ep1.srt`, or a tagged `ep1.en.srt`)."""
    v, c = PurePosixPath(video), PurePosixPath(candidate)
    return (
        c.parent == v.parent
        and c.suffix.lower() in SUBTITLE_SUFFIXES
        and (c.stem == v.stem or c.name.startswith(f"{v.stem}."))
    )
