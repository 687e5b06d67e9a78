"""The training loop every stage shares: AdamW, warm-up + cosine schedule, mixed precision
on CUDA, gradient clipping, cancellation, and a checkpoint after every epoch.

A stage lives in its own folder. ``checkpoint.pt`` holds everything needed to continue
(model weights including the learnable temperature, optimiser, scheduler, grad scaler,
the number of finished epochs, the stage's own state such as its pseudo-labels, and the
per-epoch history); ``model.pt`` is written when the stage has finished. Running the same
stage again therefore continues after the last finished epoch, or does nothing at all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ucvgl.services.progress import NullProgress, Progress
from ucvgl.services.training.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    ddp_loss_scale,
    gather_with_grad,
    wrap_for_training,
)
from ucvgl.shared.fileio import atomic_torch_save

if TYPE_CHECKING:
    from ucvgl.services.presets import Preset

CHECKPOINT = "checkpoint.pt"
FINAL = "model.pt"


@dataclass(frozen=True)
class StageConfig:
    """Optimisation settings of one training stage."""

    name: str
    epochs: int
    lr: float
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"{self.name}: epochs must be >= 0, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"{self.name}: lr must be > 0, got {self.lr}")

    @classmethod
    def from_preset(
        cls, preset: Preset, name: str, *, epochs: int, lr: float | None = None, seed: int = 0
    ) -> StageConfig:
        """Settings of one stage with ``preset``'s weight decay, warm-up and clipping.

        ``lr`` defaults to ``preset.lr``.
        """
        return cls(
            name,
            epochs,
            preset.lr if lr is None else lr,
            preset.weight_decay,
            preset.warmup_fraction,
            preset.grad_clip,
            seed,
        )


@dataclass
class StageResult:
    """What a finished stage reports: per-epoch history and where its weights are."""

    name: str
    model_path: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    resumed_from_epoch: int = 0
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model_path"] = str(self.model_path)
        return d


def cosine_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate multiplier: linear warm-up, then cosine decay to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def autocast_for(device: torch.device):
    """fp16 autocast on CUDA, plain fp32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast("cpu", enabled=False)


def stage_done(stage_dir: Path) -> bool:
    """True when the stage in ``stage_dir`` has finished (its ``model.pt`` exists)."""
    return (Path(stage_dir) / FINAL).exists()


def load_weights_into(model: nn.Module, path: Path) -> dict[str, Any]:
    """Load a ``save_model`` file's weights into ``model``; returns its ``extra`` dict."""
    from ucvgl.services.models import load_model

    loaded, extra = load_model(path, map_location="cpu")
    model.load_state_dict(loaded.state_dict())
    return extra or {}


def move_batch(batch: Any, device: torch.device) -> Any:
    """Move tensors of a (nested) batch to ``device`` (channels_last images on CUDA)."""
    if isinstance(batch, Tensor):
        batch = batch.to(device, non_blocking=True)
        if device.type == "cuda" and batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_batch(b, device) for b in batch)
    return batch


LossFn = Callable[[nn.Module, Any], Tensor]
"""``loss_fn(step_module, batch) -> scalar loss`` (batch already on the device)."""


def contrastive_loss(
    queries: Tensor,
    references: Tensor,
    log_scale: Tensor,
    smoothing: float,
    positive_mask: Tensor | None = None,
) -> Tensor:
    """Symmetric InfoNCE on the batch gathered from every rank.

    Args:
        queries: [B, D] this rank's query embeddings.
        references: [B, D] this rank's reference embeddings (row i pairs with query i).
        log_scale: ln of the logit scale (the model's clamped parameter).
        smoothing: label smoothing.
        positive_mask: bool [B] rows that have a positive (None = all).

    Returns:
        The loss of the global batch, multiplied by the DDP world size (see
        :func:`ddp_loss_scale`) so averaged DDP gradients equal the global gradient (the
        temperature, whose gradient every rank computes in full, is scaled back).
    """
    from ucvgl.services.losses import SymmetricInfoNCE

    q = gather_with_grad(queries)
    r = gather_with_grad(references)
    mask = None if positive_mask is None else gather_with_grad(positive_mask.to(torch.uint8)).bool()
    world = ddp_loss_scale()
    if world > 1:
        # Every rank sees the temperature's FULL gradient (it is shared, not split by rows),
        # so its share is divided by the world size to undo the loss scaling below.
        log_scale = log_scale / world + log_scale.detach() * (1.0 - 1.0 / world)
    loss = SymmetricInfoNCE(label_smoothing=smoothing)(q.float(), r.float(), log_scale, mask)
    return loss * world


