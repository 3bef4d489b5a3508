"""`meldctl analyze FOLDER`: what each instance of `analyze --remote` runs, on this machine."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from typer.testing import CliRunner

from meldctl.cli import app

runner = CliRunner()


def test_a_folder_once_per_video_skipping_done_ones_and_a_failure_is_one_line(
    trained_run: Path,
    episode,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    from episode import write_srt

    videos, subtitles, out = tmp_path / "videos", tmp_path / "subs", tmp_path / "out"
    (videos / "deep").mkdir(parents=True)
    (videos / "deep" / "ep.mp4").symlink_to(episode.video)
    (videos / "bad.mkv").write_bytes(b"\x00" * 64)
    (videos / "notes.txt").write_text("not a video")
    (subtitles / "deep").mkdir(parents=True)
    write_srt(subtitles / "deep" / "ep.en.srt", episode.cues)
    model = tmp_path / "model"  # a training job's model.tar.gz, as a Processing input holds it
    model.mkdir()
    with tarfile.open(model / "model.tar.gz", "w:gz") as tar:
        tar.add(trained_run / "best.pt", arcname="./best.pt")
    args = ["analyze", str(videos), "--out", str(out), "--ckpt", str(model), "--subtitles", str(subtitles), "--json"]

    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output  # one video failed, the other is done
    outcomes = {o["video"]: o for o in json.loads(first.stdout)["videos"]}
    assert sorted(outcomes) == ["bad.mkv", "deep/ep.mp4"]
    assert outcomes["deep/ep.mp4"]["status"] == "done" and outcomes["deep/ep.mp4"]["utterances"] == len(episode.cues)
    assert outcomes["bad.mkv"]["status"] == "failed" and "bad.mkv" in outcomes["bad.mkv"]["error"]
    assert sorted(p.name for p in (out / "deep" / "ep").iterdir()) == [
        "timeline.csv", "timeline.json", "timeline.png", "timeline.srt",
    ]  # fmt: skip
    timeline = json.loads((out / "deep" / "ep" / "timeline.json").read_text())
    assert timeline["segmentation"]["source"].endswith("ep.en.srt")
    assert "[1/2] bad.mkv: failed: " in first.output and "[2/2] deep/ep.mp4: done, 8 utterances" in first.output

    again = runner.invoke(app, args)
    assert again.exit_code == 1, again.output  # the only video it tried failed again
    report = Path(json.loads(again.stdout)["report"])
    assert report.parent.parent == out / "_meldctl" and report.parent.name == "local"
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(line["video"], line["status"]) for line in lines] == [("bad.mkv", "failed"), ("deep/ep.mp4", "skipped")]
    assert "Traceback" not in again.output
