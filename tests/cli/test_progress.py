from __future__ import annotations

import io
import re

from rich.console import Console

from meldctl.cli.progress import RichReporter, duration

RECORD = {"epoch": 2, "train_loss": 1.5, "dev_loss": 1.2, "dev_emotion_accuracy": 0.4, "dev_emotion_weighted_f1": 0.35,
          "dev_sentiment_accuracy": 0.6, "dev_sentiment_weighted_f1": 0.55, "improved": True}  # fmt: skip


def plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=80), out


def test_without_a_terminal_long_phases_print_plain_lines() -> None:
    console, out = plain_console()
    with RichReporter(console, every_s=0) as reporter:
        for done in (0, 500, 1000):
            reporter.progress("caching text features, train", done, 1000)
        reporter.epoch_start(2, 10, 4)
        for _ in range(4):
            reporter.batch(32, 1.25)
        reporter.epoch_end(RECORD)
        reporter.note("resuming from last.pt")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("caching text features, train: 0/1000 (0.0%)")
    assert re.fullmatch(r"caching text features, train: 500/1000 \(50\.0%\), [0-9.]+ utt/s, ETA \S+( \S+)?", lines[1])
    assert lines[2].startswith("caching text features, train: 1000/1000 (100.0%)") and lines[2].endswith("ETA 0s")
    assert lines[3] == "epoch 2/10: 4 batches"
    assert re.fullmatch(r"epoch 2/10: batch 4/4 \(100\.0%\), [0-9.]+ batches/s, ETA 0s, loss 1\.250, \d+ samples/s",
                        lines[7])  # fmt: skip
    assert lines[8].startswith("[meldctl] epoch=2 train_loss=1.5000") and lines[8].endswith("(best)")
    assert lines[9] == "resuming from last.pt"
    assert "\x1b" not in out.getvalue()  # no terminal codes in a log


def test_plain_lines_come_every_so_often_and_at_the_end() -> None:
    console, out = plain_console()
    with RichReporter(console, every_s=3600) as reporter:
        for done in range(0, 101):
            reporter.progress("caching audio features, dev", done, 100)
    lines = out.getvalue().splitlines()
    assert [line.split(":")[1].split()[0] for line in lines] == ["0/100", "100/100"]  # the first, then the end


def test_on_a_terminal_it_draws_bars_and_keeps_the_metric_line() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with RichReporter(console, every_s=0) as reporter:
        reporter.progress("caching text features, train", 10, 10)
        reporter.epoch_start(1, 1, 1)
        reporter.batch(8, 2.0)
        reporter.epoch_end({**RECORD, "epoch": 1, "improved": False})
    text = out.getvalue()
    assert "caching text features, train" in text and "[meldctl] epoch=1 train_loss=1.5000" in text
    assert "ETA" not in text  # the bars show the time left, the plain lines are off


def test_durations_read_like_a_clock() -> None:
    assert [duration(s) for s in (5, 65, 3725)] == ["5s", "1m 05s", "1h 02m"]
