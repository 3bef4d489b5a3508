from __future__ import annotations

import json
from pathlib import Path

import soundfile as sf
from meld_fixtures import make_defect_folder
from typer.testing import CliRunner

from meldctl.cli import app
from meldctl.data.manifest import read_manifest

runner = CliRunner()


def test_sample_builds_all_manifests_ok_then_reruns_with_nothing_to_do(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    args = ["prepare", "--source", "sample", "--data-dir", str(data_dir), "--workers", "2", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for split in ("train", "dev", "test"):
        rows = read_manifest(data_dir, split)
        assert rows and all(row.status == "ok" for row in rows)
        assert report[split]["ok"] == len(rows) and report[split]["extracted"] == len(rows)
        info = sf.info(str(data_dir / rows[0].audio))
        assert (info.samplerate, info.channels) == (16000, 1)
    assert report["extracted"] == 42 + 14 + 14

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["extracted"] == 0


def test_defects_give_a_table_and_exit_0(tmp_path: Path) -> None:
    source = make_defect_folder(tmp_path / "MELD folder")
    args = ["prepare", "--source", str(source), "--data-dir", str(tmp_path / "d"), "--splits", "dev,test"]
    result = runner.invoke(app, args, env={"MELDCTL_DATA__MAX_CLIP_SECONDS": "2", "COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "no_audio" in result.output and "dia66_utt9.mp4" in result.output
    assert not (tmp_path / "d" / "manifest" / "train.jsonl").exists()


def test_a_source_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["prepare", "--source", str(tmp_path / "nope"), "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "Error:" in result.output and "Traceback" not in result.output
    assert "--source default|sample|labels|URL|PATH" in result.output


def test_bad_csv_is_one_line_naming_file_and_line(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "train_sent_emo.csv").write_text(
        "Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\r\n"
        'Hi,Ross,happy,positive,0,0,1,1,"0:00:01,000","0:00:02,000"\r\n'
    )
    result = runner.invoke(app, ["prepare", "--source", str(source), "--splits", "train", "--data-dir", "d"])
    assert result.exit_code == 1
    assert "train_sent_emo.csv:2: unknown emotion 'happy'" in result.output
