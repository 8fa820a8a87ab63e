"""Data-parallel training under ``torchrun``: the same recipes, one process per device.

Without ``torchrun`` (``WORLD_SIZE`` unset or 1) everything here is a no-op, so a recipe reads
the same either way: shard the epoch's example order with a ``DistributedSampler``, wrap the
model in ``DistributedDataParallel``, evaluate and write the checkpoint on rank 0 only.
"""

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler


@dataclass(frozen=True)
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def order(self, n: int, epoch: int, seed: int, gen: torch.Generator) -> torch.Tensor:
        """This rank's example indices for an epoch: a seeded shuffle, split between ranks."""
        if self.world == 1:
            return torch.randperm(n, generator=gen)
        sampler: DistributedSampler[int] = DistributedSampler(
            range(n),  # type: ignore[arg-type]
            num_replicas=self.world,
            rank=self.rank,
            shuffle=True,
            seed=seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        return torch.tensor(list(sampler))

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The module to train: ``DistributedDataParallel`` when there is more than one rank."""
        if self.world == 1:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order (on every rank)."""
        if self.world == 1:
            return [value]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def init(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the ``torchrun`` job if there is one (gloo on CPU, NCCL on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=dist.get_rank(), world=world), device


def shutdown(job: Dist) -> None:
    if job.world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
