"""Tiles resampled to another ground extent per tile (``ucvgl.services.tile_scale``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ucvgl.services.tile_scale import rescale_tile
from ucvgl.services.training.data import ImageListDataset, fake_satellite_images


@pytest.fixture
def tile() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)


def test_a_tile_covering_twice_its_ground_shrinks_into_a_black_border(tile):
    got = np.asarray(rescale_tile(Image.fromarray(tile), 2.0))
    small = np.asarray(Image.fromarray(tile).resize((16, 16), Image.BILINEAR))
    assert got.shape == tile.shape
    np.testing.assert_array_equal(got[8:24, 8:24], small)
    border = np.ones((32, 32), bool)
    border[8:24, 8:24] = False
    assert not got[border].any()


def test_a_tile_covering_half_its_ground_is_its_centre(tile):
    np.testing.assert_array_equal(
        np.asarray(rescale_tile(Image.fromarray(tile), 0.5)), tile[8:24, 8:24]
    )
    image = Image.fromarray(tile)
    assert rescale_tile(image, 1.0) is image and rescale_tile(image, None) is image
    with pytest.raises(ValueError, match="positive"):
        rescale_tile(image, -1.0)


def test_the_loader_rescales_tiles_and_fakes_but_never_panoramas(tmp_path: Path, tile):
    path = tmp_path / "tile.png"
    Image.fromarray(tile).save(path)
    got = fake_satellite_images([path], 32, cache=False, scale=0.5).decode(0)
    expected = np.asarray(Image.fromarray(tile[8:24, 8:24]).resize((32, 32), Image.BILINEAR))
    np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), expected)
    pano = ImageListDataset([path], (32, 32), panorama=True, scale=0.5, cache=False).decode(0)
    np.testing.assert_array_equal(pano.permute(1, 2, 0).numpy(), tile)
