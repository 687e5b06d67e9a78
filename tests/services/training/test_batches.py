"""Hard-negative batches: haversine in radians, one item per place in every batch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ucvgl.services.training.batches import (
    EARTH_RADIUS_M,
    HardNegativeBatchSampler,
    coordinate_neighbours,
    embedding_neighbours,
    haversine_m,
)


def _haversine_reference(lat1, lon1, lat2, lon2):
    """Scalar great-circle distance, written from the formula with math.radians."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dphi, dlmb = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


def test_haversine_matches_scalar_reference():
    rng = np.random.default_rng(0)
    a = np.c_[rng.uniform(-80, 80, 7), rng.uniform(-180, 180, 7)]
    b = np.c_[rng.uniform(-80, 80, 5), rng.uniform(-180, 180, 5)]
    d = haversine_m(a, b)
    ref = np.array([[_haversine_reference(*p, *q) for q in b] for p in a])
    np.testing.assert_allclose(d, ref, rtol=1e-10)


def test_haversine_known_distances_use_radians():
    # One degree of latitude is about 111.2 km; a degrees-as-radians bug gives ~ 6,000 km.
    d = haversine_m(np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]]))[0, 0]
    assert abs(d - EARTH_RADIUS_M * math.pi / 180) < 1.0
    # Paris -> London, about 343.5 km.
    d = haversine_m(np.array([[48.8566, 2.3522]]), np.array([[51.5074, -0.1278]]))[0, 0]
    assert 340_000 < d < 347_000


def test_coordinate_neighbours_excludes_self_and_sorts():
    xy = np.array([[0, 0], [1, 0], [3, 0], [10, 0]], dtype=float)
    nb = coordinate_neighbours(xy, 2, metric="euclidean", block_size=2)
    assert nb.tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]


def test_embedding_neighbours_most_similar_first():
    emb = torch.nn.functional.normalize(
        torch.tensor([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]]), dim=1
    )
    nb = embedding_neighbours(emb, 1, block_size=3)
    assert nb[:, 0].tolist() == [1, 0, 3, 2]


@pytest.mark.parametrize("with_neighbours", [False, True])
def test_no_two_items_of_one_place_in_a_batch(with_neighbours):
    rng = np.random.default_rng(1)
    n_places = 40
    # Each place appears 1-4 times (duplicated pseudo-pairs share their tile).
    place_ids = np.repeat(np.arange(n_places), rng.integers(1, 5, n_places))
    xy = rng.uniform(0, 200, (n_places, 2))[place_ids] + rng.normal(0, 0.1, (len(place_ids), 2))
    nb = coordinate_neighbours(xy, 8, metric="euclidean") if with_neighbours else None
    sampler = HardNegativeBatchSampler(
        place_ids, 8, neighbours=nb, coords=xy, metric="euclidean", min_distance_m=15.0, seed=3
    )
    seen = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for batch in sampler:
            assert len(set(place_ids[batch])) == len(batch)
            d = np.sqrt(((xy[batch][:, None] - xy[batch][None]) ** 2).sum(-1))
            d[np.diag_indices(len(batch))] = np.inf
            assert (d >= 15.0).all()
            assert len(batch) <= 8
            seen.extend(batch)
        assert len(sampler) == len(sampler.batches())
    # Every item is used exactly once per epoch.
    assert sorted(seen) == sorted(list(range(len(place_ids))) * 3)


def test_neighbours_are_batched_with_their_seed():
    # Places on a line; each item's neighbour list is its spatial neighbours.
    xy = np.c_[np.arange(64, dtype=float) * 100, np.zeros(64)]
    nb = coordinate_neighbours(xy, 3, metric="euclidean")
    sampler = HardNegativeBatchSampler(np.arange(64), 4, neighbours=nb, neighbours_per_seed=3)
    batches = sampler.batches()
    spans = [np.ptp(xy[b, 0]) for b in batches if len(b) == 4]
    # Random batches of 4 out of a 6.3 km line span ~3 km; neighbour batches far less.
    assert np.median(spans) <= 400


def test_haversine_sampler_uses_metres():
    # Two tiles 10 m apart in latitude (about 9e-5 degrees) are one place at 20 m.
    latlon = np.array([[40.0, -74.0], [40.0 + 9e-5, -74.0], [40.01, -74.0]])
    sampler = HardNegativeBatchSampler(
        np.arange(3), 3, coords=latlon, metric="haversine", min_distance_m=20.0
    )
    for batch in sampler:
        assert not {0, 1} <= set(batch)


def test_epoch_batches_start_random_then_use_hard_negatives():
    from ucvgl.services.training.distributed import DistInfo
    from ucvgl.services.training.pair_stage import EpochBatches

    xy = np.c_[np.arange(64, dtype=float) * 100, np.zeros(64)]
    nb = coordinate_neighbours(xy, 3, metric="euclidean")

    def sampler(neighbours):
        return HardNegativeBatchSampler(np.arange(64), 4, neighbours=neighbours, seed=5)

    epochs = EpochBatches(sampler(nb), DistInfo(), nb, random_epochs=2)
    random_batches, hard_batches = sampler(None), sampler(nb)
    for epoch in range(4):
        epochs.set_epoch(epoch)
        reference = random_batches if epoch < 2 else hard_batches
        reference.set_epoch(epoch)
        assert list(epochs) == reference.batches()

    # Four neighbours on the line span 300 m: common in neighbour batches, rare at random.
    def share_compact(epoch: int) -> float:
        epochs.set_epoch(epoch)
        return float(np.mean([np.ptp(xy[b, 0]) <= 300 for b in epochs]))

    assert share_compact(0) < 0.2 and share_compact(1) < 0.2
    assert share_compact(2) > 0.3 and share_compact(3) > 0.3
