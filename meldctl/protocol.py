"""The request wire format of `meldctl serve` (and so of an endpoint's `/invocations`), written once.

The server (`serving/uploads.py`) reads these fields and the client (`remote/endpoint_invoke.py`) writes them,
so both import the names and bodies from here. This module sits at the bottom of the package: it imports
nothing of meldctl's.

Two requests:

- a clip: a multipart form with the file `clip` and the field `text`, or JSON `{"text", "clip_b64" |
  "clip_s3", "clip_name"}` (S3 for clips over the real-time payload limit); either may add `context` (what was
  said before, oldest first: a list of `{"speaker", "text"}`, in a form as that list's JSON) and `no_context`;
- a conversation: JSON `{"dialogue": [{"text", "speaker", "dialogue", "clip_b64" | "clip_s3", "clip_name"},
  ...], "no_context"}`, one row per utterance in order (as `meldctl predict --dialogue FILE` reads them);
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
CONTEXT = "context"
NO_CONTEXT = "no_context"
FORM_FIELDS = (CLIP, TEXT, CONTEXT, NO_CONTEXT)
"""The multipart form's fields: the clip (a file), the utterance text, its context (a JSON list), `true` to
classify it alone."""
SPEAKER = "speaker"

CLIP_B64 = "clip_b64"
CLIP_S3 = "clip_s3"
CLIP_NAME = "clip_name"
DIALOGUE = "dialogue"
CLIP_JSON_FIELDS = (TEXT, CLIP_B64, CLIP_S3, CLIP_NAME, CONTEXT, NO_CONTEXT, DIALOGUE)
"""The JSON form of a clip request (or, with `dialogue`, of a conversation)."""
TURN_FIELDS = (SPEAKER, TEXT)
"""A context line."""
ROW_FIELDS = (TEXT, SPEAKER, DIALOGUE, CLIP_B64, CLIP_S3, CLIP_NAME)
"""A dialogue row."""
MAX_ROWS = 256
"""The most rows of a dialogue, or lines of context, in one request."""

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


Context = list[tuple[str | None, str]]
"""Lines said before an utterance, oldest first: (speaker or None, text)."""


def context_json(context: Context) -> list[dict[str, str]]:
    """Context lines as the `context` field's list of `{"speaker", "text"}`."""
    return [{SPEAKER: speaker, TEXT: text} if speaker else {TEXT: text} for speaker, text in context]


def clip_form(
    clip: Path | None, text: str | None, *, context: Context | None = None, no_context: bool = False
) -> tuple[str, bytes]:
    """The multipart body of one clip and its text (either may be left out), after its context lines."""
    fields = {TEXT: text} if text is not None else {}
    if context:
        fields[CONTEXT] = json.dumps(context_json(context))
    if no_context:
        fields[NO_CONTEXT] = "true"
    return multipart_body(fields, {CLIP: clip} if clip is not None else None)


def dialogue_json(rows: list[dict[str, object]], *, no_context: bool = False) -> tuple[str, bytes]:
    """The JSON body of a conversation: `rows` of `{"text", "speaker", "dialogue", "clip"}` where `clip` is a
    local file sent in base64 or an `s3://` URI the server fetches (None or absent: text only)."""
    out = []
    for row in rows:
        item = {key: row[key] for key in (TEXT, SPEAKER, DIALOGUE) if row.get(key) is not None}
        clip = row.get(CLIP)
        if clip is not None and str(clip).startswith("s3://"):
            item[CLIP_S3] = str(clip)
        elif clip is not None:
            item[CLIP_B64] = base64.b64encode(Path(str(clip)).read_bytes()).decode("ascii")
            item[CLIP_NAME] = Path(str(clip)).name
        out.append(item)
    payload: dict[str, object] = {DIALOGUE: out}
    if no_context:
        payload[NO_CONTEXT] = True
    return JSON, json.dumps(payload).encode()


def clip_s3_json(
    uri: str, text: str | None, name: str | None = None, *, context: Context | None = None, no_context: bool = False
) -> tuple[str, bytes]:
    """The JSON body naming a clip in S3, which the server fetches."""
    payload: dict[str, object] = {TEXT: text, CLIP_S3: uri, CLIP_NAME: name}
    payload[CONTEXT] = context_json(context) if context else None
    payload[NO_CONTEXT] = True if no_context else None
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
