"""Micro-batching in front of a `Predictor`: decode in a thread pool, one model batch at a time on one thread.

Requests are decoded (`Predictor.prepare`: FFmpeg, frames, log-Mel, tokens) by a pool of threads, so decoding
overlaps the forward of the batch before. A single consumer collects what is ready and runs it as one batch
(`Predictor.run`) on the one model thread. It waits for more only while other requests are still being decoded,
and at most `max_wait_s`: a lone request is never held back, and requests that arrive together share a forward.

A conversation (a dialogue, or one utterance with its context) is one unit instead: its utterances are decoded
by the same pool, then `Predictor.run_dialogue` classifies them together on the model thread, between batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

log = logging.getLogger("meldctl.serve")
T = TypeVar("T")


class ModelError(Exception):
    """The model failed on a batch (`Predictor.run` raised); every request of the batch gets it."""


class _Model(Protocol):
    """What the batcher needs of a `meldctl.inference.Predictor`."""

    def prepare(self, clip: Path | None, text: str | None, *, name: str | None = None) -> Any: ...

    def run(self, inputs: list[Any]) -> list[Any]: ...

    def run_dialogue(self, inputs: list[Any], speakers: Sequence[str | None], *, context: bool) -> list[Any]: ...


@dataclass
class BatchStats:
    """How the model has been used: how many batches of which sizes."""

    batches: int = 0
    requests: int = 0
    sizes: Counter[int] = field(default_factory=Counter)
    dialogues: int = 0
    """Conversations classified (each one forward of its own)."""

    def add(self, size: int) -> None:
        self.batches += 1
        self.requests += size
        self.sizes[size] += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "requests": self.requests,
            "largest": max(self.sizes, default=0),
            "sizes": {str(size): count for size, count in sorted(self.sizes.items())},
            "dialogues": self.dialogues,
        }


@dataclass
class _Job:
    prepared: Any
    answer: asyncio.Future


class Batcher:
    """Turns concurrent `predict` calls into batched forwards.

    Args:
        model: The loaded predictor.
        max_batch: The most inputs in one forward.
        max_wait_s: How long a ready input may wait for others still being decoded.
        workers: Decoding threads.
    """

    def __init__(self, model: _Model, *, max_batch: int, max_wait_s: float, workers: int) -> None:
        self.model, self.max_batch, self.max_wait_s = model, max_batch, max_wait_s
        self.stats = BatchStats()
        self._decoders = ThreadPoolExecutor(workers, thread_name_prefix="meldctl-decode")
        self._runner = ThreadPoolExecutor(1, thread_name_prefix="meldctl-model")
        self._queue: asyncio.Queue[_Job] | None = None
        self._changed: asyncio.Event | None = None
        self._consumer: asyncio.Task | None = None
        self._decoding = 0

    @property
    def alive(self) -> bool:
        return self._consumer is not None and not self._consumer.done()

    async def start(self) -> None:
        """Start the consumer on the running event loop."""
        self._queue, self._changed = asyncio.Queue(), asyncio.Event()
        self._consumer = asyncio.create_task(self._consume(), name="meldctl-batcher")

    async def stop(self) -> None:
        """Stop the consumer and the threads (a forward in progress finishes first)."""
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
        self._decoders.shutdown(wait=False, cancel_futures=True)
        self._runner.shutdown(wait=True)

    async def predict(self, clip: Path | None, text: str | None, *, name: str | None) -> Any:
        """Decode one utterance, queue it for the next batch, and return its prediction.

        Raises:
            MeldError: the input cannot be used (from `prepare`).
            ModelError: the model failed on the batch (from `run`).
        """
        assert self._queue is not None and self._changed is not None, "start() first"
        loop = asyncio.get_running_loop()
        self._decoding += 1
        try:
            prepared = await loop.run_in_executor(self._decoders, lambda: self.model.prepare(clip, text, name=name))
        finally:
            self._decoding -= 1
            self._changed.set()  # the consumer may be waiting for this one
        job = _Job(prepared, loop.create_future())
        self._queue.put_nowait(job)
        self._changed.set()
        return await job.answer

    async def decode(self, work: Sequence[Callable[[], Any]]) -> list[Any]:
        """Run each of `work` (a `prepare` of one utterance) in the decoding pool, all at once; each result, or the
        exception it raised, in order. These are not queued for a batch: `run_dialogue` takes them."""
        loop = asyncio.get_running_loop()
        return await asyncio.gather(
            *(loop.run_in_executor(self._decoders, job) for job in work), return_exceptions=True
        )

    async def run_dialogue(self, inputs: list[Any], speakers: Sequence[str | None], *, context: bool) -> list[Any]:
        """One conversation through `model.run_dialogue` on the model thread (between batches of single clips).

        Raises:
            ModelError: the model failed on it.
        """
        loop = asyncio.get_running_loop()
        try:
            answers = await loop.run_in_executor(
                self._runner, lambda: self.model.run_dialogue(inputs, speakers, context=context)
            )
        except Exception as exc:  # noqa: BLE001 - one sentence for the client, the details in the log
            log.exception("the model failed on a dialogue of %d", len(inputs))
            raise ModelError(getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}") from None
        self.stats.dialogues += 1
        return answers

    def call_blocking(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`function(*args, **kwargs)` on the model thread, waited for here (from a thread that is not the event
        loop's): a whole video's analysis shares the one model thread with the requests being batched."""
        return self._runner.submit(function, *args, **kwargs).result()

    async def _consume(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(await self._queue.get())
            batch = [job for job in batch if not job.answer.done()]  # requests that timed out meanwhile
            if not batch:
                continue
            try:
                answers = await loop.run_in_executor(self._runner, self.model.run, [job.prepared for job in batch])
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the failure, the loop goes on
                log.exception("the model failed on a batch of %d", len(batch))
                failure = ModelError(getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}")
                for job in batch:
                    if not job.answer.done():
                        job.answer.set_exception(failure)
                continue
            self.stats.add(len(batch))
            for job, answer in zip(batch, answers, strict=True):
                if not job.answer.done():
                    job.answer.set_result(answer)

    async def _collect(self, first: _Job) -> list[_Job]:
        """`first` and whatever else is ready, waiting (up to `max_wait_s`) only while others are decoding."""
        assert self._queue is not None and self._changed is not None
        batch = [first]
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while len(batch) < self.max_batch:
            self._changed.clear()
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            remaining = deadline - asyncio.get_running_loop().time()
            if len(batch) >= self.max_batch or self._decoding == 0 or remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                break
        return batch
