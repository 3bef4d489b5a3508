"""torchrun support: process group set-up from the environment torchrun provides, rank checks, teardown."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); gloo on CPU, nccl on CUDA."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info


def resolve_device(name: str, info: DistInfo | None = None) -> torch.device:
    """`auto` is CUDA when available; each torchrun process takes the GPU of its local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        from meldctl.errors import MeldError

        if not torch.cuda.is_available():
            raise MeldError("--device cuda was asked for, but no CUDA device is available", hint="use --device cpu")
        local_rank = int(os.environ.get("LOCAL_RANK", "0")) if info is None else info.local_rank
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_flag(info: DistInfo, flag: bool, device: torch.device) -> bool:
    """Rank 0's decision (stop early, stop on a signal) for every rank."""
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


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
