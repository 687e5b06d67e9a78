"""Training both encoders on cross-view items: labelled pairs plus unlabelled negatives.

Used by every stage that trains ground against satellite images: the cold start's
ground <-> fake satellite stage, the pseudo-label rounds, the semi-supervised warm-up and
the supervised baseline. An item is (ground i, tile j, positive): positive items are
(pseudo-)pairs; unlabelled items carry a panorama and a tile that are only negatives for
the rest of the batch (the loss gives their rows an extra zero-logit target).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Sampler

from ucvgl.services.datasets.index import ViewSplit
from ucvgl.services.presets import Preset
from ucvgl.services.progress import Progress
from ucvgl.services.training.batches import (
    HardNegativeBatchSampler,
    coordinate_neighbours,
    embedding_neighbours,
)
from ucvgl.services.training.data import (
    PairDataset,
    fake_satellite_images,
    ground_images,
    make_loader,
    satellite_images,
)
from ucvgl.services.training.distributed import DistInfo, shard_batches
from ucvgl.services.training.embed import embed_split
from ucvgl.services.training.trainer import (
    StageConfig,
    StageResult,
    StageRunner,
    contrastive_loss,
    stage_done,
)

HARD_NEGATIVE_K = 16
"""Hard-negative candidate tiles per tile."""


@dataclass
class PairItems:
    """Training items: int64 ground_idx [N], satellite_idx [N], bool positive [N]."""

    ground_idx: np.ndarray
    satellite_idx: np.ndarray
    positive: np.ndarray

    def __len__(self) -> int:
        return len(self.ground_idx)

    @property
    def num_positive(self) -> int:
        return int(self.positive.sum())


def build_items(
    labelled_ground: np.ndarray,
    labelled_satellite: np.ndarray,
    num_ground: int,
    num_satellite: int,
    *,
    unlabelled_ratio: float,
    coverage_switch: float,
    min_epoch_fraction: float,
    seed: int,
    unlabelled_after_switch: bool | None = None,
) -> PairItems:
    """Items of one epoch from (pseudo-)pairs, following the authors' schedule.

    While the pairs cover less than ``coverage_switch`` of the ground pool they are
    duplicated up to ``min_epoch_fraction * num_ground`` items, and
    ``unlabelled_ratio * len(pairs)`` unlabelled items (a random unlabelled panorama with a
    random unlabelled tile) are added as negatives; above the switch every unlabelled
    panorama joins as a negative item when ``unlabelled_after_switch`` (None: when
    ``unlabelled_ratio > 0``). The authors: ratio 0, fraction 1, after-switch True.

    Args:
        labelled_ground / labelled_satellite: int [L] the pairs (one-to-one).
        num_ground / num_satellite: pool sizes G and S.

    Returns:
        PairItems with the positive items first, then the unlabelled ones.
    """
    rng = np.random.default_rng(seed)
    lg = np.asarray(labelled_ground, dtype=np.int64)
    ls = np.asarray(labelled_satellite, dtype=np.int64)
    n_lab = len(lg)
    coverage = n_lab / max(1, num_ground)
    if n_lab and coverage < coverage_switch:
        target = max(n_lab, int(math.ceil(min_epoch_fraction * num_ground)))
        reps = rng.permutation(np.resize(np.arange(n_lab), target))
        lg, ls = lg[reps], ls[reps]
    free_g = np.setdiff1d(np.arange(num_ground), labelled_ground)
    free_s = np.setdiff1d(np.arange(num_satellite), labelled_satellite)
    if unlabelled_after_switch is None:
        unlabelled_after_switch = unlabelled_ratio > 0
    if coverage < coverage_switch:
        n_unlab = int(round(max(unlabelled_ratio, 0.0) * max(len(lg), 1)))
    else:
        n_unlab = len(free_g) if unlabelled_after_switch else 0
    n_unlab = min(n_unlab, len(free_g), len(free_s))
    ug = rng.choice(free_g, n_unlab, replace=False) if n_unlab else free_g[:0]
    us = rng.choice(free_s, n_unlab, replace=False) if n_unlab else free_s[:0]
    return PairItems(
        ground_idx=np.concatenate([lg, ug]).astype(np.int64),
        satellite_idx=np.concatenate([ls, us]).astype(np.int64),
        positive=np.concatenate([np.ones(len(lg), bool), np.zeros(n_unlab, bool)]),
    )


def pair_items(
    split: ViewSplit,
    pairs: tuple[np.ndarray, np.ndarray],
    preset: Preset,
    *,
    seed: int,
) -> PairItems:
    """:func:`build_items` for ``pairs`` (ground, tile) of ``split`` with ``preset``'s schedule."""
    return build_items(
        pairs[0],
        pairs[1],
        split.num_ground,
        split.num_satellite,
        unlabelled_ratio=preset.unlabelled_ratio,
        coverage_switch=preset.coverage_switch,
        min_epoch_fraction=preset.min_epoch_fraction,
        seed=seed,
        unlabelled_after_switch=preset.unlabelled_after_switch,
    )


