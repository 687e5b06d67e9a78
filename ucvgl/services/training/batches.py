"""Hard-negative batches (Sample4Geo's idea) that never hold two views of one place.

A batch of cross-view pairs is most informative when its negatives are hard: tiles that
are geographically close to each other, or that the current model finds similar. The
sampler grows each batch from a random seed item by adding that item's neighbours
(GPS/UTM neighbours where coordinates exist, visual neighbours from the current
embeddings otherwise), and refuses any item whose place is already in the batch (the
same tile, or a tile closer than ``min_distance_m``): two views of one place inside a
batch would be treated as negatives of each other, which teaches the wrong thing.

Sample4Geo computes its GPS distances with ``sin``/``cos`` of DEGREES; here every
great-circle distance converts to radians first (:func:`haversine_m`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

EARTH_RADIUS_M = 6_371_008.8
"""Mean Earth radius (IUGG) in metres."""


def haversine_m(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Great-circle distances between two sets of (lat, lon) points in DEGREES.

    Args:
        a: float [N, 2] (lat, lon) in degrees.
        b: float [M, 2] (lat, lon) in degrees.

    Returns:
        float64 [N, M] distances in metres.
    """
    a = np.radians(np.asarray(a, dtype=np.float64))
    b = np.radians(np.asarray(b, dtype=np.float64))
    lat1, lon1 = a[:, None, 0], a[:, None, 1]
    lat2, lon2 = b[None, :, 0], b[None, :, 1]
    h = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def pairwise_distance_m(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Distances [N, M] in metres: 'haversine' for (lat, lon) degrees, 'euclidean' for UTM."""
    if metric == "haversine":
        return haversine_m(a, b)
    if metric == "euclidean":
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    raise ValueError(f"metric must be 'haversine' or 'euclidean', got {metric!r}")


def coordinate_neighbours(
    coords: np.ndarray, k: int, *, metric: str, block_size: int = 1024
) -> np.ndarray:
    """The ``k`` nearest other points of every point, by distance, computed blockwise.

    Args:
        coords: float [N, 2] (lat, lon) degrees or (x, y) metres.
        k: neighbours per point (clipped to N - 1).
        metric: 'haversine' or 'euclidean'.
        block_size: rows per block at most; fewer when a block's temporaries (about 64 B
            per distance) would pass 64 MB, so memory does not grow with N (at 8,000 tiles
            1,024 rows took 314 MB; issue 12).

    Returns:
        int64 [N, k] indices, nearest first, never the point itself.
    """
    n = len(coords)
    block_size = max(1, min(block_size, (64 * 2**20) // (64 * max(n, 1))))
    k = max(0, min(k, n - 1))
    out = np.empty((n, k), dtype=np.int64)
    if k == 0:
        return out
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        d = pairwise_distance_m(coords[start:stop], coords, metric)
        d[np.arange(stop - start), np.arange(start, stop)] = np.inf
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(d, part, axis=1).argsort(axis=1, kind="stable")
        out[start:stop] = np.take_along_axis(part, order, axis=1)
    return out


def embedding_neighbours(
    embeddings, k: int, *, block_size: int = 4096, device: str | None = None
) -> np.ndarray:
    """The ``k`` most similar other items by cosine similarity (blockwise top-k, never N x N).

    Args:
        embeddings: float Tensor or array [N, D].
        k: neighbours per item (clipped to N - 1).
        block_size: rows/columns per similarity block.
        device: where the similarity blocks are computed (None = project setting).

    Returns:
        int64 [N, k] indices, most similar first, never the item itself.
    """
    import torch

    from ucvgl.services.blockwise import blockwise_topk

    emb = torch.as_tensor(np.asarray(embeddings) if not torch.is_tensor(embeddings) else embeddings)
    n = emb.shape[0]
    k = max(0, min(k, n - 1))
    if k == 0:
        return np.empty((n, 0), dtype=np.int64)
    res = blockwise_topk(
        emb.float(),
        emb.float(),
        row_k=k + 1,
        col_k=0,
        block_q=block_size,
        block_g=block_size,
        device=device,
    )
    idx = res.rows.indices.cpu().numpy()
    # Drop the item itself (normally first; ties may put it elsewhere or push it out).
    out = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        row = idx[i][idx[i] != i]
        out[i] = row[:k]
    return out


class HardNegativeBatchSampler(Sampler[list[int]]):
    """Batches grown from a seed item and its neighbours, one item per place.

    Items are whatever a pair dataset indexes (pairs, or single images); ``place_ids``
    names the place of each item (the satellite tile index of a pair). Two items conflict
    when they share a place id, or when both have coordinates closer than
    ``min_distance_m``. No batch ever holds two conflicting items; an item that conflicts
    with the batch being built waits for a later batch.

    Args:
        place_ids: int [N] place of each item (items of one place are duplicates).
        batch_size: items per batch.
        neighbours: int [N, K] candidate hard negatives per item (nearest first; -1 = none),
            or None
            for plain random batches; replace them each epoch with :meth:`set_neighbours`.
        coords: float [N, 2] coordinates for the distance rule, or None.
        metric: 'haversine' (lat, lon degrees) or 'euclidean' (metres).
        min_distance_m: items closer than this are treated as the same place.
        neighbours_per_seed: how many neighbours to pull in after each seed item.
        drop_last: drop a final batch smaller than ``batch_size``.
        seed: base seed; each epoch uses ``seed + epoch`` (see :meth:`set_epoch`).
    """

    def __init__(
        self,
        place_ids: np.ndarray,
        batch_size: int,
        *,
        neighbours: np.ndarray | None = None,
        coords: np.ndarray | None = None,
        metric: str = "euclidean",
        min_distance_m: float = 0.0,
        neighbours_per_seed: int = 3,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.place_ids = np.asarray(place_ids, dtype=np.int64)
        self.batch_size = batch_size
        self.coords = None if coords is None else np.asarray(coords, dtype=np.float64)
        if self.coords is not None and len(self.coords) != len(self.place_ids):
            raise ValueError("coords must have one row per item")
        self.metric = metric
        self.min_distance_m = float(min_distance_m)
        self.neighbours_per_seed = neighbours_per_seed
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0
        self.neighbours: np.ndarray | None = None
        self.set_neighbours(neighbours)

    def set_neighbours(self, neighbours: np.ndarray | None) -> None:
        """Use new candidate neighbours (e.g. visual neighbours of fresh embeddings)."""
        if neighbours is not None:
            neighbours = np.asarray(neighbours, dtype=np.int64)
            if neighbours.ndim != 2 or len(neighbours) != len(self.place_ids):
                raise ValueError("neighbours must be int [N, K] with one row per item")
        self.neighbours = neighbours
        self._cache: tuple[tuple[int, int], list[list[int]]] | None = None
        self._version = getattr(self, "_version", 0) + 1

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle deterministically for ``epoch``."""
        self.epoch = epoch

    def _conflicts(self, item: int, places: set[int], members: list[int]) -> bool:
        if int(self.place_ids[item]) in places:
            return True
        if self.coords is None or self.min_distance_m <= 0 or not members:
            return False
        d = pairwise_distance_m(self.coords[item : item + 1], self.coords[members], self.metric)
        return bool((d < self.min_distance_m).any())

    def batches(self) -> list[list[int]]:
        """All batches of the current epoch (computed once per epoch and neighbour set)."""
        key = (self.epoch, self._version)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._build())
        return self._cache[1]

    def _build(self) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(len(self.place_ids))
        used = np.zeros(len(order), dtype=bool)
        pending: list[int] = list(order)
        out: list[list[int]] = []
        while pending:
            batch: list[int] = []
            places: set[int] = set()
            deferred: list[int] = []

            def try_add(i: int, batch=batch, places=places) -> bool:
                if used[i] or self._conflicts(i, places, batch):
                    return False
                batch.append(i)
                places.add(int(self.place_ids[i]))
                used[i] = True
                return True

            cursor = 0
            while cursor < len(pending) and len(batch) < self.batch_size:
                seed_item = pending[cursor]
                cursor += 1
                if used[seed_item]:
                    continue
                if not try_add(seed_item):
                    deferred.append(seed_item)
                    continue
                if self.neighbours is not None:
                    added = 0
                    for j in self.neighbours[seed_item]:
                        if len(batch) >= self.batch_size or added >= self.neighbours_per_seed:
                            break
                        if j >= 0:  # -1 marks "no item" (see pair_stage.item_neighbours)
                            added += try_add(int(j))
            pending = deferred + [i for i in pending[cursor:] if not used[i]]
            if not batch:  # cannot happen: an empty batch accepts any unused item
                break
            out.append(batch)
        if self.drop_last and out and len(out[-1]) < self.batch_size:
            out.pop()
        return out

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()

    def __len__(self) -> int:
        return len(self.batches())
