"""The training loop every stage shares: AdamW, warm-up + cosine schedule, mixed precision
on CUDA, gradient clipping, cancellation, and a checkpoint after every epoch.

A stage lives in its own folder. ``checkpoint.pt`` holds everything needed to continue
(model weights including the learnable temperature, optimiser, scheduler, grad scaler,
the number of finished epochs, the stage's own state such as its pseudo-labels, and the
per-epoch history); ``model.pt`` is written when the stage has finished. Running the same
stage again therefore continues after the last finished epoch, or does nothing at all.

Budgets follow convergence (:class:`StageConfig` ``max_epochs``): a stage runs ``epochs``
epochs (cycle 1: warm-up + cosine), and while the mean epoch loss still drops by at least
``min_improvement`` (relative) over a cycle and ``max_epochs`` allows, another cycle of
``epochs`` epochs follows with a warm restart (a fresh warm-up + cosine from the stage's
learning rate; the optimiser state is kept). The cycle plan is saved in every checkpoint,
so a resumed stage follows the same schedule; the decision (``budget``) is saved with the
final weights and in ``budget.json``.

A stage can instead be one window of a longer schedule (``StageConfig.epoch_window``, the
authors' AMM: one cosine over all rounds, constant within an epoch, no warm-up), and can
start from another stage's AdamW moments (``StageRunner.run(optimizer_state=...)``), so
consecutive stages train as one run with one optimiser.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ucvgl.services.progress import NullProgress, Progress, report_count
from ucvgl.services.training.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    ddp_loss_scale,
    gather_with_grad,
    wrap_for_training,
)
from ucvgl.shared.fileio import atomic_torch_save, atomic_write_text

if TYPE_CHECKING:
    from ucvgl.services.presets import Preset

CHECKPOINT = "checkpoint.pt"
FINAL = "model.pt"
BUDGET = "budget.json"

STOP_REASONS = ("fixed", "converged", "max_epochs")
"""Why a stage stopped: no ``max_epochs`` (a fixed budget), the loss stopped improving,
or it was still improving when ``max_epochs`` ran out."""


@dataclass(frozen=True)
class StageConfig:
    """Optimisation settings of one training stage.

    Attributes:
        max_epochs: None runs exactly ``epochs`` epochs (one warm-up + cosine schedule).
            Otherwise, after each cycle of ``epochs`` epochs whose mean epoch loss dropped
            by at least ``min_improvement`` (relative), another cycle follows (warm restart,
            capped at ``max_epochs`` epochs in all).
        min_improvement: the relative loss drop over a cycle that earns another cycle: the
            loss of the cycle's last epoch against that of the previous cycle's last epoch
            (cycle 1: against its own first epoch).
        epoch_window: None, or (offset, total): this stage's epochs are epochs
            ``offset .. offset + epochs - 1`` of a ``total``-epoch schedule whose learning
            rate is ``lr * (1 + cos(pi * e / total)) / 2`` during epoch e (no warm-up, one
            value per epoch, as the authors' ``adjust_learning_rate``). Needs
            ``max_epochs`` None and ``offset + epochs <= total``.
    """

    name: str
    epochs: int
    lr: float
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    max_epochs: int | None = None
    min_improvement: float = 0.05
    epoch_window: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.epoch_window is not None:
            offset, total = self.epoch_window
            if self.max_epochs is not None or not 0 <= offset <= offset + self.epochs <= total:
                raise ValueError(
                    f"{self.name}: epoch_window (offset, total) needs max_epochs None and "
                    f"0 <= offset <= offset + epochs <= total, got {self.epoch_window} with "
                    f"{self.epochs} epochs"
                )
        if self.epochs < 0:
            raise ValueError(f"{self.name}: epochs must be >= 0, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"{self.name}: lr must be > 0, got {self.lr}")
        if self.max_epochs is not None and self.max_epochs < self.epochs:
            raise ValueError(
                f"{self.name}: max_epochs must be >= epochs ({self.epochs}), got {self.max_epochs}"
            )
        if not self.min_improvement >= 0:
            raise ValueError(
                f"{self.name}: min_improvement must be >= 0, got {self.min_improvement}"
            )

    @classmethod
    def from_preset(
        cls, preset: Preset, name: str, *, epochs: int, lr: float | None = None, seed: int = 0
    ) -> StageConfig:
        """Settings of one stage with ``preset``'s weight decay, warm-up, clipping and budget.

        ``lr`` defaults to ``preset.lr``; ``max_epochs`` is
        ``ceil(preset.max_epoch_factor * epochs)`` (None, a fixed budget, for a factor of 1).
        """
        factor = preset.max_epoch_factor
        return cls(
            name,
            epochs,
            preset.lr if lr is None else lr,
            preset.weight_decay,
            preset.warmup_fraction,
            preset.grad_clip,
            seed,
            None if factor == 1.0 else math.ceil(factor * epochs),
            preset.min_improvement,
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
    budget: dict[str, Any] = field(default_factory=dict)

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


def new_cycle(
    start_epoch: int, epochs: int, start_step: int, steps_per_epoch: int, warmup_fraction: float
) -> dict[str, int]:
    """One cycle of a stage's schedule: ``epochs`` epochs of warm-up + cosine.

    ``start_step`` is the optimiser step the cycle begins at; its ``steps`` and ``warmup``
    are those of a stage of ``epochs`` epochs (so cycle 1 is exactly the fixed schedule).
    """
    total = max(1, epochs * steps_per_epoch)
    return {
        "start_epoch": int(start_epoch),
        "epochs": int(epochs),
        "start_step": int(start_step),
        "steps": total,
        "warmup": int(round(warmup_fraction * total)),
    }


def cycle_lambda(plan: list[dict[str, int]]) -> Callable[[int], float]:
    """Learning-rate multiplier of a cycle plan (warm restarts).

    Each cycle runs :func:`cosine_lambda` over its own steps from its ``start_step``; the
    plan may grow while training (the function reads the list, it does not copy it).
    """

    def factor(step: int) -> float:
        cycle = plan[0]
        for c in plan[1:]:
            if step >= c["start_step"]:
                cycle = c
        return cosine_lambda(cycle["steps"], cycle["warmup"])(step - cycle["start_step"])

    return factor


def window_lambda(offset: int, total: int, steps_per_epoch: int) -> Callable[[int], float]:
    """Learning-rate multiplier of a stage that is a window of one longer cosine.

    During the stage's epoch e (0-based; step // steps_per_epoch) the multiplier is
    ``(1 + cos(pi * (offset + e) / total)) / 2``: constant within an epoch, no warm-up.
    """
    per_epoch = max(1, steps_per_epoch)

    def factor(step: int) -> float:
        epoch = offset + step // per_epoch
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch, total) / max(1, total)))

    return factor


def import_optimizer_moments(optimizer: torch.optim.Optimizer, path: Path) -> bool:
    """Load the per-parameter AdamW state of another stage's ``checkpoint.pt``.

    Only the moments (``state``) are taken; this stage's learning rate, weight decay and
    schedule stay. Returns False (and changes nothing) when ``path`` is missing or holds
    another parameter layout.
    """
    path = Path(path)
    if not path.is_file():
        return False
    saved = torch.load(path, map_location="cpu", weights_only=False).get("optimizer")
    own = optimizer.state_dict()
    if saved is None or [len(g["params"]) for g in saved["param_groups"]] != [
        len(g["params"]) for g in own["param_groups"]
    ]:
        return False
    own["state"] = saved["state"]
    optimizer.load_state_dict(own)
    return True


def cycle_of(plan: list[dict[str, int]], epoch: int) -> int:
    """The 1-based cycle of ``plan`` that 0-based ``epoch`` belongs to."""
    return 1 + sum(1 for c in plan[1:] if epoch >= c["start_epoch"])


def cycle_decision(
    cfg: StageConfig, history: list[dict[str, Any]], plan: list[dict[str, int]]
) -> tuple[int, dict[str, Any]]:
    """After the last cycle of ``plan`` has run: the epochs of the next cycle, and the budget.

    The improvement of a cycle is the relative drop of the mean epoch loss from the last
    epoch of the previous cycle (cycle 1: from its own first epoch) to the cycle's last
    epoch. Another cycle (``cfg.epochs`` epochs, capped at ``cfg.max_epochs`` in all) runs
    when it reaches ``cfg.min_improvement``. Only the all-reduced epoch losses of
    ``history`` are read, so every DDP rank takes the same decision.

    Returns:
        (epochs of the next cycle, 0 = stop; the budget record: ``epochs_run``,
        ``max_epochs``, ``cycles``, ``stop_reason`` (None while another cycle follows, else
        one of :data:`STOP_REASONS`), ``improvement``, ``min_improvement`` and ``detail``).
    """
    cycle = plan[-1]
    end = cycle["start_epoch"] + cycle["epochs"]
    budget: dict[str, Any] = {
        "epochs_run": end,
        "max_epochs": cfg.max_epochs,
        "cycles": len(plan),
        "stop_reason": "fixed" if cfg.max_epochs is None else "max_epochs",
        "improvement": None,
        "min_improvement": cfg.min_improvement,
        "detail": f"fixed budget of {cfg.epochs} epochs",
    }
    if end == 0 or len(history) < end:
        if cfg.max_epochs is not None:
            budget["detail"] = "no epoch to run"
        return 0, budget
    base_epoch = 1 if len(plan) == 1 else cycle["start_epoch"]
    before, after = float(history[base_epoch - 1]["loss"]), float(history[end - 1]["loss"])
    improvement = (before - after) / abs(before) if before else 0.0
    budget["improvement"] = improvement
    change = (
        f"cycle {len(plan)} took the loss from {before:.4f} (epoch {base_epoch}) to "
        f"{after:.4f} (epoch {end}): {improvement:+.1%} (min_improvement "
        f"{cfg.min_improvement:.1%})"
    )
    if cfg.max_epochs is None:
        budget["detail"] = f"fixed budget of {cfg.epochs} epochs; {change}"
        return 0, budget
    if improvement < cfg.min_improvement:
        budget["stop_reason"] = "converged"
        budget["detail"] = f"converged: {change}"
        if len(plan) == 1 and cycle["epochs"] == 1:
            budget["detail"] = "converged: a one-epoch first cycle has no loss drop to measure"
        return 0, budget
    if end >= cfg.max_epochs:
        budget["detail"] = f"still improving at max_epochs {cfg.max_epochs}: {change}"
        return 0, budget
    budget["stop_reason"] = None
    budget["detail"] = f"extending: {change}"
    return min(cfg.epochs, cfg.max_epochs - end), budget


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
        optimizer_state: Path | None = None,
    ) -> StageResult:
        """Train ``cfg.epochs`` epochs (more cycles while the loss improves, up to
        ``cfg.max_epochs``), resuming from ``checkpoint.pt`` when present.

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
            optimizer_state: another stage's ``checkpoint.pt`` whose AdamW moments this
                stage starts from (ignored when resuming this stage's own checkpoint, or
                when the file is missing); see :func:`import_optimizer_moments`.

        Returns:
            The result; its ``budget`` (also in ``extra``, ``checkpoint.pt`` and
            ``budget.json``) says how many epochs and cycles ran and why the stage stopped
            (see :func:`cycle_decision`). Every history row has its ``cycle``.
        """
        from ucvgl.services.models import save_model

        cfg = self.cfg
        final = self.stage_dir / FINAL
        if final.exists():
            extra = load_weights_into(self.model, final)
            budget = dict(extra.get("budget", {}))
            return StageResult(
                cfg.name,
                final,
                extra.get("history", []),
                extra,
                int(budget.get("epochs_run", cfg.epochs)),
                True,
                budget,
            )
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        model = self.model.to(self.device)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        step_module = wrap_for_training(model, self.dist)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        plan = [new_cycle(0, cfg.epochs, 0, steps_per_epoch, cfg.warmup_fraction)]
        if cfg.epoch_window is None:
            factor = cycle_lambda(plan)
        else:
            factor = window_lambda(*cfg.epoch_window, steps_per_epoch)
        # A plain function (not the plan object): the scheduler's state holds no schedule,
        # the checkpoint's "cycle_plan" does.
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step))
        scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda")

        start_epoch, history, stage_state = 0, [], dict(state or {})
        budget: dict[str, Any] | None = None
        ckpt_path = self.stage_dir / CHECKPOINT
        if ckpt_path.exists():
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
            plan[:] = ckpt.get("cycle_plan", plan)
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            scaler.load_state_dict(ckpt["scaler"])
            start_epoch, history = int(ckpt["epoch"]), list(ckpt["history"])
            stage_state = dict(ckpt.get("state", {}))
            budget = ckpt.get("budget")
        elif optimizer_state is not None:
            imported = import_optimizer_moments(optimizer, optimizer_state)
            stage_state["optimizer_from"] = str(optimizer_state) if imported else None
        resumed_from = start_epoch

        def planned_end() -> int:
            return plan[-1]["start_epoch"] + plan[-1]["epochs"]

        def decide() -> dict[str, Any]:
            """At the end of the plan: add a cycle (warm restart) or stop; the budget."""
            more, decision = cycle_decision(cfg, history, plan)
            if more:  # a fresh warm-up + cosine from the stage lr; the optimiser state kept
                at = scheduler.last_epoch
                plan.append(
                    new_cycle(planned_end(), more, at, steps_per_epoch, cfg.warmup_fraction)
                )
                for group, base_lr in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
                    group["lr"] = base_lr * factor(at)
                scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
            return decision

        if budget is None and start_epoch and start_epoch == planned_end():
            budget = decide()  # stopped after the checkpoint of a cycle's last epoch

        # Progress counts towards the most epochs the stage may run, so it never goes back.
        progress_epochs = max(cfg.epochs, cfg.max_epochs or 0)
        progress_steps = max(1, progress_epochs * steps_per_epoch)
        model.train()
        epoch = start_epoch
        while epoch < planned_end():
            cycle = cycle_of(plan, epoch)
            torch.manual_seed(cfg.seed * 1000 + epoch)
            began, losses = time.perf_counter(), []
            label = f"epoch {epoch + 1}/{progress_epochs}"
            if cfg.max_epochs is not None:
                label += f" (cycle {cycle})"
            for step, batch in enumerate(epoch_batches(epoch)):
                self.progress.check_cancelled()
                batch = move_batch(batch, self.device)
                with autocast_for(self.device):
                    loss = loss_fn(step_module, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{cfg.name}: loss became {loss.item()} at epoch {epoch} step "
                        f"{step}; lower the learning rate"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                losses.append(float(loss.detach()) / ddp_loss_scale())
                done = epoch * steps_per_epoch + step + 1
                report_count(
                    self.progress,
                    cfg.name,
                    min(done, progress_steps),
                    progress_steps,
                    "steps",
                    f"{label} loss {losses[-1]:.3f}",
                )
            record = {
                "epoch": epoch + 1,
                "cycle": cycle,
                "loss": all_reduce_mean(sum(losses) / max(1, len(losses)), str(self.device)),
                "steps": len(losses),
                "lr": optimizer.param_groups[0]["lr"],
                "logit_scale": float(model.clamped_logit_scale().detach().exp()),
                "seconds": round(time.perf_counter() - began, 3),
            }
            if on_epoch_end is not None:
                record.update(on_epoch_end(epoch))
            history.append(record)
            if epoch + 1 == planned_end():
                budget = decide()
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
                        "stage": asdict(cfg),
                        "cycle_plan": plan,
                        "budget": budget,
                    },
                    ckpt_path,
                )
            barrier()
            epoch += 1
        if budget is None:  # a stage of 0 epochs
            budget = cycle_decision(cfg, history, plan)[1]
        extra = {
            **(final_extra or {}),
            **stage_state,
            "history": history,
            "stage": cfg.name,
            "budget": budget,
        }
        if self.dist.is_main:
            save_model(model, final, extra=extra)
            atomic_write_text(
                self.stage_dir / BUDGET, json.dumps({"stage": cfg.name, **budget}, indent=1)
            )
        barrier()
        return StageResult(cfg.name, final, history, extra, resumed_from, False, budget)


def stage_budgets(stages_dir: Path) -> dict[str, dict[str, Any]]:
    """The budget of every finished stage under ``stages_dir`` (its ``budget.json``), by
    stage folder (``cold_start_cross``, ``amm_round_001``, ``supervised``...)."""
    return {
        path.parent.name: json.loads(path.read_text())
        for path in sorted(Path(stages_dir).glob(f"*/{BUDGET}"))
    }
