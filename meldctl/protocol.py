"""The request wire format of `meldctl serve` (and so of an endpoint's `/invocations`), written once.

The server (`serving/uploads.py`) reads these fields and the client (`remote/endpoint_invoke.py`) writes them,
so both import the names and bodies from here. This module sits at the bottom of the package: it imports
nothing of meldctl's.

Two requests:

- a clip: a multipart form with the file `clip` and the field `text`, or JSON `{"text", "clip_b64" |
  "clip_s3", "clip_name"}` (S3 for clips over the real-time payload limit);
- a whole video (`POST /analyze`, and `/invocations` for a body naming a video): JSON `{"video_b64" |
  "video_s3" | "video_path", "subtitles_text" | "subtitles_s3", "segment"}`; `video_path` is the seed's
  alias of `video_s3`.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

CLIP = "clip"
TEXT = "text"
FORM_FIELDS = (CLIP, TEXT)
"""The multipart form's fields: the clip (a file) and the utterance text."""

CLIP_B64 = "clip_b64"
CLIP_S3 = "clip_s3"
CLIP_NAME = "clip_name"
CLIP_JSON_FIELDS = (TEXT, CLIP_B64, CLIP_S3, CLIP_NAME)
"""The JSON form of a clip request."""

VIDEO_B64 = "video_b64"
VIDEO_S3 = "video_s3"
VIDEO_PATH = "video_path"
SUBTITLES_TEXT = "subtitles_text"
SUBTITLES_S3 = "subtitles_s3"
SEGMENT = "segment"
VIDEO_FIELDS = (VIDEO_B64, VIDEO_S3, VIDEO_PATH)
"""A JSON body carrying any of these is a whole video to analyse (`/invocations` routes it to `/analyze`)."""
ANALYZE_JSON_FIELDS = (*VIDEO_FIELDS, SUBTITLES_TEXT, SUBTITLES_S3, SEGMENT)

JSON = "application/json"


def multipart_body(fields: dict[str, str], files: dict[str, Path] | None = None) -> tuple[str, bytes]:
    """A multipart/form-data body: text fields, then files (read whole). Pure apart from reading the files.

    Returns:
        The Content-Type (with its boundary) and the body.
    """
    boundary = f"meldctl-{uuid.uuid4().hex}"
    parts = [f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value.encode() for name, value
             in fields.items()]  # fmt: skip
    for name, path in (files or {}).items():
        filename = json.dumps(path.name)  # a quoted string with " and \ escaped, as browsers send it
        head = f'Content-Disposition: form-data; name="{name}"; filename={filename}\r\n'
        parts.append(head.encode() + b"Content-Type: application/octet-stream\r\n\r\n" + path.read_bytes())
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    return f"multipart/form-data; boundary={boundary}", body + b"--" + boundary.encode() + b"--\r\n"


def clip_form(clip: Path | None, text: str | None) -> tuple[str, bytes]:
    """The multipart body of one clip and its text (either may be left out)."""
    return multipart_body({TEXT: text} if text is not None else {}, {CLIP: clip} if clip is not None else None)


def clip_s3_json(uri: str, text: str | None, name: str | None = None) -> tuple[str, bytes]:
    """The JSON body naming a clip in S3, which the server fetches."""
    payload = {TEXT: text, CLIP_S3: uri, CLIP_NAME: name}
    return JSON, json.dumps({key: value for key, value in payload.items() if value is not None}).encode()


def analyze_json(
    *,
    video: Path | None = None,
    video_s3: str | None = None,
    subtitles_text: str | None = None,
    segment: str | None = None,
) -> tuple[str, bytes]:
    """The JSON body of a whole video: its bytes in base64 (`video`) or its S3 URI, optional subtitles text.

    Raises:
        ValueError: not exactly one of `video` and `video_s3`.
    """
    if (video is None) == (video_s3 is None):
        raise ValueError("give the video's bytes or its S3 URI, one of them")
    payload: dict[str, str] = {}
    if video is not None:
        payload[VIDEO_B64] = base64.b64encode(video.read_bytes()).decode("ascii")
    else:
        payload[VIDEO_S3] = str(video_s3)
    if subtitles_text is not None:
        payload[SUBTITLES_TEXT] = subtitles_text
    if segment is not None:
        payload[SEGMENT] = segment
    return JSON, json.dumps(payload).encode()
