"""The request wire format: what the client writes (`meldctl.protocol`) is what the server reads."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from meldctl import protocol
from meldctl.serving.uploads import InvocationRequest, Limits, S3Access, read_json, read_multipart

LIMITS = Limits(clip_bytes=1 << 20)


async def _stream(body: bytes):  # noqa: ANN202
    for start in range(0, len(body), 7):
        yield body[start : start + 7]


def test_the_servers_json_model_has_the_protocols_fields() -> None:
    from meldctl.serving.uploads import ContextTurn, DialogueRowBody

    assert tuple(InvocationRequest.model_fields) == protocol.CLIP_JSON_FIELDS
    assert tuple(ContextTurn.model_fields) == protocol.TURN_FIELDS
    assert tuple(DialogueRowBody.model_fields) == protocol.ROW_FIELDS
    assert tuple(LIMITS.form.fields) == protocol.FORM_FIELDS


def test_a_clip_form_reads_back_on_the_server(tmp_path: Path) -> None:
    clip = tmp_path / 'a "quoted".mp4'
    clip.write_bytes(b"\x00video\r\n--")
    kind, body = protocol.clip_form(clip, "Oh my God! ☕")
    boundary = kind.split("boundary=")[1]
    folder = tmp_path / "request"
    folder.mkdir()
    read = asyncio.run(read_multipart(_stream(body), boundary, folder, LIMITS))
    assert read.text == "Oh my God! ☕" and read.name == 'a "quoted".mp4'
    assert read.clip is not None and read.clip.read_bytes() == b"\x00video\r\n--"
    kind, body = protocol.clip_form(None, "hi")
    text_only = asyncio.run(read_multipart(_stream(body), kind.split("boundary=")[1], folder, LIMITS))
    assert text_only.text == "hi" and text_only.clip is None


def test_a_clip_in_s3_reads_back_on_the_server(tmp_path: Path) -> None:
    fetched = []

    def fetch(uri: str, path: Path, limit: int) -> int:
        fetched.append(uri)
        path.write_bytes(b"clip")
        return 4

    kind, body = protocol.clip_s3_json("s3://b/k/a.mp4", "Hi", "a.mp4")
    assert kind == protocol.JSON
    read = asyncio.run(read_json(_stream(body), tmp_path, LIMITS, S3Access(("b/k",), fetch)))
    assert fetched == ["s3://b/k/a.mp4"] and read.text == "Hi" and read.name == "a.mp4"


def test_an_analyze_body(tmp_path: Path) -> None:
    video = tmp_path / "episode.mp4"
    video.write_bytes(bytes(range(256)))
    _, inline = protocol.analyze_json(video=video, subtitles_text="1\n00:00:00,000 --> 00:00:01,000\nHi\n")
    payload = json.loads(inline)
    assert set(payload) == {protocol.VIDEO_B64, protocol.SUBTITLES_TEXT}
    assert base64.b64decode(payload[protocol.VIDEO_B64]) == video.read_bytes()
    _, named = protocol.analyze_json(video_s3="s3://b/v.mp4", segment="vad")
    assert json.loads(named) == {protocol.VIDEO_S3: "s3://b/v.mp4", protocol.SEGMENT: "vad"}
    assert set(json.loads(named)) <= set(protocol.ANALYZE_JSON_FIELDS)
    with pytest.raises(ValueError, match="one of them"):
        protocol.analyze_json()


def test_an_analyze_body_reads_back_on_the_server(tmp_path: Path) -> None:
    from meldctl.serving.analyze import AnalyzeRequest, VideoLimits, asks_for_analysis, video_from_json
    from meldctl.serving.uploads import json_targets, read_json_body

    assert set(AnalyzeRequest.model_fields) >= set(protocol.ANALYZE_JSON_FIELDS)
    video = tmp_path / "episode.mp4"
    video.write_bytes(bytes(range(256)) * 10)
    subtitles = "1\n00:00:00,000 --> 00:00:01,000\nHi\n"
    _, body = protocol.analyze_json(video=video, subtitles_text=subtitles, segment="subtitles")
    folder = tmp_path / "request"
    folder.mkdir()
    limits = VideoLimits(1 << 20, 10.0)
    targets = json_targets(folder, limits.base64)
    fields, decoded = asyncio.run(read_json_body(_stream(body), folder, targets, limit=limits.json_bytes, over="over"))
    assert asks_for_analysis(fields)
    read = asyncio.run(video_from_json(fields, decoded, folder, limits, S3Access()))
    assert read.video.read_bytes() == video.read_bytes() and read.segment == "subtitles"
    assert read.subtitles is not None and read.subtitles.read_text() == subtitles


def test_context_and_a_dialogue_read_back_on_the_server(tmp_path: Path) -> None:
    from meldctl.serving.uploads import ClipRequest, DialogueRequest

    def fetch(uri: str, path: Path, limit: int) -> int:
        return path.write_bytes(b"clip")

    context = [("Rachel", "I got the job!"), (None, "Really?")]
    kind, body = protocol.clip_form(None, "Okay.", context=context, no_context=True)
    form = asyncio.run(read_multipart(_stream(body), kind.split("boundary=")[1], tmp_path, LIMITS))
    assert form == ClipRequest("Okay.", None, None, context, no_context=True)
    _, body = protocol.clip_s3_json("s3://b/k/a.mp4", "Okay.", context=context)
    read = asyncio.run(read_json(_stream(body), tmp_path, LIMITS, S3Access(("b/k",), fetch)))
    assert isinstance(read, ClipRequest) and read.context == context and not read.no_context and read.clip
    clip = tmp_path / "dia1.mp4"
    clip.write_bytes(b"\x00clip")
    rows: list[dict[str, object]] = [
        {"text": "I got the job!", "speaker": "Rachel", "dialogue": "1", "clip": clip},
        {"text": "Okay.", "speaker": "Ross", "dialogue": "1", "clip": "s3://b/k/r.mp4"},
        {"text": "Hi."},
    ]
    kind, body = protocol.dialogue_json(rows, no_context=True)
    assert kind == protocol.JSON
    assert all(set(row) <= set(protocol.ROW_FIELDS) for row in json.loads(body)[protocol.DIALOGUE])
    folder = tmp_path / "request"
    folder.mkdir()
    read = asyncio.run(read_json(_stream(body), folder, LIMITS, S3Access(("b/k",), fetch)))
    assert isinstance(read, DialogueRequest) and read.no_context
    assert [(r.text, r.speaker, r.dialogue, r.name) for r in read.rows] == [
        ("I got the job!", "Rachel", "1", "dia1.mp4"), ("Okay.", "Ross", "1", "s3://b/k/r.mp4"), ("Hi.", None, "", None)
    ]  # fmt: skip
    assert read.rows[0].clip is not None and read.rows[0].clip.read_bytes() == b"\x00clip"
    assert read.rows[1].clip is not None and read.rows[1].clip.read_bytes() == b"clip"
