"""The order of a training epoch: a pure function of (seed, epoch), the same on every rank, then sharded.

Because the order depends on nothing else, a run resumed part-way through an epoch skips the batches already
done and continues with the same ones, in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from meldctl.data.dialogue import pack_dialogues


class EpochBatches(torch.utils.data.Sampler[list[int]]):
    """This rank's batches of one epoch: shuffled by (seed, epoch), identical on every rank, then sharded.

    Like `DistributedSampler` the order is padded to a multiple of the world size; unlike it, the batches are
    made here, so the arithmetic is right per rank: a last batch of one (which BatchNorm cannot train on) is
    dropped. `start(epoch, skip)` resumes part-way through an epoch.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world: int = 1,
        groups: list[list[int]] | None = None,
    ) -> None:
        self.size, self.batch_size, self.seed, self.rank, self.world = size, batch_size, seed, rank, world
        self.groups = groups  # dialogues: shuffled as wholes and packed, for a model with dialogue context
        self.epoch, self.skip = 1, 0

    def start(self, epoch: int, skip: int = 0) -> None:
        """Iterate `epoch`'s batches from now on, leaving out its first `skip` (done before a resume)."""
        self.epoch, self.skip = epoch, skip

    def _batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.groups is not None:
            return self._dialogue_batches(generator)
        order = torch.randperm(self.size, generator=generator).tolist()
        per_rank = math.ceil(self.size / self.world)
        order += order[: per_rank * self.world - self.size]  # pad so every rank gets as many batches
        mine = order[self.rank :: self.world]
        batches = [mine[i : i + self.batch_size] for i in range(0, len(mine), self.batch_size)]
        return batches[:-1] if batches and len(batches[-1]) == 1 else batches

    def _dialogue_batches(self, generator: torch.Generator) -> list[list[int]]:
        """Whole dialogues in a shuffled order, packed into batches, then dealt to the ranks."""
        order = torch.randperm(len(self.groups), generator=generator).tolist()
        batches = [b for b in pack_dialogues([self.groups[i] for i in order], self.batch_size) if len(b) > 1]
        per_rank = math.ceil(len(batches) / self.world)
        batches += batches[: per_rank * self.world - len(batches)]  # every rank gets as many batches
        return batches[self.rank :: self.world]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()[self.skip :]

    def __len__(self) -> int:
        return max(len(self._batches()) - self.skip, 0)
