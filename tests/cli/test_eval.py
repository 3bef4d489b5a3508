from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from meldctl.cli import app

runner = CliRunner()


def test_eval_json_report_and_figures(trained_run: Path, tmp_path: Path) -> None:
    data_dir = trained_run.parent / "data"
    out = tmp_path / "eval"
    result = runner.invoke(
        app,
        [
            "eval",
            str(trained_run / "best.pt"),
            "--data-dir",
            str(data_dir),
            "--split",
            "test",
            "--out",
            str(out),
            "--json",
            "--workers",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["split"] == "test" and report["n"] == 14 and report["missing"] == {"text": 0, "audio": 0, "video": 0}
    for head, size in (("emotion", 7), ("sentiment", 3)):
        scores = report[head]
        assert set(scores) >= {"accuracy", "weighted_f1", "macro_f1", "per_class", "confusion"}
        assert len(scores["confusion"]) == size
        assert sum(map(sum, scores["confusion"])) == 14
        assert sum(c["support"] for c in scores["per_class"].values()) == 14
        assert 0 <= scores["weighted_f1"] <= 1
        assert report["baseline"][head]["accuracy"] <= 1
    assert json.loads((out / "report.json").read_text()) == report
    for head in ("emotion", "sentiment"):
        assert (out / f"confusion_{head}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_reuses_the_cache_and_defaults_beside_the_checkpoint(trained_run: Path, tmp_path: Path) -> None:
    data_dir = trained_run.parent / "data"
    args = ["eval", str(trained_run / "best.pt"), "--data-dir", str(data_dir), "--split", "dev", "--workers", "0"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert (trained_run / "eval" / "dev" / "report.json").is_file()
    assert "caching" not in first.output  # training cached dev with the same frozen encoders: same cache keys
    second = runner.invoke(app, [*args, "--json"])
    assert "caching" not in second.output
    assert json.loads(second.stdout)["n"] == 14
    for kind in ("text_features", "video_features", "audio"):
        assert len(list((data_dir / "cache").glob(f"{kind}-*"))) == 1, kind


def test_eval_bad_inputs(trained_run: Path, tmp_path: Path) -> None:
    data_dir = trained_run.parent / "data"
    result = runner.invoke(app, ["eval", str(tmp_path / "missing.pt"), "--data-dir", str(data_dir)])
    assert result.exit_code == 1 and "does not exist" in result.output
    result = runner.invoke(app, ["eval", str(trained_run / "best.pt"), "--data-dir", str(tmp_path)])
    assert result.exit_code == 1 and "no manifest" in result.output
    result = runner.invoke(app, ["eval", str(trained_run / "best.pt"), "--split", "validation"])
    assert result.exit_code == 2


def test_eval_scores_every_row_and_counts_what_was_missing(trained_run: Path, tmp_path: Path) -> None:
    import dataclasses

    from helpers import copy_prepared

    from meldctl.data.manifest import read_manifest, write_manifest

    data_dir = copy_prepared(trained_run.parent / "data", tmp_path / "data")
    rows = read_manifest(data_dir, "test")
    rows[0] = dataclasses.replace(rows[0], clip=None, audio=None, status="missing", error="no clip file")
    (data_dir / rows[1].clip).write_bytes(b"\x00" * 4096)  # prepare found it fine; now it does not decode
    write_manifest(data_dir, "test", rows)
    result = runner.invoke(
        app, ["eval", str(trained_run / "best.pt"), "--data-dir", str(data_dir), "--workers", "0", "--json",
              "--out", str(tmp_path / "out")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == len(rows) == 14  # every row scored, none dropped from the denominator
    assert report["missing"] == {"text": 0, "audio": 1, "video": 2}
    assert sum(c["support"] for c in report["emotion"]["per_class"].values()) == 14


def test_eval_ablates_modalities_of_one_checkpoint(trained_run: Path) -> None:
    data_dir = trained_run.parent / "data"
    base = ["eval", str(trained_run / "best.pt"), "--data-dir", str(data_dir), "--workers", "0", "--json"]
    result = runner.invoke(app, [*base, "--modalities", "text"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["modalities"] == ["text"] and report["ablated"] == ["audio", "video"]
    assert report["missing"] == {"text": 0} and report["n"] == 14
    assert (trained_run / "eval" / "test-text" / "report.json").is_file()
    refused = runner.invoke(app, [*base, "--modalities", "smell"])
    assert refused.exit_code == 2 and "unknown modality" in refused.output


def test_eval_refuses_unknown_labels_and_empty_splits_before_any_cache(trained_run: Path, tmp_path: Path) -> None:
    import dataclasses

    from helpers import copy_prepared

    from meldctl.data.manifest import read_manifest, write_manifest

    data_dir = copy_prepared(trained_run.parent / "data", tmp_path / "data")
    rows = read_manifest(data_dir, "test")
    for bad, needle in (
        ([dataclasses.replace(rows[0], emotion="ecstatic"), *rows[1:]], "test.jsonl:1: malformed manifest line"),
        ([*rows[:2], dataclasses.replace(rows[2], sentiment="mixed")], "unknown sentiment 'mixed'"),
        ([], "has no utterances"),
    ):
        write_manifest(data_dir, "test", bad)
        result = runner.invoke(app, ["eval", str(trained_run / "best.pt"), "--data-dir", str(data_dir)])
        assert result.exit_code == 1 and needle in result.output, result.output
        assert "Traceback" not in result.output
        assert not (data_dir / "cache").exists()
