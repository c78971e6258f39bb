"""The one launcher of multi-process training: torchrun's environment -> this process's place and device.

``torchrun --nproc-per-node N pump-train … train …`` starts N copies of a command; each reads
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` here and joins one process group: NCCL on CUDA
(device ``cuda:LOCAL_RANK``), gloo on CPU. Without torchrun (``WORLD_SIZE`` unset or 1) nothing
is initialised and the command runs as one process, unchanged. The GAN loop and the classifier
and segmenter loops use the same launcher; only rank 0 validates and writes files.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in a (possibly one-process) run."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE_PROCESS = ProcessGroup()


def init_process_group(device: str) -> tuple[ProcessGroup, str]:
    """torch.distributed from torchrun's environment (WORLD_SIZE > 1): gloo on CPU, NCCL on CUDA.

    Returns the group and this process's device (``cuda:LOCAL_RANK`` under torchrun on CUDA).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return ProcessGroup(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if on_cuda:
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if on_cuda else "gloo")
    return ProcessGroup(rank=rank, world_size=world), device


@contextlib.contextmanager
def launched(device: str) -> Iterator[tuple[ProcessGroup, str]]:
    """:func:`init_process_group` for the length of a command; the group it started is destroyed after."""
    started_here = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
    group, device = init_process_group(device)
    try:
        yield group, device
    finally:
        if started_here and dist.is_initialized():
            dist.destroy_process_group()


def shard(batch_size: int, group: ProcessGroup) -> slice:
    """This rank's slice of a global batch of ``batch_size`` (equal shards; the size must divide)."""
    if batch_size % group.world_size:
        raise ValueError(
            f"batch size {batch_size} does not split over {group.world_size} processes; "
            f"choose a multiple of {group.world_size}"
        )
    size = batch_size // group.world_size
    return slice(group.rank * size, (group.rank + 1) * size)


def wrap_for_processes(module: nn.Module, group: ProcessGroup, device: torch.device) -> nn.Module:
    """``module`` under DistributedDataParallel when several processes train it, else itself.

    DDP broadcasts rank 0's parameters and buffers at construction (and the buffers, e.g.
    batch-norm statistics, before every forward) and averages the gradients in ``backward``,
    so every rank holds the same weights after every step.
    """
    if not group.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def sync_buffers(module: nn.Module, group: ProcessGroup) -> None:
    """Rank 0's buffers on every rank (batch-norm statistics move with each rank's last forward)."""
    if group.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)
