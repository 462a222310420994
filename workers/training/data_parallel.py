"""One rank of a data-parallel training: its shard of each batch and the collectives the one
training loop needs (`resources.workers > 1`).

Every rank draws the same batch order (the loop's shuffler has the spec's seed) and takes its
contiguous part of each batch. Gradients are averaged by DistributedDataParallel during
backward (gloo on the CPU, NCCL on GPUs). Each rank's loss is weighted by its share of the
batch, so the averaged gradient is exactly the whole batch's: the same update a single worker
makes, for any batch size, last partial batch included. Train metric sums are added across
ranks at the end of an epoch; validation runs on every rank with the same weights and gives
the same numbers. Rank 0 decides when training stops (early stopping, a deadline, a callback)
and tells the others, so every rank runs the same steps.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from models.objectives import Objective


class TrainingStep(nn.Module):
    """`model.training_step(x, y, objective)` as a module's forward, so DistributedDataParallel,
    which synchronizes gradients of what its forward ran, can wrap it."""

    def __init__(self, model: nn.Module, objective: Objective):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.training_step(x, y, self.objective)  # type: ignore[operator]


class DataParallel:
    """This process's rank in an initialized torch.distributed process group."""

    def __init__(self, rank: int, world_size: int, device: torch.device):
        self.rank, self.world_size, self.device = rank, world_size, device

    @classmethod
    def from_process_group(cls, device: torch.device) -> DataParallel:
        return cls(dist.get_rank(), dist.get_world_size(), device)

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    def wrap(self, step: TrainingStep) -> nn.Module:
        """DDP over the training step; constructing it copies rank 0's weights and buffers to
        every rank, so replicas start identical whatever they did before."""
        device_ids = [self.device.index or 0] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(step, device_ids=device_ids)

    def shard(self, index: torch.Tensor) -> tuple[torch.Tensor, float]:
        """This rank's part of a batch, and the weight of its loss (its share of the batch
        times the number of ranks). A rank left without examples (a last batch smaller than
        the number of ranks) steps on the batch's first example with weight 0: it must still
        take part in the gradient all-reduce."""
        part = torch.tensor_split(index, self.world_size)[self.rank]
        if len(part) == 0:
            return index[:1], 0.0
        return part, len(part) * self.world_size / len(index)

    def sum_metrics(self, sums: dict[str, torch.Tensor | float]
                    ) -> dict[str, torch.Tensor | float]:
        """Every rank's epoch metric sums added up, in one all-reduce."""
        keys = sorted(sums)
        packed = torch.stack([torch.as_tensor(sums[k]).detach().to(self.device, torch.float64)
                              .reshape(()) for k in keys])
        dist.all_reduce(packed, op=dist.ReduceOp.SUM)
        return dict(zip(keys, packed.unbind(), strict=True))

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` (any picklable object) on every rank."""
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]
