"""Scoring sharded over processes (torchrun): each rank scores a slice of the calibration set, sums are
all-reduced, so every rank ends with the same statistics and rank 0 writes the files."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")


@contextmanager
def process_group() -> Iterator[bool]:
    """Inside: joined to the process group torchrun describes (WORLD_SIZE > 1; gloo on CPU, nccl on GPUs),
    yielding whether there is one. On the way out every rank waits for the others and the group is torn
    down: a rank that exits with gloo's threads still running aborts ("terminate called without an active
    exception")."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield dist.is_initialized()
        return
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield True
        dist.barrier()
    finally:
        dist.destroy_process_group()


def rank_and_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return rank_and_size()[0] == 0


def shard(items: Sequence[T]) -> list[int]:
    """Indices of the items this rank works on (round robin, so lengths spread evenly)."""
    rank, size = rank_and_size()
    return list(range(rank, len(items), size))


def local_items(items: Sequence[T]) -> list[T]:
    """The items this rank works on."""
    return [items[index] for index in shard(items)]


def all_reduce_sum(array: np.ndarray) -> np.ndarray:
    """Sum an array over ranks (float64 on the wire, so the reduction adds no rounding of its own)."""
    if rank_and_size()[1] == 1:
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.numpy()