def tile_coordinates(split: ViewSplit) -> tuple[np.ndarray | None, str]:
    """Satellite tile coordinates and their metric: UTM/xy metres, else lat/lon degrees."""
    if split.satellite_xy is not None:
        return np.asarray(split.satellite_xy, dtype=np.float64), "euclidean"
    if split.satellite_latlon is not None:
        return np.asarray(split.satellite_latlon, dtype=np.float64), "haversine"
    return None, "euclidean"


def item_neighbours(
    items: PairItems, tile_neighbours: np.ndarray, num_satellite: int
) -> np.ndarray:
    """Map tile -> neighbouring tiles onto item -> items holding those tiles.

    Args:
        items: the epoch's items.
        tile_neighbours: int [S, K] neighbouring tiles of each tile.

    Returns:
        int [N, K] items (-1 where a neighbouring tile has no item); the sampler skips -1.
    """
    first_item = np.full(num_satellite, -1, dtype=np.int64)
    order = np.arange(len(items))[::-1]
    first_item[items.satellite_idx[order]] = order
    return first_item[tile_neighbours[items.satellite_idx]]


def hard_negative_tile_neighbours(
    split: ViewSplit,
    k: int,
    satellite_embeddings: torch.Tensor | None,
) -> np.ndarray | None:
    """Candidate hard negatives per tile: GPS/UTM neighbours, else visual neighbours."""
    coords, metric = tile_coordinates(split)
    if coords is not None:
        return coordinate_neighbours(coords, k, metric=metric)
    if satellite_embeddings is not None:
        return embedding_neighbours(satellite_embeddings, k)
    return None


def stage_tile_neighbours(
    model: torch.nn.Module,
    split: ViewSplit,
    preset: Preset,
    stage_dir: Path,
    *,
    device: str = "cpu",
    cache_dir: Path | None = None,
) -> np.ndarray | None:
    """Hard-negative candidates [S, K] for a pair stage that still has to train.

    None when ``preset`` has no hard negatives or the stage in ``stage_dir`` has finished.
    Tiles without coordinates are embedded with the current ``model`` (cached in
    ``cache_dir`` when given) to find visual neighbours.
    """
    if not preset.hard_negatives or stage_done(stage_dir):
        return None
    satellite_embeddings = None
    if tile_coordinates(split)[0] is None:
        satellite_embeddings = embed_split(
            model,
            split,
            "satellite",
            batch_size=preset.eval_batch_size,
            device=device,
            cache_dir=cache_dir,
        )
    return hard_negative_tile_neighbours(split, HARD_NEGATIVE_K, satellite_embeddings)


