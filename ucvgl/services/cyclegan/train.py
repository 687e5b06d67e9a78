"""Training the imaging projection: an unpaired CycleGAN from BEV images to satellite tiles.

One step follows the original implementation: generators first (discriminators frozen),
then both discriminators on real images and pooled fakes. Adam for both groups, learning
rate constant then linearly decayed (``CycleGANConfig.lr_factor``). Mixed precision
(autocast float16 + GradScaler) on CUDA, plain float32 on the CPU.

``out_dir/cyclegan_last.pt`` is rewritten atomically after every epoch with everything a
resume needs (networks, optimisers, schedulers, scaler, image pools and their random
states, epoch, config, loss history); calling :func:`train_cyclegan` again continues at
the next epoch. ``out_dir/cyclegan_losses.json`` holds the per-epoch mean losses.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim import Adam
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader

from ucvgl.services.progress import NullProgress, Progress, report_count
from ucvgl.shared.errors import ConfigError
from ucvgl.shared.fileio import atomic_torch_save, atomic_write_text

from .checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_NAME, checkpoint_config, load_checkpoint
from .config import ARCHITECTURE_FIELDS, CycleGANConfig
from .data import UnpairedImageDataset, item_seed
from .losses import ImagePool, discriminator_loss, generator_loss
from .networks import PatchDiscriminator, ResnetGenerator, init_weights

LOSSES_NAME = "cyclegan_losses.json"
STAGE = "cyclegan"
#: Config fields a resume must share with the checkpoint (the pools hold images of ``size``).
RESUME_FIELDS = (*ARCHITECTURE_FIELDS, "size")
LOSS_KEYS = ("gan_ab", "gan_ba", "cycle_a", "cycle_b", "idt_a", "idt_b", "g_total", "d_a", "d_b")


def build_networks(cfg: CycleGANConfig) -> dict[str, nn.Module]:
    """``g_ab``, ``g_ba``, ``d_a``, ``d_b`` with the original N(0, 0.02) init seeded by cfg.seed."""
    generator = torch.Generator().manual_seed(item_seed(cfg.seed, 1))
    nets: dict[str, nn.Module] = {
        "g_ab": ResnetGenerator(3, 3, ngf=cfg.ngf, n_blocks=cfg.n_blocks),
        "g_ba": ResnetGenerator(3, 3, ngf=cfg.ngf, n_blocks=cfg.n_blocks),
        "d_a": PatchDiscriminator(3, ndf=cfg.ndf, n_layers=cfg.n_layers),
        "d_b": PatchDiscriminator(3, ndf=cfg.ndf, n_layers=cfg.n_layers),
    }
    for net in nets.values():
        init_weights(net, generator)
    return nets


def _set_requires_grad(nets: Sequence[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


def _apply_lr(optimizers: Sequence[torch.optim.Optimizer], cfg: CycleGANConfig, epoch: int) -> None:
    """Make the optimisers follow ``cfg`` at 0-based ``epoch`` (after a resume)."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["initial_lr"] = cfg.lr
            group["lr"] = cfg.lr * cfg.lr_factor(epoch)
            group["betas"] = (cfg.beta1, group["betas"][1])


def _check_resumable(saved: CycleGANConfig, cfg: CycleGANConfig, path: Path) -> None:
    different = {
        name: (getattr(saved, name), getattr(cfg, name))
        for name in RESUME_FIELDS
        if getattr(saved, name) != getattr(cfg, name)
    }
    if different:
        detail = ", ".join(
            f"{k}: checkpoint {a} vs requested {b}" for k, (a, b) in different.items()
        )
        raise ConfigError(
            f"cannot resume CycleGAN checkpoint {path} with a different architecture ({detail}); "
            f"use another output folder or delete the checkpoint to start over"
        )


def _write_losses(path: Path, cfg: CycleGANConfig, history: list[dict[str, Any]]) -> None:
    atomic_write_text(path, json.dumps({"config": cfg.to_dict(), "epochs": history}, indent=2))


