"""The batcher's scheduling, with a model whose forward waits for the test to open a gate (no timing)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from meldctl.errors import MeldError
from meldctl.serving.batcher import Batcher, ModelError


class GatedModel:
    """`prepare` returns the text; `run` waits for `gate`, records the batch, answers `answer TEXT` per input."""

    def __init__(self, *, open_gate: bool = True) -> None:
        self.gate, self.entered = threading.Event(), threading.Event()
        self.batches: list[list[str]] = []
        self.fail = False
        if open_gate:
            self.gate.set()

    def prepare(self, clip: Path | None, text: str | None, *, name: str | None = None) -> str:
        if text == "bad":
            raise MeldError("empty text: this checkpoint reads the utterance text")
        return str(text)

    def run(self, inputs: list[str]) -> list[str]:
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        self.batches.append(list(inputs))
        if self.fail:
            raise RuntimeError("the model produced NaN")
        return [f"answer {text}" for text in inputs]


def run_with(model: GatedModel, body: Callable[[Batcher], Awaitable[None]], **options: float) -> Batcher:
    batcher = Batcher(model, **{"max_batch": 4, "max_wait_s": 60.0, "workers": 2, **options})

    async def main() -> None:
        await batcher.start()
        try:
            await asyncio.wait_for(body(batcher), 60)
        finally:
            model.gate.set()
            await batcher.stop()

    asyncio.run(main())
    return batcher


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


def test_a_lone_request_is_not_held_for_the_batch_wait() -> None:
    async def body(batcher: Batcher) -> None:
        # max_wait_s is 60 s: if a lone request waited for company, this would time out.
        assert await asyncio.wait_for(batcher.predict(None, "hi", name=None), 10) == "answer hi"

    model = GatedModel()
    assert run_with(model, body).stats.to_json() == {
        "batches": 1,
        "requests": 1,
        "largest": 1,
        "sizes": {"1": 1},
        "dialogues": 0,
    }


def test_requests_arriving_during_a_forward_share_the_next_batches() -> None:
    model = GatedModel(open_gate=False)

    async def body(batcher: Batcher) -> None:
        first = asyncio.create_task(batcher.predict(None, "0", name=None))
        await until(model.entered.is_set)  # the model is busy with "0"
        rest = [asyncio.create_task(batcher.predict(None, str(i), name=None)) for i in range(1, 6)]
        await until(lambda: batcher._queue.qsize() == 5)  # all five decoded and waiting
        model.gate.set()
        assert await first == "answer 0"
        assert [await task for task in rest] == [f"answer {i}" for i in range(1, 6)]

    batcher = run_with(model, body)
    assert model.batches == [["0"], ["1", "2", "3", "4"], ["5"]]  # max_batch is 4
    assert batcher.stats.to_json() == {
        "batches": 3,
        "requests": 6,
        "largest": 4,
        "sizes": {"1": 2, "4": 1},
        "dialogues": 0,
    }


def test_a_bad_input_fails_alone() -> None:
    async def body(batcher: Batcher) -> None:
        results = await asyncio.gather(
            batcher.predict(None, "bad", name=None), batcher.predict(None, "good", name=None), return_exceptions=True
        )
        assert isinstance(results[0], MeldError) and results[1] == "answer good"

    run_with(GatedModel(), body)


def test_a_model_failure_reaches_every_request_of_the_batch_and_the_batcher_goes_on() -> None:
    model = GatedModel(open_gate=False)

    async def body(batcher: Batcher) -> None:
        first = asyncio.create_task(batcher.predict(None, "0", name=None))
        await until(model.entered.is_set)
        model.fail = True
        pair = [asyncio.create_task(batcher.predict(None, text, name=None)) for text in ("1", "2")]
        await until(lambda: batcher._queue.qsize() == 2)
        model.gate.set()
        with pytest.raises(ModelError, match="NaN"):
            await first
        for task in pair:
            with pytest.raises(ModelError, match="NaN"):
                await task
        model.fail = False
        assert await batcher.predict(None, "3", name=None) == "answer 3"
        assert batcher.alive

    run_with(model, body)
    assert model.batches == [["0"], ["1", "2"], ["3"]]


def test_a_request_that_gave_up_while_queued_is_not_run() -> None:
    model = GatedModel(open_gate=False)

    async def body(batcher: Batcher) -> None:
        first = asyncio.create_task(batcher.predict(None, "0", name=None))
        await until(model.entered.is_set)
        impatient = asyncio.create_task(batcher.predict(None, "1", name=None))
        await until(lambda: batcher._queue.qsize() == 1)
        impatient.cancel()  # what a request's time limit does
        patient = asyncio.create_task(batcher.predict(None, "2", name=None))
        await until(lambda: batcher._queue.qsize() == 2)
        model.gate.set()
        assert await first == "answer 0" and await patient == "answer 2"

    run_with(model, body)
    assert model.batches == [["0"], ["2"]]
