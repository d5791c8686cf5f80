"""Data-parallel training under `torchrun`: torch.distributed with DDP (gloo on CPU, NCCL on
CUDA). One process per rank; rank 0 prepares data, writes checkpoints, exports and logs.

`Dist` is the few collective operations the trainer needs, and a no-op when there is one
process, so the single-process path runs the same code.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    # where collective tensors live: NCCL reduces only CUDA tensors, gloo CPU ones
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (it writes what the others then read), the others once
        it is done: each rank passes one barrier, before the block or after it."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()

    def mean(self, values: list[float]) -> list[float]:
        """The mean of each value over ranks."""
        if not self.active:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return [v / self.world for v in tensor.tolist()]

    def any(self, flag: bool) -> bool:
        """True on every rank if it is True on any (a stop request seen by one rank)."""
        if not self.active:
            return flag
        tensor = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item())

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


# Rank r's dropout stream is seed + RANK_STREAM * r (the value is kept: it decides the
# trajectory of every multi-rank checkpoint written so far).
RANK_STREAM = 7919


def rank_seed(seed: int, rank: int) -> int:
    """Rank `rank`'s dropout stream: every rank starts from the same initial weights (seeded
    with `seed` before), then draws its own dropout masks."""
    return seed + RANK_STREAM * rank


def from_environment(want_cuda: bool) -> Dist:
    """Join the process group torchrun describes in the environment, if there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if want_cuda else "gloo"
        if want_cuda:
            torch.cuda.set_device(local_rank)
        # a dead peer ends the job through torchrun; this bounds a collective left waiting
        dist.init_process_group(backend, timeout=timedelta(minutes=10))
    device = torch.device("cuda", local_rank) if want_cuda else torch.device("cpu")
    return Dist(rank=rank, world=world, local_rank=local_rank, device=device)


def shutdown() -> None:
    if dist.is_initialized():
        # A DDP module keeps its process group (and gloo's worker threads) alive, and DDP's
        # hooks make it a reference cycle: left to the interpreter's final collection, those
        # threads are destroyed during finalization and the rank aborts ("terminate called
        # without an active exception", seen once on a loaded CI run). Collected here, the
        # group goes while the interpreter is whole.
        gc.collect()
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(want_cuda: bool) -> Iterator[Dist]:
    """The ranks of the torchrun job this process joins (one process alone without torchrun);
    the group is left when the block returns or fails."""
    ranks = from_environment(want_cuda)
    try:
        yield ranks
    finally:
        if ranks.active:
            shutdown()
