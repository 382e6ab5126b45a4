"""Heavy stages sharded over processes (torchrun): each rank works on a slice of the examples (scoring, the
refit's statistics, the distillation's batches), sums are all-reduced, so every rank ends with the same result
and rank 0 writes the files.

A whole run under torchrun (``lead_or_serve``): rank 0 runs the pipeline; the other ranks wait for it and
join each heavy stage it calls through ``collective``. Everything else (the search's timings, export, the
evaluation) runs on rank 0 alone, while the others sleep, so latency is measured on an otherwise idle CPU."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")

_LEADING = False  # rank 0 of a torchrun job whose other ranks serve its collective calls


@contextmanager
def process_group() -> Iterator[bool]:
    """Inside: joined to the process group torchrun describes (WORLD_SIZE > 1; gloo on CPU, nccl on GPUs),
    yielding whether there is one. On the way out every rank waits for the others and the group is torn
    down: a rank that exits with gloo's threads still running aborts ("terminate called without an active
    exception")."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield dist.is_initialized()
        return
    if torch.cuda.is_available():  # one GPU per process; collectives go through nccl, on the GPU
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
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
    tensor = _on_the_wire(array)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().numpy()


def broadcast_from_main(array: np.ndarray) -> np.ndarray:
    """Rank 0's array on every rank (a decision that must not differ between processes, e.g. a time estimate)."""
    if rank_and_size()[1] == 1:
        return array
    tensor = _on_the_wire(array)
    dist.broadcast(tensor, src=0)
    return tensor.cpu().numpy()


def _on_the_wire(array: np.ndarray) -> torch.Tensor:
    """float64 (the collective adds no rounding of its own), on the GPU when the backend is nccl."""
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
    return tensor.cuda() if dist.get_backend() == "nccl" else tensor


def lead_or_serve(lead: Callable[[], T]) -> T | None:
    """Run ``lead`` on rank 0 (or alone without torchrun) and return its result; under torchrun the other ranks
    instead serve rank 0's ``collective`` calls until ``lead`` returns or fails, and return None."""
    global _LEADING
    with process_group() as grouped:
        if not grouped:
            return lead()
        if not is_main_process():
            _serve()
            return None
        _LEADING = True
        try:
            return lead()
        finally:
            _LEADING = False
            dist.broadcast_object_list([None], src=0)  # the workers' signal to stop


def collective(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)``, which must be a heavy stage that shards its work itself (all-reducing its
    sums); when this process leads a torchrun job the waiting ranks run the same call with it."""
    if _LEADING:
        dist.broadcast_object_list([(function, args, kwargs)], src=0)
    return function(*args, **kwargs)


def _serve() -> None:
    """A worker's loop: run each call rank 0 sends (its own result is dropped; rank 0 has the same) until None."""
    while True:
        message: list[Any] = [None]
        dist.broadcast_object_list(message, src=0)
        if message[0] is None:
            return
        function, args, kwargs = message[0]
        function(*args, **kwargs)
