"""The projection prior: standardised thumbnails and the target-decoy competition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ucvgl.services.models.encoder import standardise_images
from ucvgl.services.pixel_prior import (
    rotate_descriptors,
    target_decoy_pairs,
    thumbnail_descriptors,
)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_standardised_thumbnails_ignore_gain_and_offset(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(40, 200, size=(48, 48, 3)).astype(np.float32)
    darker = img * np.asarray([0.6, 0.7, 0.9]) + np.asarray([10.0, 0.0, 5.0])  # exposure, WB
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(img.astype(np.uint8)).save(a)
    Image.fromarray(np.clip(darker, 0, 255).astype(np.uint8)).save(b)
    std = thumbnail_descriptors([a, b], 16, standardise=True)
    raw = thumbnail_descriptors([a, b], 16, standardise=False)
    assert std.shape == (2, 16 * 16 * 3)
    np.testing.assert_allclose(np.linalg.norm(std, axis=1), 1.0, atol=1e-5)
    assert float(std[0] @ std[1]) > 0.995  # only 8-bit rounding differs
    assert float(raw[0] @ raw[1]) < float(std[0] @ std[1])


def test_standardise_images_matches_numpy_reference():
    x = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(0)) * 3 + 1
    got = standardise_images(x).numpy()
    ref = x.numpy()
    ref = (ref - ref.mean(axis=(2, 3), keepdims=True)) / (
        ref.std(axis=(2, 3), keepdims=True) + 1e-3
    )
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    gain = torch.tensor([0.5, 2.0, 1.5]).view(1, 3, 1, 1)
    # eps (1e-3) relative to the std is all that differs
    np.testing.assert_allclose(standardise_images(x * gain + 0.3).numpy(), got, atol=1e-2)


def test_rotate_descriptors_turns_each_thumbnail():
    d = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, -1)
    r = rotate_descriptors(d, 4).reshape(2, 4, 4, 3)
    np.testing.assert_array_equal(r[1, 0, 0], d.reshape(2, 4, 4, 3)[1, 3, 3])
    np.testing.assert_array_equal(rotate_descriptors(rotate_descriptors(d, 4), 4), d)


def _planted(n: int, signal: int, noise: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Tiles, and queries of which the first ``signal`` are noisy copies of their tile."""
    tiles = _unit(rng.standard_normal((n, 64)))
    ground = _unit(rng.standard_normal((n, 64)))
    ground[:signal] = _unit(tiles[:signal] + noise * rng.standard_normal((signal, 64)))
    return ground, tiles


def test_target_decoy_keeps_true_pairs_and_estimates_false_share():
    rng = np.random.default_rng(1)
    n = 400
    ground, tiles = _planted(n, 150, 0.1, rng)
    decoys = _unit(rng.standard_normal((n, 64)))  # unrelated images of the same statistics
    lab = target_decoy_pairs(ground, tiles, decoys, max_fdr=0.1)
    assert lab.num_pairs >= 100
    correct = lab.ground_idx == lab.satellite_idx
    assert correct.mean() >= 0.9  # kept pairs are right (chance: 1/400)
    assert lab.estimated_fdr <= 0.1
    assert (lab.satellite_idx < n).all() and np.isfinite(lab.tau)
    assert lab.summary()["pairs"] == lab.num_pairs


def test_target_decoy_finds_nothing_without_a_true_pair():
    rng = np.random.default_rng(2)
    n = 400
    ground, tiles = _planted(n, 0, 0.0, rng)
    decoys = _unit(rng.standard_normal((n, 64)))
    lab = target_decoy_pairs(ground, tiles, decoys, max_fdr=0.1, min_pairs=10)
    assert lab.num_pairs == 0 and not np.isfinite(lab.tau)
    assert lab.mutual_targets > 0 and lab.mutual_decoys > 0  # it competed and lost
    assert lab.summary()["tau"] is None


@pytest.mark.parametrize("max_fdr", [0.05, 0.2])
def test_target_decoy_threshold_orders_by_margin(max_fdr):
    rng = np.random.default_rng(3)
    ground, tiles = _planted(300, 120, 0.15, rng)
    decoys = _unit(rng.standard_normal((300, 64)))
    lab = target_decoy_pairs(ground, tiles, decoys, max_fdr=max_fdr)
    assert (lab.margin >= lab.tau - 1e-7).all()
