"""torchrun support: the process group from torchrun's environment, collectives the trainer needs, teardown.

Outside torchrun every function here is a no-op for one process, so the trainer has one code path.
"""

from __future__ import annotations

import datetime
import gc
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from meldctl.data.cache import Cooperation


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> DistInfo:
    """This process's place in a torchrun job (one process outside torchrun)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return DistInfo(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")), local_world)


def setup(device: torch.device, timeout_s: float = 3600.0) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); gloo on CPU, nccl on CUDA.

    Args:
        device: The device this process trains on.
        timeout_s: How long any collective may wait for the other processes before the run fails (PyTorch's
            default of 10 minutes would end a first multi-GPU run while the feature cache is being built).
    """
    info = from_environment()
    if info.enabled and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(seconds=timeout_s)
        )
    return info


def resolve_device(name: str, info: DistInfo | None = None) -> torch.device:
    """`auto` is CUDA when available; each torchrun process takes the GPU of its local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        from meldctl.errors import MeldError

        if not torch.cuda.is_available():
            raise MeldError("--device cuda was asked for, but no CUDA device is available", hint="use --device cpu")
        local_rank = (info or from_environment()).local_rank
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def any_flags(info: DistInfo, flags: list[bool], device: torch.device) -> list[bool]:
    """Each flag OR-ed over every rank: a stop or a checkpoint that one rank decides, all ranks act on."""
    if not info.enabled:
        return flags
    value = torch.tensor([1 if f else 0 for f in flags], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return [bool(v) for v in value.tolist()]


def broadcast_flag(info: DistInfo, flag: bool, device: torch.device) -> bool:
    """Rank 0's decision (stop early) for every rank."""
    if not info.enabled:
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def all_reduce_sum(info: DistInfo, values: list[float], device: torch.device) -> list[float]:
    if not info.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather_objects(info: DistInfo, value: Any) -> list[Any]:
    """`value` of every rank, in rank order (every rank gets the list)."""
    if not info.enabled:
        return [value]
    found: list[Any] = [None] * info.world_size
    dist.all_gather_object(found, value)
    return found


def cooperation(info: DistInfo, device: torch.device) -> Cooperation:
    """How this job's processes share feature-cache building (see `meldctl.data.cache`)."""
    if not info.enabled:
        return Cooperation()
    return Cooperation(
        local_rank=info.local_rank,
        local_world=info.local_world_size,
        barrier=lambda: dist.barrier(),
        all_true=lambda flag: not any_flags(info, [not flag], device)[0],
        any_true=lambda flag: any_flags(info, [flag], device)[0],
    )


def teardown(info: DistInfo) -> None:
    """Leave the process group. Call it once nothing refers to DDP any more.

    A DDP reducer that outlives `destroy_process_group` frees the gloo group later, from whatever code drops
    the last reference, and gloo's destructor can then deadlock with a gloo thread that waits for the GIL: the
    rank never exits. Collecting first frees any such reducer caught in a reference cycle while the group
    still exists.
    """
    if info.enabled and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
