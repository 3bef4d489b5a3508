"""The order of an epoch's batches, per rank."""

from __future__ import annotations

from meldctl.training.sampler import EpochBatches


def test_epoch_batches_are_right_per_rank() -> None:
    """41 utterances on 2 ranks with batch 4: 21 each (one padded), so a last batch of one is dropped on both."""
    ranks = [EpochBatches(41, 4, seed=7, rank=r, world=2) for r in range(2)]
    for sampler in ranks:
        sampler.start(epoch=3)
    batches = [list(s) for s in ranks]
    assert [len(b) for b in batches] == [5, 5] == [len(s) for s in ranks]
    assert all(len(batch) == 4 for b in batches for batch in b)
    seen = [i for b in batches for batch in b for i in batch]
    assert len(set(seen)) >= 39 and set(seen) <= set(range(41))
    again = EpochBatches(41, 4, seed=7, rank=0, world=2)
    again.start(epoch=3, skip=2)
    assert list(again) == batches[0][2:] and len(again) == 3  # resuming part-way gives the rest, in order
    again.start(epoch=4)
    assert list(again) != batches[0]  # another epoch, another order
    single = EpochBatches(9, 4, seed=1)
    single.start(1)
    assert [len(b) for b in single] == [4, 4]  # 4 + 4 + 1: the batch of one is dropped
