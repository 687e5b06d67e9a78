"""Cold start (paper Sec. 3.2): self-supervised contrastive learning without any pair.

1. Intra-view: two augmentations of one image are positives, the other images of the
   batch negatives (SimCLR style), for the ground encoder on panoramas and the satellite
   encoder on satellite tiles (label smoothing 0.1).
2. Cross-view: a panorama and ITS fake satellite image (the CycleGAN's translation of its
   BEV) are positives (label smoothing 0.3), with joint flips / quarter turns.

The ablations ``preset.intra_view`` / ``preset.cross_view`` (paper Tab. 2c / 2d) skip one
of the two stages; :func:`cold_start_model_path` names the weights the cold start ends on.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch

from ucvgl.services.datasets.index import ViewSplit
from ucvgl.services.presets import Preset
from ucvgl.services.progress import NullProgress, Progress, ScaledProgress
from ucvgl.services.training.data import (
    TwoCropDataset,
    ground_images,
    make_loader,
    satellite_images,
)
from ucvgl.services.training.distributed import DistInfo
from ucvgl.services.training.pair_stage import PairItems, train_on_items
from ucvgl.services.training.trainer import StageConfig, StageResult, StageRunner, contrastive_loss

INTRA_DIR = "cold_start_intra"
CROSS_DIR = "cold_start_cross"


def _infinite(loader):
    if len(loader) == 0:
        raise ValueError("an intra-view loader has no batch (empty image list)")
    while True:
        yield from loader


def train_intra_view(
    model: torch.nn.Module,
    split: ViewSplit,
    preset: Preset,
    stage_dir: Path,
    *,
    device: str = "cpu",
    progress: Progress | None = None,
    dist_info: DistInfo | None = None,
    seed: int = 0,
) -> StageResult:
    """Intra-view contrastive epochs for both encoders (resumable)."""
    from ucvgl.services.augment import TwoCropTransform

    dist_info = dist_info or DistInfo(device=str(device))
    mean, std = model.data_config.get("mean"), model.data_config.get("std")
    gsize, ssize = tuple(preset.ground_size), (preset.satellite_size, preset.satellite_size)
    ground = TwoCropDataset(
        ground_images(split, gsize, rows=model.config.ground_rows),
        TwoCropTransform(
            gsize,
            mean,
            std,
            view="ground",
            policy=preset.intra_photometric,
            augment=preset.intra_augment,
        ),
    )
    sat = TwoCropDataset(
        satellite_images(split, preset.satellite_size, scale=model.config.satellite_scale),
        TwoCropTransform(
            ssize,
            mean,
            std,
            view="satellite",
            policy=preset.intra_photometric,
            augment=preset.intra_augment,
        ),
    )
    batch = preset.batch_size

    def loader(ds):
        if dist_info.enabled:
            from torch.utils.data.distributed import DistributedSampler

            sampler = DistributedSampler(
                ds, dist_info.world_size, dist_info.rank, shuffle=True, seed=seed, drop_last=True
            )
            return torch.utils.data.DataLoader(
                ds, batch_size=batch, sampler=sampler, drop_last=True
            )
        return make_loader(
            ds,
            device=device,
            batch_size=batch,
            shuffle=True,
            drop_last=len(ds) > batch,
            seed=seed,
        )

    g_loader, s_loader = loader(ground), loader(sat)
    steps = max(len(g_loader), len(s_loader))

    def epoch_batches(epoch: int):
        both = zip(_infinite(g_loader), _infinite(s_loader), strict=False)  # both endless
        for gb, sb in itertools.islice(both, steps):
            yield gb[0], gb[1], sb[0], sb[1]

    def loss_fn(step_module, b) -> torch.Tensor:
        g1, g2, s1, s2 = b
        (e1, e2), (f1, f2), log_scale = step_module(ground=[g1, g2], satellite=[s1, s2])
        eps = preset.smoothing_for("intra")
        return contrastive_loss(e1, e2, log_scale, eps) + contrastive_loss(f1, f2, log_scale, eps)

    cfg = StageConfig.from_preset(
        preset, "cold start: intra-view", epochs=preset.intra_epochs, seed=seed
    )
    runner = StageRunner(
        model, cfg, stage_dir, device=device, progress=progress, dist_info=dist_info
    )
    return runner.run(epoch_batches, steps, loss_fn)


def train_ground_fake(
    model: torch.nn.Module,
    split: ViewSplit,
    fake_paths: list[Path],
    preset: Preset,
    stage_dir: Path,
    *,
    device: str = "cpu",
    progress: Progress | None = None,
    dist_info: DistInfo | None = None,
    seed: int = 0,
) -> StageResult:
    """Ground <-> fake satellite contrastive epochs (a panorama and its fake are positives)."""
    if len(fake_paths) != split.num_ground:
        raise ValueError(
            f"need one fake satellite image per panorama: {len(fake_paths)} fakes for "
            f"{split.num_ground} panoramas"
        )
    n = split.num_ground
    items = PairItems(np.arange(n), np.arange(n), np.ones(n, dtype=bool))
    cfg = StageConfig.from_preset(
        preset, "cold start: ground-fake", epochs=preset.cross_epochs, seed=seed
    )
    return train_on_items(
        model,
        split,
        items,
        cfg,
        stage_dir,
        preset,
        smoothing=preset.smoothing_for("cross"),
        fake_paths=fake_paths,
        device=device,
        progress=progress,
        dist_info=dist_info,
    )


def cold_start_model_path(preset: Preset, out_dir: Path) -> Path:
    """The weights file of the last cold-start stage that ``preset`` runs."""
    return Path(out_dir) / (CROSS_DIR if preset.cross_view else INTRA_DIR) / "model.pt"


def cold_start(
    model: torch.nn.Module,
    split: ViewSplit,
    fake_paths: list[Path] | None,
    preset: Preset,
    out_dir: Path,
    *,
    device: str = "cpu",
    progress: Progress | None = None,
    dist_info: DistInfo | None = None,
    seed: int = 0,
) -> dict[str, StageResult]:
    """The cold-start stages in ``out_dir/{cold_start_intra,cold_start_cross}``.

    Stages switched off by ``preset.intra_view`` / ``preset.cross_view`` are skipped (no
    folder, no result). ``fake_paths`` may be None when the cross-view stage is off.
    """
    progress = progress or NullProgress()
    intra_epochs = preset.intra_epochs if preset.intra_view else 0
    cross_epochs = preset.cross_epochs if preset.cross_view else 0
    total = max(1, intra_epochs + cross_epochs)
    cut = intra_epochs / total if preset.cross_view else 1.0
    results: dict[str, StageResult] = {}
    if preset.intra_view:
        results["intra"] = train_intra_view(
            model,
            split,
            preset,
            Path(out_dir) / INTRA_DIR,
            device=device,
            progress=ScaledProgress(progress, 0.0, cut),
            dist_info=dist_info,
            seed=seed,
        )
    if preset.cross_view:
        if fake_paths is None:
            raise ValueError("the cross-view cold start needs a fake (or BEV) image per panorama")
        results["cross"] = train_ground_fake(
            model,
            split,
            fake_paths,
            preset,
            Path(out_dir) / CROSS_DIR,
            device=device,
            progress=ScaledProgress(progress, 0.0 if not preset.intra_view else cut, 1.0),
            dist_info=dist_info,
            seed=seed,
        )
    return results
