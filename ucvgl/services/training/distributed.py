"""Data-parallel training across the GPUs of one machine (launched with ``torchrun``).

The contrastive loss needs the WHOLE batch: every rank gathers the embeddings of all
ranks with :func:`gather_with_grad` (``all_gather`` returns tensors without gradient, so
the local tensor is put back in its slot and gradients flow through this rank's part).
Every rank then computes the same loss on the global batch; the gradient of each rank's
own embeddings is exact, and since DDP AVERAGES gradients over ranks the loss is scaled by
the world size before ``backward`` (:func:`ddp_loss_scale`), so the summed update equals
the single-process update on the concatenated batch. The learnable temperature is a
parameter of the model, so DDP synchronises it like every other weight.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank, world size, local rank and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the rank that writes checkpoints and reports)."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group described by torchrun's environment, if any.

    Without ``WORLD_SIZE`` > 1 this returns a single-process :class:`DistInfo`. With it,
    NCCL is used on CUDA (one GPU per local rank) and gloo on CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if world <= 1:
        return DistInfo(device=device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device)


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` [B, ...] of every rank along dim 0, keeping this rank's gradient.

    All ranks must pass the same shape (use ``drop_last`` batches). Without an initialised
    process group this returns ``x``.

    Returns:
        [world_size * B, ...], rank r's rows at ``r*B:(r+1)*B``.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts, dim=0)


def ddp_loss_scale() -> float:
    """Factor for the loss before ``backward`` so that DDP's gradient AVERAGE equals the
    gradient of the global-batch loss (the world size; 1 without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return float(dist.get_world_size())
    return 1.0


class ViewPairForward(nn.Module):
    """One ``forward`` for any mix of views, so DDP sees a single forward per step.

    ``forward(ground=[x1, ...], satellite=[y1, ...])`` embeds each list with its encoder
    (one encoder call per view on the concatenated inputs) and returns
    ``(ground_embeddings list, satellite_embeddings list, log_scale)`` where log_scale is
    the model's clamped ln(temperature scale), the value ``SymmetricInfoNCE`` takes.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @staticmethod
    def _run(encoder: nn.Module, xs: list[Tensor]) -> list[Tensor]:
        if not xs:
            return []
        sizes = [len(x) for x in xs]
        return list(encoder(torch.cat(xs)).split(sizes))

    def forward(
        self, ground: list[Tensor] | None = None, satellite: list[Tensor] | None = None
    ) -> tuple[list[Tensor], list[Tensor], Tensor]:
        g = self._run(self.model.ground_encoder, ground or [])
        s = self._run(self.model.satellite_encoder, satellite or [])
        return g, s, self.model.clamped_logit_scale()


def wrap_for_training(model: nn.Module, info: DistInfo) -> nn.Module:
    """A :class:`ViewPairForward` around ``model``, inside DDP when ``info`` is distributed."""
    step_module = ViewPairForward(model)
    if not info.enabled:
        return step_module
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(info.device).index] if info.device.startswith("cuda") else None
    return DistributedDataParallel(step_module, device_ids=ids, find_unused_parameters=True)


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: float, device: str = "cpu") -> float:
    """Mean of a Python float over ranks (for logging losses)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def shard_batches(batches: list[list[int]], info: DistInfo, min_size: int = 2) -> list[list[int]]:
    """This rank's share of every global batch, all ranks getting the same number of items.

    Each global batch is cut to a multiple of the world size and rank r takes items
    ``r, r + W, ...``; batches left with fewer than ``min_size`` items in total are
    dropped (a contrastive batch needs negatives). Single process: the batches unchanged
    (minus the too-small ones).
    """
    out = []
    w = info.world_size
    for batch in batches:
        usable = len(batch) - len(batch) % w
        if usable < max(min_size, w):
            continue
        out.append(batch[:usable][info.rank :: w])
    return out