def train_cyclegan(
    bev_paths: list[Path],
    sat_paths: list[Path],
    cfg: CycleGANConfig,
    out_dir: Path,
    *,
    device: str = "cpu",
    progress: Progress = NullProgress(),
) -> Path:
    """Train (or resume) the BEV -> satellite CycleGAN and return its checkpoint path.

    Args:
        bev_paths: domain A images (BEV projections of the panoramas).
        sat_paths: domain B images (satellite tiles); unpaired, the count may differ.
        cfg: hyper-parameters; on resume the architecture fields and ``size`` must match the
            checkpoint, while ``epochs``, ``lr`` and the schedule may change.
        out_dir: receives ``cyclegan_last.pt`` and ``cyclegan_losses.json``.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        progress: receives ``("cyclegan", fraction, losses)`` after every step; its
            ``check_cancelled`` is called between steps (the last finished epoch stays saved).

    Returns:
        ``out_dir / "cyclegan_last.pt"``.

    Raises:
        DatasetError: an image is missing or unreadable, or a domain is empty.
        ConfigError: the existing checkpoint is corrupt or of another architecture, or the
            losses became non-finite.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / CHECKPOINT_NAME
    losses_path = out_dir / LOSSES_NAME
    dev = torch.device(device)
    use_amp = dev.type == "cuda"

    nets = build_networks(cfg)
    for net in nets.values():
        net.to(dev).train()
    g_ab, g_ba, d_a, d_b = nets["g_ab"], nets["g_ba"], nets["d_a"], nets["d_b"]
    betas = (cfg.beta1, 0.999)
    opt_g = Adam(itertools.chain(g_ab.parameters(), g_ba.parameters()), lr=cfg.lr, betas=betas)
    opt_d = Adam(itertools.chain(d_a.parameters(), d_b.parameters()), lr=cfg.lr, betas=betas)
    sched_g = LambdaLR(opt_g, lambda e: cfg.lr_factor(e))
    sched_d = LambdaLR(opt_d, lambda e: cfg.lr_factor(e))
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    pool_a = ImagePool(cfg.pool_size, torch.Generator().manual_seed(item_seed(cfg.seed, 2)))
    pool_b = ImagePool(cfg.pool_size, torch.Generator().manual_seed(item_seed(cfg.seed, 3)))

    start_epoch, history = 0, []
    if ckpt_path.exists():
        state = load_checkpoint(ckpt_path, map_location=dev)
        _check_resumable(checkpoint_config(state, ckpt_path), cfg, ckpt_path)
        for name, net in nets.items():
            net.load_state_dict(state[name])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        sched_g.load_state_dict(state["sched_g"])
        sched_d.load_state_dict(state["sched_d"])
        if use_amp and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        pool_a.load_state_dict(state["pool_a"], dev)
        pool_b.load_state_dict(state["pool_b"], dev)
        start_epoch, history = int(state["epoch"]), list(state.get("history", []))
        _apply_lr((opt_g, opt_d), cfg, start_epoch)
        del state
    if start_epoch >= cfg.epochs:
        if not losses_path.exists():
            _write_losses(losses_path, cfg, history)
        progress.update(STAGE, 1.0, f"already trained {start_epoch} epochs")
        return ckpt_path

    dataset = UnpairedImageDataset(
        bev_paths, sat_paths, cfg.size, seed=cfg.seed, load_size=cfg.load_size
    )
    use_identity = cfg.lambda_identity * cfg.lambda_cycle > 0
    for epoch in range(start_epoch, cfg.epochs):
        dataset.set_epoch(epoch)
        order = torch.randperm(
            len(dataset), generator=torch.Generator().manual_seed(item_seed(cfg.seed, 4, epoch))
        )
        if cfg.max_images_per_epoch is not None:
            order = order[: cfg.max_images_per_epoch]
        loader = DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            sampler=order.tolist(),
            num_workers=cfg.num_workers,
            pin_memory=use_amp,
            persistent_workers=False,
        )
        steps = len(loader)
        sums = dict.fromkeys(LOSS_KEYS, 0.0)
        images, started = 0, time.perf_counter()
        lr_now = opt_g.param_groups[0]["lr"]
        for step, batch in enumerate(loader):
            progress.check_cancelled()
            real_a = batch["a"].to(dev, non_blocking=True)
            real_b = batch["b"].to(dev, non_blocking=True)

            # --- generators (discriminators frozen) ---------------------------------------
            _set_requires_grad((d_a, d_b), False)
            with torch.autocast(dev.type, dtype=torch.float16, enabled=use_amp):
                fake_b = g_ab(real_a)
                rec_a = g_ba(fake_b)
                fake_a = g_ba(real_b)
                rec_b = g_ab(fake_a)
                terms = generator_loss(
                    real_a=real_a,
                    real_b=real_b,
                    rec_a=rec_a,
                    rec_b=rec_b,
                    d_b_on_fake_b=d_b(fake_b),
                    d_a_on_fake_a=d_a(fake_a),
                    idt_b=g_ab(real_b) if use_identity else None,
                    idt_a=g_ba(real_a) if use_identity else None,
                    lambda_cycle=cfg.lambda_cycle,
                    lambda_identity=cfg.lambda_identity,
                )
            opt_g.zero_grad(set_to_none=True)
            scaler.scale(terms["total"]).backward()
            scaler.step(opt_g)

            # --- discriminators on real images and pooled fakes ---------------------------
            _set_requires_grad((d_a, d_b), True)
            with torch.autocast(dev.type, dtype=torch.float16, enabled=use_amp):
                loss_d_b = discriminator_loss(d_b(real_b), d_b(pool_b.query(fake_b.detach())))
                loss_d_a = discriminator_loss(d_a(real_a), d_a(pool_a.query(fake_a.detach())))
            opt_d.zero_grad(set_to_none=True)
            scaler.scale(loss_d_a + loss_d_b).backward()
            scaler.step(opt_d)
            scaler.update()

            values = {k: float(v.detach()) for k, v in terms.items() if k != "total"}
            values.update(
                g_total=float(terms["total"].detach()),
                d_a=float(loss_d_a.detach()),
                d_b=float(loss_d_b.detach()),
            )
            if not use_amp and not all(math.isfinite(v) for v in values.values()):
                raise ConfigError(
                    f"CycleGAN losses became non-finite at epoch {epoch + 1}, step {step + 1} "
                    f"({values}); lower CycleGANConfig.lr or check the input images"
                )
            n = real_a.shape[0]
            images += n
            for key in LOSS_KEYS:
                sums[key] += values[key] * n
            report_count(
                progress,
                STAGE,
                epoch * steps + step + 1,
                cfg.epochs * steps,
                "steps",
                f"epoch {epoch + 1}/{cfg.epochs} step {step + 1}/{steps} "
                f"G {values['g_total']:.3f} cyc {values['cycle_a'] + values['cycle_b']:.3f} "
                f"D_A {values['d_a']:.3f} D_B {values['d_b']:.3f}",
            )

        sched_g.step()
        sched_d.step()
        record = {
            "epoch": epoch + 1,
            "images": images,
            "lr": lr_now,
            "seconds": round(time.perf_counter() - started, 3),
        }
        record.update({k: sums[k] / max(images, 1) for k in LOSS_KEYS})
        history.append(record)
        atomic_torch_save(
            {
                "format": CHECKPOINT_FORMAT,
                "config": cfg.to_dict(),
                "epoch": epoch + 1,
                **{name: net.state_dict() for name, net in nets.items()},
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(),
                "sched_g": sched_g.state_dict(),
                "sched_d": sched_d.state_dict(),
                "scaler": scaler.state_dict() if use_amp else {},
                "pool_a": pool_a.state_dict(),
                "pool_b": pool_b.state_dict(),
                "history": history,
                "image_counts": {"a": len(bev_paths), "b": len(sat_paths)},
            },
            ckpt_path,
        )
        _write_losses(losses_path, cfg, history)
    return ckpt_path
