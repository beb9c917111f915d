"""``bench`` on many processes with torch.distributed: ranks, shards and the merge.

Started by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``), :func:`ranks` joins the process group — ``nccl`` when the rank has a GPU (the
GPU numbered ``LOCAL_RANK`` on its machine), ``gloo`` on CPUs — and leaves it afterwards. Started
plainly, it is one rank of one: nothing is initialised and every collective is the identity, so a
one-process run takes exactly the same code path.

**Shards.** Work is cut into units that do not depend on the number of ranks (the batches of
images, then the batches of pairs, formed over the whole list as a one-process run forms them)
and unit ``k`` goes to rank ``k mod N`` (:meth:`Ranks.mine`). Each image is therefore explained in
the same batch, with the same neighbours, as in a one-process run: the same numbers.

**The merge.** Each rank sends its units' records to rank 0 (``gather_object``, so ranks on other
machines need no shared disk); rank 0 orders them as a one-process run would and writes the
tables. ``all_gather_object`` shares what every rank needs (the targets, for the pairs).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the benchmark's processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: a one-process run

    @property
    def leader(self) -> bool:
        """Rank 0: it merges the records and writes the tables."""
        return self.rank == 0

    def mine(self, units: Sequence[T]) -> list[tuple[int, T]]:
        """``(index, unit)`` of the units this rank works on: ``index mod world == rank``."""
        return [(index, unit) for index, unit in enumerate(units) if index % self.world == self.rank]

    def barrier(self) -> None:
        if self.backend is not None:
            dist.barrier()

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's ``value`` on rank 0 (in rank order), None elsewhere."""
        if self.backend is None:
            return [value]
        gathered: list[Any] | None = [None] * self.world if self.leader else None
        dist.gather_object(value, gathered, dst=0)
        return gathered

    def share(self, value: Any) -> list[Any]:
        """Every rank's ``value`` on every rank (in rank order)."""
        if self.backend is None:
            return [value]
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, value)
        return gathered

    def device(self, requested: str | torch.device | None) -> str | torch.device | None:
        """The device this rank runs on: its own GPU under ``nccl``, else ``requested``."""
        if self.backend == "nccl":
            return torch.device("cuda", self.local_rank)
        return requested


def launched() -> bool:
    """Started by ``torchrun`` (or another launcher that sets ``WORLD_SIZE`` and ``RANK``)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


@contextmanager
def ranks(device: str | torch.device | None = None, timeout_minutes: float = 60) -> Iterator[Ranks]:
    """Join the process group when launched by torchrun (``nccl`` with GPUs unless ``device``
    says CPU, else ``gloo``), yield this rank's :class:`Ranks`, and leave the group afterwards.
    A plain start, or a group already joined by the caller, is used as it is."""
    if not launched() or int(os.environ["WORLD_SIZE"]) == 1:
        yield Ranks()
        return
    if dist.is_initialized():  # the caller's own group
        yield Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_backend())
        return
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    wants_cpu = device is not None and torch.device(device).type == "cpu"
    backend = "nccl" if torch.cuda.is_available() and not wants_cpu else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    try:
        yield Ranks(dist.get_rank(), dist.get_world_size(), local_rank, backend)
    finally:
        dist.destroy_process_group()
