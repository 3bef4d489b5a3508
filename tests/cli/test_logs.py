from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import pytest
from aws_servers import ROLE, aws_env, create_training_job, moto_s3_env, moto_server, s3_client, s3_server  # noqa: F401
from typer.testing import CliRunner

from meldctl.cli import app
from meldctl.cli import logs as logs_cmd
from meldctl.remote.cloudwatch import LOG_GROUP

runner = CliRunner()


def test_sync_brings_event_files_home_incrementally(tmp_path: Path, aws_env: str) -> None:  # noqa: F811
    prefix = create_training_job(aws_env, "meldctl-cc-1")
    s3 = s3_client()
    s3.put_object(Bucket=aws_env, Key=f"{prefix}/events.out.tfevents.1.algo-1", Body=b"x" * 64)
    s3.put_object(Bucket=aws_env, Key=f"{prefix}/eval/events.out.tfevents.2.algo-1", Body=b"y" * 8)

    result = runner.invoke(app, ["logs", "sync", "meldctl-cc-1", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    dest = tmp_path / "runs" / "meldctl-cc-1" / "tensorboard"
    assert summary["copied"] == 2 and Path(summary["dest"]).resolve() == dest
    assert (dest / "events.out.tfevents.1.algo-1").read_bytes() == b"x" * 64
    assert result.stderr.splitlines()[-1] == "tensorboard --logdir runs/meldctl-cc-1/tensorboard"

    s3.put_object(Bucket=aws_env, Key=f"{prefix}/events.out.tfevents.1.algo-1", Body=b"x" * 64 + b"z" * 16)
    again = runner.invoke(app, ["logs", "sync", "meldctl-cc-1", "--json", "--dest", str(dest)])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["copied"] == 1 and json.loads(again.stdout)["bytes"] == 16


def test_sync_follow_runs_until_the_job_ends(tmp_path: Path, aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    prefix = create_training_job(aws_env, "meldctl-dd-1")
    s3_client().put_object(Bucket=aws_env, Key=f"{prefix}/events.out.tfevents.1", Body=b"e")
    monkeypatch.setattr(logs_cmd, "SYNC_POLL_S", 0)
    result = runner.invoke(app, ["logs", "sync", "meldctl-dd-1", "--follow", "--dest", str(tmp_path / "tb")])
    assert result.exit_code == 0, result.output
    assert "job Completed" in result.stderr  # moto's jobs end at once: one round, then it stops
    assert (tmp_path / "tb" / "events.out.tfevents.1").is_file()


def test_sync_an_s3_uri_and_refuse_follow_without_a_job(tmp_path: Path, aws_env: str) -> None:  # noqa: F811
    s3_client().put_object(Bucket=aws_env, Key="some/run/tensorboard/events.1", Body=b"e")
    uri = f"s3://{aws_env}/some/run/tensorboard"
    result = runner.invoke(app, ["logs", "sync", uri, "--dest", str(tmp_path / "tb")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tb" / "events.1").read_bytes() == b"e"
    refused = runner.invoke(app, ["logs", "sync", uri, "--follow"])
    assert refused.exit_code == 1 and "job name" in refused.stderr


def put_events(stream: str, events: list[tuple[int, str]]) -> None:
    logs = boto3.client("logs")
    try:
        logs.create_log_group(logGroupName=LOG_GROUP)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
    logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream,
                        logEvents=[{"timestamp": t, "message": m} for t, m in events])  # fmt: skip


def test_tail_prints_the_job_log(aws_env: str) -> None:  # noqa: F811
    create_training_job(aws_env, "meldctl-ee-1")
    now = int(time.time() * 1000)
    lines = ["Starting training", "[meldctl] epoch=1 train_loss=1.2000 dev_emotion_weighted_f1=0.3000"]
    put_events("meldctl-ee-1/algo-1-1700000000", [(now + i, line) for i, line in enumerate(lines)])
    result = runner.invoke(app, ["logs", "tail", "meldctl-ee-1", "--follow"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == lines


def test_tail_names_the_host_of_each_line_when_a_job_has_several(aws_env: str) -> None:  # noqa: F811
    create_training_job(aws_env, "meldctl-two-1", instance_count=2)
    now = int(time.time() * 1000)
    put_events("meldctl-two-1/algo-1-1700000000", [(now, "rank 0 up"), (now + 2, "epoch 1 done")])
    put_events("meldctl-two-1/algo-2-1700000000", [(now + 1, "rank 1 up")])
    result = runner.invoke(app, ["logs", "tail", "meldctl-two-1"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["[algo-1] rank 0 up", "[algo-2] rank 1 up", "[algo-1] epoch 1 done"]


def test_tail_since_leaves_out_older_lines(aws_env: str) -> None:  # noqa: F811
    create_training_job(aws_env, "meldctl-gg-1")
    now = int(time.time() * 1000)
    put_events("meldctl-gg-1/algo-1-1", [(now - 3 * 3600 * 1000, "three hours ago"), (now - 60_000, "a minute ago")])
    result = runner.invoke(app, ["logs", "tail", "meldctl-gg-1", "--since", "10m"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["a minute ago"]
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now / 1000 - 4 * 3600))
    assert runner.invoke(app, ["logs", "tail", "meldctl-gg-1", "--since", iso]).stdout.splitlines() == [
        "three hours ago",
        "a minute ago",
    ]
    bad = runner.invoke(app, ["logs", "tail", "meldctl-gg-1", "--since", "yesterday"])
    assert bad.exit_code == 2 and "--since" in bad.output


def test_sync_skips_hostile_keys_warns_and_says_so_in_its_exit_code(tmp_path: Path, moto_s3_env: str) -> None:  # noqa: F811
    prefix = create_training_job(moto_s3_env, "meldctl-hh-1")
    s3 = s3_client()
    hostile = [f"{prefix}//{tmp_path}/outside.txt", f"{prefix}/../../escape.txt", f"{prefix}/a\\..\\..\\x"]
    for key in [*hostile, f"{prefix}/events.out.tfevents.1"]:
        s3.put_object(Bucket=moto_s3_env, Key=key, Body=b"e")
    dest = tmp_path / "tb"
    result = runner.invoke(app, ["logs", "sync", "meldctl-hh-1", "--dest", str(dest), "--json"])
    assert result.exit_code == 3, result.output
    assert (dest / "events.out.tfevents.1").read_bytes() == b"e"
    assert sorted(json.loads(result.stdout)["skipped_unsafe"]) == sorted(hostile)
    assert result.stderr.count("Warning: skipped S3 key") == 3
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()] == [
        "tb/events.out.tfevents.1"
    ]


def test_tail_of_an_unknown_job_is_one_line(aws_env: str) -> None:  # noqa: F811
    result = runner.invoke(app, ["logs", "tail", "meldctl-nope"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "meldctl logs list" in result.stderr


def test_list_shows_meldctl_jobs(aws_env: str) -> None:  # noqa: F811
    create_training_job(aws_env, "meldctl-ff-1")
    create_training_job(aws_env, "other-job-1")
    result = runner.invoke(app, ["logs", "list", "--json"])
    assert result.exit_code == 0, result.output
    jobs = json.loads(result.stdout)
    assert [job["name"] for job in jobs] == ["meldctl-ff-1"]
    assert jobs[0]["status"] == "Completed" and "best_metric" in jobs[0]


def test_sync_skips_keys_it_cannot_write_here_and_syncs_the_rest(tmp_path: Path, moto_s3_env: str) -> None:  # noqa: F811
    prefix = create_training_job(moto_s3_env, "meldctl-ii-1")
    s3 = s3_client()
    long_key, clash, dot = f"{prefix}/{'n' * 300}", f"{prefix}/clash/inner", f"{prefix}/run/./x"
    for key in [f"{prefix}/clash", clash, long_key, dot, f"{prefix}/zz/events.out.tfevents.1"]:
        s3.put_object(Bucket=moto_s3_env, Key=key, Body=b"e")
    dest = tmp_path / "tb"
    result = runner.invoke(app, ["logs", "sync", "meldctl-ii-1", "--dest", str(dest), "--json"])
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    assert (dest / "clash").read_bytes() == b"e" and (dest / "zz" / "events.out.tfevents.1").read_bytes() == b"e"
    skipped = json.loads(result.stdout)["skipped"]
    assert sorted(skipped) == sorted([long_key, clash, dot])
    assert "too long" in skipped[long_key] and "a file and a folder" in skipped[clash]
    assert "outside" not in skipped[dot] and "'.' segment" in skipped[dot]
    assert result.stderr.count("Warning: skipped S3 key") == 3 and "outside" not in result.stderr


@pytest.mark.parametrize("width", [80, 100])
def test_list_never_cuts_a_job_name(aws_env: str, width: int, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from meldctl.cli.common import console

    names = ["meldctl-0a1b2c-20261206094152", "meldctl-" + "long-experiment-name-" * 2 + "20261206094152"]
    for name in names:
        create_training_job(aws_env, name)
    monkeypatch.setattr(console, "width", width)
    result = runner.invoke(app, ["logs", "list"])
    assert result.exit_code == 0, result.output
    assert all(any(name in line for line in result.stderr.splitlines()) for name in names), result.stderr
    assert max(len(line) for line in result.stderr.splitlines()) <= width
