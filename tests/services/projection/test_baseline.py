"""The raw-pixel retrieval check: descriptors and the recall bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ucvgl.services.datasets.index import CrossViewDataset, ViewSplit
from ucvgl.services.projection import (
    BEVParams,
    panorama_to_bev,
    pixel_retrieval,
    thumbnail_descriptors,
)


def test_thumbnail_descriptors_are_unit_area_averages():
    x = torch.rand(2, 3, 8, 8)
    d = thumbnail_descriptors(x, size=2)
    assert d.shape == (2, 12)
    torch.testing.assert_close(d.norm(dim=1), torch.ones(2))
    manual = x.reshape(2, 3, 2, 4, 2, 4).mean(dim=(3, 5)).flatten(1)
    torch.testing.assert_close(d, manual / manual.norm(dim=1, keepdim=True))


def test_pixel_retrieval_finds_tiles_that_look_like_the_bevs(tmp_path):
    """Tiles = noisy BEVs of their panoramas, stored in shuffled order: R@1 must be 100."""
    rng = np.random.default_rng(0)
    params = BEVParams(out_size=16)
    n = 12
    order = rng.permutation(n)  # tile j holds the BEV of panorama order[j]
    panos, tiles = [], [None] * n
    for i in range(n):
        pano = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)
        panos.append(tmp_path / f"g{i}.png")
        Image.fromarray(pano).save(panos[-1])
        x = torch.from_numpy(pano).permute(2, 0, 1)[None].float() / 255
        bev = panorama_to_bev(x, params)[0].permute(1, 2, 0).numpy() * 255
        noisy = np.clip(bev + rng.normal(0, 8, bev.shape), 0, 255).astype(np.uint8)
        j = int(np.where(order == i)[0][0])
        tiles[j] = tmp_path / f"s{j}.png"
        Image.fromarray(noisy).save(tiles[j])
    positives = np.array([int(np.where(order == i)[0][0]) for i in range(n)], np.int64)
    split = ViewSplit([p.stem for p in panos], panos, [t.stem for t in tiles], tiles, positives)
    ds = CrossViewDataset("t", "folder", tmp_path, "full", {"train": split})
    result = pixel_retrieval(ds, params, split="train", size=8)
    assert result["r1"] == 100.0 and result["gallery_size"] == n
    assert result["chance_r1"] == pytest.approx(100 / n)
    split.positives = np.full(n, -1, np.int64)
    with pytest.raises(ValueError, match="no known pairs"):
        pixel_retrieval(ds, params, split="train")
