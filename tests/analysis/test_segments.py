from __future__ import annotations

import pytest

from meldctl.analysis.segments import (
    Utterance,
    Word,
    clamp,
    format_time,
    merge_short,
    sentences,
    snap_to_speech,
)
from meldctl.analysis.windows import next_window_start


def words(*items: tuple[float, float, str]) -> list[Word]:
    return [Word(*item) for item in items]


@pytest.mark.parametrize(
    ("seconds", "decimals", "expected"),
    [
        (0, 0, "0:00"),
        (59.9, 0, "0:59"),
        (61.25, 1, "1:01.2"),
        (1500, 0, "25:00"),
        (3725, 0, "1:02:05"),
        (-3, 0, "0:00"),
    ],
)
def test_format_time(seconds: float, decimals: int, expected: str) -> None:
    assert format_time(seconds, decimals=decimals) == expected


def test_sentences_split_at_punctuation_across_recogniser_segments() -> None:
    found = sentences(
        words(
            (0.7, 1.4, " Hey"), (1.4, 2.9, " today?"), (4.0, 4.4, " I"), (4.4, 6.1, " sandwich."), (7.3, 7.6, " That")
        )
    )
    assert [(u.start, u.end, u.text) for u in found] == [
        (0.7, 2.9, "Hey today?"),
        (4.0, 6.1, "I sandwich."),
        (7.3, 7.6, "That"),
    ]


def test_sentences_split_at_a_long_pause_without_punctuation() -> None:
    found = sentences(words((0, 0.5, "so"), (0.5, 1.0, "anyway"), (2.5, 3.0, "right")), max_gap=0.8)
    assert [u.text for u in found] == ["so anyway", "right"]


def test_sentences_never_grow_past_max_seconds() -> None:
    stream = [Word(t, t + 0.4, "la") for t in [0.5 * k for k in range(60)]]  # 30 s of words, no punctuation
    found = sentences(stream, max_seconds=10)
    assert all(u.duration <= 10 for u in found) and len(found) == 3
    assert sum(len(u.text.split()) for u in found) == 60


def test_merge_short_joins_quick_fragments_but_not_across_pauses() -> None:
    found = merge_short(
        [
            Utterance(0.0, 0.4, "No."),
            Utterance(0.5, 0.9, "No."),
            Utterance(1.0, 2.5, "No way."),
            Utterance(5, 5.4, "Okay."),
        ]
    )
    assert [(u.start, u.end, u.text) for u in found] == [(0.0, 2.5, "No. No. No way."), (5, 5.4, "Okay.")]


def test_merge_short_keeps_a_short_utterance_followed_by_a_pause() -> None:
    found = merge_short([Utterance(0, 0.5, "Hi."), Utterance(2.0, 4.0, "How are you?")])
    assert len(found) == 2


def test_clamp_cuts_to_the_video_and_drops_what_falls_outside() -> None:
    assert clamp([Utterance(-1, 2, "a"), Utterance(8, 12, "b"), Utterance(11, 13, "c")], 10) == [
        Utterance(0, 2, "a"),
        Utterance(8, 10, "b"),
    ]


def test_next_window_keeps_finished_utterances_and_restarts_before_a_cut_one() -> None:
    found = [Utterance(1, 3), Utterance(50, 55), Utterance(58, 61)]  # window [0, 60): the last one runs past it
    kept, start = next_window_start(found, 0.0, 60.0, tail=10.0)
    assert kept == 1  # 50-55 ends inside the untrusted tail too: found again whole by the next window
    assert start == pytest.approx(49.8)


def test_next_window_skips_ahead_over_silence_and_always_advances() -> None:
    assert next_window_start([], 0.0, 60.0, tail=10.0) == (0, 50.0)
    assert next_window_start([Utterance(5, 8)], 0.0, 60.0, tail=10.0) == (1, 50.0)
    kept, start = next_window_start([Utterance(0.0, 59.0)], 0.0, 60.0, tail=10.0)
    assert kept == 0 and start == 1.0


def test_snap_to_speech_trims_edges_that_drift_into_silence() -> None:
    speech = [(0.8, 3.0), (3.6, 6.1), (7.0, 9.7)]
    found = snap_to_speech(
        [Utterance(0.66, 2.9, "a"), Utterance(4.0, 6.52, "b"), Utterance(6.9, 9.9, "c"), Utterance(20, 21, "d")],
        speech,
    )
    assert found == [
        Utterance(0.8, 2.9, "a"),
        Utterance(4.0, 6.1, "b"),
        Utterance(7.0, 9.7, "c"),
        Utterance(20, 21, "d"),
    ]
