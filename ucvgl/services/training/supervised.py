"""Training on known pairs: the supervised baseline and the semi-supervised warm-up.

Supervised (Sample4Geo-style): every true pair of the training split, symmetric InfoNCE
with label smoothing 0.1, hard negatives from GPS/UTM (or visual) neighbours.
Semi-supervised: a seeded ``gt_ratio`` share of the true pairs is "known"; the model first
trains on them (unlabelled images as extra negatives), then grows its label set with AMM
while always keeping the known pairs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ucvgl.services.datasets.index import ViewSplit
from ucvgl.services.presets import Preset
from ucvgl.services.progress import NullProgress, Progress
from ucvgl.services.training.distributed import DistInfo
from ucvgl.services.training.embed import embed_split
from ucvgl.services.training.pair_stage import (
    build_items,
    hard_negative_tile_neighbours,
    tile_coordinates,
    train_on_items,
)
from ucvgl.services.training.trainer import StageConfig, StageResult, stage_done
from ucvgl.shared.errors import ConfigError

HARD_NEGATIVE_K = 16


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
) -> StageResult:
    """Train on known pairs (unlabelled images of the pool as extra negatives), resumable."""
    items = build_items(
        pairs[0],
        pairs[1],
        split.num_ground,
        split.num_satellite,
        unlabelled_ratio=preset.unlabelled_ratio,
        coverage_switch=preset.coverage_switch,
        min_epoch_fraction=preset.min_epoch_fraction,
        seed=seed,
    )
    neighbours = None
    if preset.hard_negatives and not stage_done(stage_dir):
        sat_emb = None
        if tile_coordinates(split)[0] is None:
            sat_emb = embed_split(
                model, split, "satellite", batch_size=preset.eval_batch_size, device=device
            )
        neighbours = hard_negative_tile_neighbours(split, HARD_NEGATIVE_K, sat_emb)
    cfg = StageConfig(
        name,
        epochs,
        preset.lr if lr is None else lr,
        preset.weight_decay,
        preset.warmup_fraction,
        preset.grad_clip,
        seed,
    )
    return train_on_items(
        model,
        split,
        items,
        cfg,
        stage_dir,
        preset,
        smoothing=preset.smoothing_pseudo,
        tile_neighbours=neighbours,
        device=device,
        progress=progress or NullProgress(),
        dist_info=dist_info,
        final_extra={"pairs": int(len(pairs[0]))},
    )
