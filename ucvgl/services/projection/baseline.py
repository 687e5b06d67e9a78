"""A learning-free check of the projection: retrieve tiles with raw BEV pixels.

Each BEV and each satellite tile is shrunk to a small colour thumbnail (area average,
24 x 24 by default), flattened and L2-normalised; tiles are ranked by cosine similarity.
On a dataset with known pairs, recall far above chance shows that the projection (FOV,
band placement, orientation) makes panoramas look like their tiles; it is the floor that
every learned model must beat. No training, seconds on a CPU for a few hundred locations.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ucvgl.services.datasets.images import load_panorama, load_rgb
from ucvgl.services.datasets.index import CrossViewDataset
from ucvgl.services.evaluation import recall_at_k
from ucvgl.services.progress import NullProgress, Progress, ScaledProgress
from ucvgl.services.projection.geometry import BEVParams, BEVProjector

STAGE = "pixel retrieval"


def thumbnail_descriptors(images: Tensor, size: int = 24) -> Tensor:
    """Colour thumbnails as unit vectors.

    Args:
        images: [B, C, H, W] floating point (any value range).
        size: thumbnail side.

    Returns:
        [B, C * size * size] L2-normalised, float32.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W], got {tuple(images.shape)}")
    small = F.adaptive_avg_pool2d(images.float(), (size, size))
    return F.normalize(small.flatten(1), dim=1)


def _to_tensor(image) -> Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255


def bev_descriptors(
    paths: list,
    headings: np.ndarray | None,
    params: BEVParams,
    *,
    size: int = 24,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: Progress = NullProgress(),
) -> Tensor:
    """Thumbnail descriptors [G, 3 * size^2] of the BEVs of panoramas (north-aligned)."""
    projector = BEVProjector(params)
    out: list[Tensor | None] = [None] * len(paths)
    for start in range(0, len(paths), batch_size):
        progress.check_cancelled()
        idx = range(start, min(start + batch_size, len(paths)))
        groups: dict[tuple[int, int], list[tuple[int, Tensor]]] = defaultdict(list)
        for i in idx:
            heading = None if headings is None else float(headings[i])
            x = _to_tensor(load_panorama(paths[i], heading))
            groups[tuple(x.shape[-2:])].append((i, x))
        for members in groups.values():
            batch = torch.stack([x for _, x in members]).to(device)
            with torch.no_grad():
                desc = thumbnail_descriptors(projector(batch), size).cpu()
            for (i, _), d in zip(members, desc, strict=True):
                out[i] = d
        progress.update(STAGE, idx.stop / max(len(paths), 1))
    return torch.stack(out)  # type: ignore[arg-type]


def tile_descriptors(paths: list, *, size: int = 24, progress: Progress = NullProgress()) -> Tensor:
    """Thumbnail descriptors [S, 3 * size^2] of satellite tiles."""
    out = []
    for i, path in enumerate(paths):
        if i % 64 == 0:
            progress.check_cancelled()
            progress.update(STAGE, i / max(len(paths), 1))
        out.append(thumbnail_descriptors(_to_tensor(load_rgb(path))[None], size)[0])
    return torch.stack(out)


def pixel_retrieval(
    dataset: CrossViewDataset,
    params: BEVParams,
    *,
    split: str,
    size: int = 24,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: Progress = NullProgress(),
) -> dict[str, float | int]:
    """Recall@k of retrieving each panorama's tile by raw BEV pixels (no learning).

    Args:
        dataset: a dataset with known pairs in ``split``.
        params: projection parameters.
        split: the split to evaluate (its panoramas against its satellite gallery).
        size: thumbnail side (24 -> 1728-d descriptors).
        batch_size: panoramas projected at once.
        device: torch device for the projection.
        progress: reports stage 'pixel retrieval'.

    Returns:
        ``recall_at_k``'s r1, r5, r10, r1p (percent), evaluated, gallery_size, plus
        chance_r1 / chance_r5 / chance_r10 (percent) of a random ranking.

    Raises:
        ValueError: when ``split`` has no known pairs.
    """
    view = dataset.split(split)
    if not view.has_ground_truth:
        raise ValueError(
            f"split {split!r} of dataset {dataset.name!r} has no known pairs to evaluate"
        )
    query = bev_descriptors(
        view.ground_paths,
        view.ground_heading_deg,
        params,
        size=size,
        batch_size=batch_size,
        device=device,
        progress=ScaledProgress(progress, 0.0, 0.5, STAGE),
    )
    gallery = tile_descriptors(
        view.satellite_paths, size=size, progress=ScaledProgress(progress, 0.5, 1.0, STAGE)
    )
    result = dict(recall_at_k(query, gallery, view.positives, ks=(1, 5, 10)))
    n = view.num_satellite
    for k in (1, 5, 10):
        result[f"chance_r{k}"] = 100.0 * min(k, n) / n
    progress.update(STAGE, 1.0)
    return result
