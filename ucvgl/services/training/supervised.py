"""Training on known pairs: the supervised baseline and the semi-supervised warm-up.

Supervised (Sample4Geo-style): every true pair of the training split, symmetric InfoNCE
with label smoothing 0.1, hard negatives from GPS/UTM (or visual) neighbours.
Semi-supervised: a seeded ``gt_ratio`` share of the true pairs is "known"; the model first
trains on them (unlabelled images as extra negatives), then grows its label set with AMM
while always keeping the known pairs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from ucvgl.services.datasets.index import ViewSplit
from ucvgl.services.presets import Preset
from ucvgl.services.progress import Progress
from ucvgl.services.training.distributed import DistInfo
from ucvgl.services.training.pair_stage import pair_items, stage_tile_neighbours, train_on_items
from ucvgl.services.training.trainer import StageConfig, StageResult
from ucvgl.shared.errors import ConfigError


def true_pairs(split: ViewSplit) -> tuple[np.ndarray, np.ndarray]:
    """(ground, tile) index arrays of every known pair of ``split``."""
    if split.positives is None or not (split.positives >= 0).any():
        raise ConfigError(
            "this mode needs ground-truth pairs, but the training split has none; use "
            "mode 'unsupervised'"
        )
    g = np.flatnonzero(split.positives >= 0).astype(np.int64)
    return g, split.positives[g].astype(np.int64)


def known_pairs_from_ratio(
    split: ViewSplit, ratio: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random ``ratio`` share (at least one pair) of the split's true pairs."""
    if not 0.0 < ratio <= 1.0:
        raise ConfigError(f"gt_ratio must be in (0, 1], got {ratio}")
    g, s = true_pairs(split)
    n = max(1, int(round(ratio * len(g))))
    pick = np.sort(np.random.default_rng(seed).choice(len(g), n, replace=False))
    return g[pick], s[pick]


def train_on_pairs(
    model: torch.nn.Module,
    split: ViewSplit,
    pairs: tuple[np.ndarray, np.ndarray],
    preset: Preset,
    stage_dir: Path,
    *,
    name: str,
    epochs: int,
    lr: float | None = None,
    device: str = "cpu",
    progress: Progress | None = None,
    dist_info: DistInfo | None = None,
    seed: int = 0,
    epoch_window: tuple[int, int] | None = None,
) -> StageResult:
    """Train on known pairs (unlabelled images of the pool as extra negatives), resumable.

    ``epoch_window`` (offset, total) makes the stage the first epochs of a longer cosine
    (``StageConfig.epoch_window``: no warm-up, no budget cycles), as the semi-supervised
    warm-up before a "continuous" AMM schedule.
    """
    cfg = StageConfig.from_preset(preset, name, epochs=epochs, lr=lr, seed=seed)
    if epoch_window is not None:
        cfg = dataclasses.replace(
            cfg, warmup_fraction=0.0, max_epochs=None, epoch_window=epoch_window
        )
    return train_on_items(
        model,
        split,
        pair_items(split, pairs, preset, seed=seed),
        cfg,
        stage_dir,
        preset,
        smoothing=preset.smoothing_for("pseudo"),
        tile_neighbours=stage_tile_neighbours(model, split, preset, stage_dir, device=device),
        device=device,
        progress=progress,
        dist_info=dist_info,
        final_extra={"pairs": int(len(pairs[0]))},
    )