def train_on_items(
    model: torch.nn.Module,
    split: ViewSplit,
    items: PairItems,
    cfg: StageConfig,
    stage_dir: Path,
    preset: Preset,
    *,
    smoothing: float,
    fake_paths: list[Path] | None = None,
    tile_neighbours: np.ndarray | None = None,
    device: str = "cpu",
    progress: Progress | None = None,
    dist_info: DistInfo | None = None,
    state: dict | None = None,
    final_extra: dict | None = None,
    optimizer_state: Path | None = None,
) -> StageResult:
    """Train both encoders on ``items`` for ``cfg.epochs`` epochs (resumable).

    Args:
        model: the ``TwoViewModel``, trained in place, continuing from its weights.
        split: the training pool.
        items: items to train on (ground index, tile / fake index, positive flag).
        cfg: optimisation settings (a low learning rate for the pseudo-label rounds).
        stage_dir: the stage's checkpoint folder.
        preset: image sizes, batch size, hard-negative settings.
        smoothing: InfoNCE label smoothing.
        fake_paths: train against these fake satellite images (indexed like the panoramas)
            instead of the split's real tiles.
        tile_neighbours: int [S, K] hard-negative candidates per tile (None = random batches).
        progress: reports the stage's progress and is checked for cancellation (None = silent).
        state / final_extra / optimizer_state: see :meth:`StageRunner.run`.
    """
    from ucvgl.services.augment import PairTransform

    dist_info = dist_info or DistInfo(device=str(device))
    mean = model.data_config.get("mean")
    std = model.data_config.get("std")
    sat_size = preset.satellite_size
    ground = ground_images(split, tuple(preset.ground_size), rows=model.config.ground_rows)
    tile_scale = model.config.satellite_scale
    if fake_paths is not None:
        satellite = fake_satellite_images(fake_paths, sat_size, scale=tile_scale)
        coords, metric = None, "euclidean"
    else:
        satellite = satellite_images(split, sat_size, scale=tile_scale)
        tile_coords, metric = tile_coordinates(split)
        coords = None if tile_coords is None else tile_coords[items.satellite_idx]
    transform = PairTransform(
        tuple(preset.ground_size),
        (sat_size, sat_size),
        mean,
        std,
        rotate=preset.joint_rotate,
        flip=preset.joint_flip,
        photometric=preset.photometric != "none",
        policy=preset.photometric,
    )
    dataset = PairDataset(
        ground, satellite, items.ground_idx, items.satellite_idx, items.positive, transform
    )
    neighbours = None
    if tile_neighbours is not None and preset.hard_negatives:
        neighbours = item_neighbours(items, tile_neighbours, len(satellite))
    global_batch = preset.batch_size * dist_info.world_size
    sampler = HardNegativeBatchSampler(
        items.satellite_idx,
        global_batch,
        neighbours=neighbours,
        coords=coords,
        metric=metric,
        min_distance_m=preset.min_place_distance_m,
        neighbours_per_seed=preset.neighbours_per_seed,
        seed=cfg.seed,
    )
    epoch_sampler = EpochBatches(
        sampler, dist_info, neighbours, random_epochs=preset.hard_negative_warmup_epochs
    )
    loader = make_loader(dataset, device=device, batch_sampler=epoch_sampler)

    def epoch_batches(epoch: int):
        epoch_sampler.set_epoch(epoch)
        return loader

    def loss_fn(step_module, batch) -> torch.Tensor:
        g, s, positive = batch[0], batch[1], batch[2]
        (ge,), (se,), log_scale = step_module(ground=[g], satellite=[s])
        mask = None if bool(positive.all()) else positive
        return contrastive_loss(ge, se, log_scale, smoothing, mask)

    runner = StageRunner(
        model, cfg, stage_dir, device=device, progress=progress, dist_info=dist_info
    )
    epoch_sampler.set_epoch(0)
    return runner.run(
        epoch_batches,
        len(epoch_sampler),
        loss_fn,
        state=state,
        final_extra=final_extra,
        optimizer_state=optimizer_state,
    )


class EpochBatches(Sampler[list[int]]):
    """This rank's batches of the current epoch, as a DataLoader ``batch_sampler``.

    One persistent DataLoader iterates it every epoch; :meth:`set_epoch` switches to the
    next epoch's (reshuffled, hard-negative) batches. The first ``random_epochs`` epochs
    use random batches (still one item per place), later ones the hard-negative
    ``neighbours``.
    """

    def __init__(
        self,
        sampler: HardNegativeBatchSampler,
        dist_info: DistInfo,
        neighbours: np.ndarray | None = None,
        *,
        random_epochs: int = 0,
    ) -> None:
        self.sampler, self.dist_info = sampler, dist_info
        self.neighbours, self.random_epochs = neighbours, random_epochs
        self._batches: list[list[int]] = []

    def set_epoch(self, epoch: int) -> None:
        wanted = None if epoch < self.random_epochs else self.neighbours
        if wanted is not self.sampler.neighbours:
            self.sampler.set_neighbours(wanted)
        self.sampler.set_epoch(epoch)
        self._batches = shard_batches(self.sampler.batches(), self.dist_info)

    def __iter__(self):
        return iter(list(self._batches))

    def __len__(self) -> int:
        return len(self._batches)
