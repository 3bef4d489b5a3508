"""A training job's CloudWatch log: group `/aws/sagemaker/TrainingJobs`, one stream per instance (`JOB/algo-N-...`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

LOG_GROUP = "/aws/sagemaker/TrainingJobs"


@dataclass(frozen=True)
class LogLine:
    """One log event of one instance."""

    stream: str
    timestamp: int  # milliseconds since the epoch
    message: str

    @property
    def host(self) -> str:
        """`algo-1` for the stream `JOB/algo-1-1700000000`."""
        name = self.stream.split("/", 1)[-1]
        parts = name.split("-")
        return "-".join(parts[:2]) if len(parts) >= 2 else name


@dataclass
class LogTail:
    """Reads the new events of every stream of a job on each `poll()`, remembering where it stopped."""

    client: Any  # boto3 CloudWatch Logs client
    job_name: str
    since_ms: int | None = None  # only events from then on (milliseconds since the epoch)
    _tokens: dict[str, str | None] = field(default_factory=dict)

    def streams(self) -> list[str]:
        """The job's log streams; empty until its first instance starts (or when the group does not exist)."""
        names: list[str] = []
        kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamNamePrefix": f"{self.job_name}/"}
        while True:
            try:
                page = self.client.describe_log_streams(**kwargs)
            except self.client.exceptions.ResourceNotFoundException:
                return []
            names += [s["logStreamName"] for s in page.get("logStreams", [])]
            if not page.get("nextToken"):
                return sorted(names)
            kwargs["nextToken"] = page["nextToken"]

    def poll(self) -> list[LogLine]:
        """Events written since the last poll, oldest first."""
        lines: list[LogLine] = []
        for stream in self.streams():
            token = self._tokens.get(stream)
            while True:
                kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
                if token:
                    kwargs["nextToken"] = token
                if self.since_ms is not None:  # with the token too: the token is a position in this time range
                    kwargs["startTime"] = self.since_ms
                page = self.client.get_log_events(**kwargs)
                events = page.get("events", [])
                lines += [LogLine(stream, e["timestamp"], e["message"].rstrip("\n")) for e in events]
                next_token = page.get("nextForwardToken")
                if not events or next_token == token:
                    token = next_token or token
                    break
                token = next_token
            self._tokens[stream] = token
        return sorted(lines, key=lambda line: line.timestamp)


def tail(
    client: Any,
    job_name: str,
    *,
    follow: bool = False,
    is_done: Callable[[], bool] | None = None,
    poll_s: float = 5.0,
    since_ms: int | None = None,
) -> Iterator[LogLine]:
    """The job's log lines; with `follow`, keep polling until `is_done()` says the job ended (then a last read)."""
    reader = LogTail(client, job_name, since_ms)
    yield from reader.poll()
    while follow:
        done = is_done() if is_done is not None else False
        if not done:
            time.sleep(poll_s)
        yield from reader.poll()
        if done:
            return
