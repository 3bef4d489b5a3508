from __future__ import annotations

import time

import boto3
from aws_servers import aws_env, moto_server, s3_server  # noqa: F401

from meldctl.remote.cloudwatch import LOG_GROUP, LogTail, tail


def put_lines(client, stream: str, lines: list[str]) -> None:  # noqa: ANN001
    try:
        client.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
    except client.exceptions.ResourceAlreadyExistsException:
        pass
    now = int(time.time() * 1000)
    events = [{"timestamp": now + i, "message": line} for i, line in enumerate(lines)]
    client.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events)


def test_tail_reads_each_stream_and_then_only_new_lines(aws_env: str) -> None:  # noqa: F811
    client = boto3.client("logs")
    reader = LogTail(client, "meldctl-a1-1")
    assert reader.poll() == []  # no log group yet: the job has not started
    client.create_log_group(logGroupName=LOG_GROUP)
    put_lines(client, "meldctl-a1-1/algo-1-1700000000", ["starting", "[meldctl] epoch=1 train_loss=1.0"])
    put_lines(client, "other-job/algo-1-1700000000", ["not ours"])
    first = reader.poll()
    assert [line.message for line in first] == ["starting", "[meldctl] epoch=1 train_loss=1.0"]
    assert first[0].host == "algo-1"
    put_lines(client, "meldctl-a1-1/algo-1-1700000000", ["[meldctl] epoch=2 train_loss=0.9"])
    put_lines(client, "meldctl-a1-1/algo-2-1700000000", ["second instance"])
    assert sorted(line.message for line in reader.poll()) == ["[meldctl] epoch=2 train_loss=0.9", "second instance"]
    assert reader.poll() == []


def test_follow_stops_after_the_job_ends(aws_env: str) -> None:  # noqa: F811
    client = boto3.client("logs")
    client.create_log_group(logGroupName=LOG_GROUP)
    put_lines(client, "meldctl-b2-1/algo-1-1", ["one"])
    checks = []

    def is_done() -> bool:
        checks.append(1)
        if len(checks) == 1:
            put_lines(client, "meldctl-b2-1/algo-1-1", ["two"])
            return False
        return True

    lines = [line.message for line in tail(client, "meldctl-b2-1", follow=True, is_done=is_done, poll_s=0)]
    assert lines == ["one", "two"]
    assert len(checks) == 2