class StageRunner:
    """Runs the epochs of one stage with checkpoint-and-resume.

    Args:
        model: the ``TwoViewModel`` (trained in place; already holding the previous
            stage's weights).
        cfg: optimisation settings.
        stage_dir: the stage's folder (checkpoint and final weights).
        device: where to train.
        progress: reports ``cfg.name`` progress and is checked for cancellation.
        dist_info: the process group (single process by default).
        progress_range: (start, end) of this stage within ``progress``'s 0..1.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: StageConfig,
        stage_dir: Path,
        *,
        device: str | torch.device = "cpu",
        progress: Progress | None = None,
        dist_info: DistInfo | None = None,
    ) -> None:
        self.model = model
        self.cfg = cfg
        self.stage_dir = Path(stage_dir)
        self.device = torch.device(device)
        self.progress = progress or NullProgress()
        self.dist = dist_info or DistInfo(device=str(self.device))

    def run(
        self,
        epoch_batches: Callable[[int], Iterable[Any]],
        steps_per_epoch: int,
        loss_fn: LossFn,
        *,
        state: dict[str, Any] | None = None,
        on_epoch_end: Callable[[int], dict[str, Any]] | None = None,
        final_extra: dict[str, Any] | None = None,
    ) -> StageResult:
        """Train ``cfg.epochs`` epochs, resuming from ``checkpoint.pt`` when present.

        Args:
            epoch_batches: ``epoch -> iterable of batches`` (a fresh loader per epoch, so
                samplers can reshuffle or use new neighbours).
            steps_per_epoch: number of batches per epoch (for the schedule).
            loss_fn: the stage's loss on one batch.
            state: the stage's own state saved in every checkpoint (pseudo-labels,
                curriculum position...); on resume the saved state is returned in
                ``StageResult.extra``.
            on_epoch_end: called after each epoch; its dict joins the epoch's history.
            final_extra: stored with the final weights (``save_model(extra=...)``).
        """
        from ucvgl.services.models import save_model

        final = self.stage_dir / FINAL
        if final.exists():
            extra = load_weights_into(self.model, final)
            return StageResult(
                self.cfg.name, final, extra.get("history", []), extra, self.cfg.epochs, True
            )
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        model = self.model.to(self.device)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        step_module = wrap_for_training(model, self.dist)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay
        )
        total = max(1, self.cfg.epochs * steps_per_epoch)
        warmup = int(round(self.cfg.warmup_fraction * total))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_lambda(total, warmup))
        scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda")

        start_epoch, history, stage_state = 0, [], dict(state or {})
        ckpt_path = self.stage_dir / CHECKPOINT
        if ckpt_path.exists():
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            scaler.load_state_dict(ckpt["scaler"])
            start_epoch, history = int(ckpt["epoch"]), list(ckpt["history"])
            stage_state = dict(ckpt.get("state", {}))
        resumed_from = start_epoch

        model.train()
        for epoch in range(start_epoch, self.cfg.epochs):
            torch.manual_seed(self.cfg.seed * 1000 + epoch)
            began, losses = time.perf_counter(), []
            for step, batch in enumerate(epoch_batches(epoch)):
                self.progress.check_cancelled()
                batch = move_batch(batch, self.device)
                with autocast_for(self.device):
                    loss = loss_fn(step_module, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{self.cfg.name}: loss became {loss.item()} at epoch {epoch} step "
                        f"{step}; lower the learning rate"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if self.cfg.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                losses.append(float(loss.detach()) / ddp_loss_scale())
                done = epoch * steps_per_epoch + step + 1
                self.progress.update(
                    self.cfg.name,
                    min(1.0, done / total),
                    f"epoch {epoch + 1}/{self.cfg.epochs} loss {losses[-1]:.3f}",
                )
            record = {
                "epoch": epoch + 1,
                "loss": all_reduce_mean(sum(losses) / max(1, len(losses)), str(self.device)),
                "steps": len(losses),
                "lr": optimizer.param_groups[0]["lr"],
                "logit_scale": float(model.clamped_logit_scale().detach().exp()),
                "seconds": round(time.perf_counter() - began, 3),
            }
            if on_epoch_end is not None:
                record.update(on_epoch_end(epoch))
            history.append(record)
            if self.dist.is_main:
                atomic_torch_save(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict(),
                        "epoch": epoch + 1,
                        "history": history,
                        "state": stage_state,
                        "stage": asdict(self.cfg),
                    },
                    ckpt_path,
                )
            barrier()
        extra = {**(final_extra or {}), **stage_state, "history": history, "stage": self.cfg.name}
        if self.dist.is_main:
            save_model(model, final, extra=extra)
        barrier()
        return StageResult(self.cfg.name, final, history, extra, resumed_from, False)
