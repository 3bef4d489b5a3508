"""`POST /analyze` (and `/invocations` with a video) against `meldctl analyze --json` on a synthetic episode."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from serve_servers import ServeProcess, ThreadServer, assert_error, start_thread_server
from typer.testing import CliRunner

from meldctl.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def show(episode, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: ANN001
    """A folder with the episode as ep.mp4 and its subtitles as ep.srt."""
    from episode import write_srt

    folder = tmp_path_factory.mktemp("show")
    (folder / "ep.mp4").symlink_to(episode.video)
    write_srt(folder / "ep.srt", episode.cues)
    return folder


def cli_analyze(folder: Path, args: list[str], ckpt: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """`meldctl analyze ARGS --json`, run in `folder` so that it names the files as the upload does."""
    monkeypatch.chdir(folder)
    result = runner.invoke(app, ["analyze", *args, "--ckpt", str(ckpt), "--out", str(out), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def same_timeline(served: dict, printed: dict) -> None:
    """Everything but the time spent: utterances, times, texts, probabilities, warnings, names."""
    assert served.keys() == printed.keys()
    assert {k: v for k, v in served.items() if k != "seconds"} == {k: v for k, v in printed.items() if k != "seconds"}
    assert served["seconds"].keys() == printed["seconds"].keys()


def test_analyze_with_subtitles_answers_what_analyze_json_prints(
    served: ServeProcess, show: Path, trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    printed = cli_analyze(show, ["ep.mp4", "--subtitles", "ep.srt"], trained_run / "best.pt", tmp_path, monkeypatch)
    assert printed["segmentation"] == {"method": "subtitles", "source": "ep.srt", "utterances": 8}
    with open(show / "ep.mp4", "rb") as video, open(show / "ep.srt", "rb") as subtitles:
        files = {"video": ("ep.mp4", video), "subtitles": ("ep.srt", subtitles)}
        form = requests.post(served.url + "/analyze", files=files, timeout=600)
    assert form.status_code == 200, form.text
    same_timeline(form.json(), printed)
    payload = {"video_b64": base64.b64encode((show / "ep.mp4").read_bytes()).decode(), "video_name": "ep.mp4",
               "subtitles_text": (show / "ep.srt").read_text(), "segment": "subtitles"}  # fmt: skip
    as_json = requests.post(served.url + "/analyze", json=payload, timeout=600)
    assert as_json.status_code == 200, as_json.text
    printed["segmentation"]["source"] = "subtitles_text"  # the subtitles had no file name
    same_timeline(as_json.json(), printed)
    with open(show / "ep.mp4", "rb") as video, open(show / "ep.srt", "rb") as subtitles:
        files = {"video": ("ep.mp4", video), "subtitles": ("ep.srt", subtitles)}
        invoked = requests.post(served.url + "/invocations", files=files, timeout=600)  # SageMaker's one route
    assert invoked.status_code == 200, invoked.text
    same_timeline(invoked.json(), {**printed, "segmentation": form.json()["segmentation"]})
    log = served.log.read_text()
    assert "analyze ep.mp4: classifying 8/8 utterances" in log  # progress as plain lines in the server log
    assert served.leftovers() == []


def test_analyze_without_subtitles_and_through_invocations(
    served: ServeProcess, show: Path, trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = tmp_path / "alone"  # the video with no subtitles beside it: speech recognition
    alone.mkdir()
    (alone / "ep.mp4").symlink_to(show / "ep.mp4")
    printed = cli_analyze(alone, ["ep.mp4"], trained_run / "best.pt", tmp_path / "out", monkeypatch)
    assert printed["segmentation"]["method"] == "asr" and len(printed["utterances"]) == 8
    with open(show / "ep.mp4", "rb") as video:
        form = requests.post(served.url + "/analyze", files={"video": ("ep.mp4", video)}, timeout=600)
    assert form.status_code == 200, form.text
    same_timeline(form.json(), printed)
    payload = {"video_b64": base64.b64encode((show / "ep.mp4").read_bytes()).decode(), "video_name": "ep.mp4"}
    invoked = requests.post(served.url + "/invocations", json=payload, timeout=600)
    assert invoked.status_code == 200, invoked.text
    same_timeline(invoked.json(), printed)
    assert served.leftovers() == []


BAD = {
    "subtitles with asr": ({"segment": "asr"}, True, 400, "subtitles cannot be used with segment asr"),
    "unknown segment": ({"segment": "whisper"}, False, 422, "segment 'whisper' is not one of"),
    "not a video": ({}, "notes", 422, "notes.mp4"),
    "no video": (None, False, 400, "field named video"),
    "binary subtitles": ({}, "binary", 422, "ep.srt"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_analyze_requests_are_one_line(served: ServeProcess, show: Path, case: str) -> None:
    data, subtitles, status, fragment = BAD[case]
    files = {}
    if data is not None:
        video = b"not a video at all\n" if subtitles == "notes" else (show / "ep.mp4").read_bytes()
        files["video"] = ("notes.mp4" if subtitles == "notes" else "ep.mp4", video)
    if subtitles is True:
        files["subtitles"] = ("ep.srt", (show / "ep.srt").read_bytes())
    if subtitles == "binary":
        files["subtitles"] = ("ep.srt", b"\x00\x01 not subtitles" * 100)
    if not files:
        files = {"segment": (None, "auto")}
    answer = requests.post(served.url + "/analyze", files=files, data=data or None, timeout=120)
    assert_error(answer, status, fragment)
    assert "meldctl-serve-" not in answer.json()["error"]  # never the server's temporary path
    assert served.leftovers() == []


@pytest.fixture(scope="module")
def small_limits(trained_run: Path) -> Iterator[ThreadServer]:
    """uvicorn in a thread: videos of at most 50 kB and 0.1 minutes."""
    from meldctl.inference import Predictor
    from meldctl.serving.app import build_app
    from meldctl.settings import ServeSettings

    settings = ServeSettings(max_video_mb=0.05, max_video_minutes=0.1)
    server = start_thread_server(build_app(Predictor.from_path(trained_run / "best.pt", "cpu"), settings))
    yield server
    server.stop()


def test_video_limits(small_limits: ThreadServer, show: Path) -> None:
    big = (show / "ep.mp4").read_bytes()
    assert len(big) > 0.05 * 2**20
    too_big = requests.post(small_limits.url + "/analyze", files={"video": ("ep.mp4", big)}, timeout=60)
    assert_error(too_big, 413, "over the server's limit of 0.05 MB (--max-video-mb)")
    payload = {"video_b64": base64.b64encode(big).decode()}
    assert_error(requests.post(small_limits.url + "/analyze", json=payload, timeout=60), 413, "the video is over")
    short = _cut(show / "ep.mp4", 8.0, show.parent / "short.mp4")  # 8 s: under the bytes limit, over 0.1 minutes
    assert short.stat().st_size <= 0.05 * 2**20
    too_long = requests.post(small_limits.url + "/analyze", files={"video": ("short.mp4", short.read_bytes())},
                             timeout=60)  # fmt: skip
    assert_error(too_long, 422, "0.1 minutes (--max-video-minutes)")


def _cut(video: Path, seconds: float, out: Path) -> Path:
    import subprocess

    from meldctl.media.ffmpeg import ffmpeg_exe

    args = [ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(video), "-t", str(seconds), "-vf", "scale=64:48"]
    subprocess.run([*args, "-c:v", "libx264", "-crf", "45", "-an", str(out)], check=True)
    return out


def test_invocations_take_a_clip_or_a_video_not_both(served: ServeProcess, show: Path, clips: list[Path]) -> None:
    files = {"video": ("ep.mp4", (show / "ep.mp4").read_bytes()), "clip": ("a.mp4", clips[0].read_bytes())}
    assert_error(requests.post(served.url + "/invocations", files=files, timeout=60), 400, "not both")
    both = {"video_path": "s3://b/ep.mp4", "video_b64": "eA=="}
    assert_error(requests.post(served.url + "/invocations", json=both, timeout=60), 400, "not several")


@pytest.fixture(scope="module")
def hasty(trained_run: Path) -> Iterator[ThreadServer]:
    """uvicorn in a thread: a time limit of 2 s."""
    from meldctl.inference import Predictor
    from meldctl.serving.app import build_app
    from meldctl.settings import ServeSettings

    server = start_thread_server(
        build_app(Predictor.from_path(trained_run / "best.pt", "cpu"), ServeSettings(timeout_s=2))
    )
    yield server
    server.stop()


def test_the_time_limit_ends_an_analysis(hasty: ThreadServer, show: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An analysis still running at the time limit gets 504, and its thread stops at its next progress step
    (held here until the server has given up on it)."""
    import threading

    from meldctl.serving import analyze

    stopped, original = threading.Event(), analyze._LogProgress.__call__

    def held(self, stage: str, done: float, total: float) -> None:  # noqa: ANN001
        assert self.cancelled.wait(60), "the server never gave up on the request"
        try:
            original(self, stage, done, total)
        except analyze.Cancelled:
            stopped.set()
            raise

    monkeypatch.setattr(analyze._LogProgress, "__call__", held)
    with open(show / "ep.mp4", "rb") as video, open(show / "ep.srt", "rb") as subtitles:
        files = {"video": ("ep.mp4", video), "subtitles": ("ep.srt", subtitles)}
        answer = requests.post(hasty.url + "/analyze", files=files, timeout=120)
    assert_error(answer, 504, "longer than the server's limit of 2 s")
    assert stopped.wait(60)
