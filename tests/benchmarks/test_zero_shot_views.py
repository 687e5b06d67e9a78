"""benchmarks/zero_shot_views.py: tiles resampled to another ground extent per tile."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))

import zero_shot_views  # noqa: E402


def _tile(tmp_path: Path) -> tuple[Path, np.ndarray]:
    array = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    path = tmp_path / "tile.png"
    Image.fromarray(array).save(path)
    return path, array


def test_a_tile_of_less_ground_shrinks_into_a_black_border(tmp_path):
    path, array = _tile(tmp_path)
    got = zero_shot_views.resampled_tile(path, 32, 2.0).permute(1, 2, 0).numpy()
    small = np.asarray(Image.fromarray(array).resize((16, 16), Image.BILINEAR))
    np.testing.assert_array_equal(got[8:24, 8:24], small)
    border = np.ones((32, 32), bool)
    border[8:24, 8:24] = False
    assert not got[border].any()


def test_a_tile_of_more_ground_has_its_centre_enlarged(tmp_path):
    path, array = _tile(tmp_path)
    got = zero_shot_views.resampled_tile(path, 32, 0.5).permute(1, 2, 0).numpy()
    centre = np.asarray(Image.fromarray(array[8:24, 8:24]).resize((32, 32), Image.BILINEAR))
    np.testing.assert_array_equal(got, centre)
    same = zero_shot_views.resampled_tile(path, 32, 1.0).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(same, array)


def test_tile_extent_reads_synthetic_metadata(tmp_path):
    assert zero_shot_views.tile_extent(tmp_path) is None
    (tmp_path / "synth_meta.json").write_text('{"tile_extent_m": 60.0}')
    assert zero_shot_views.tile_extent(tmp_path) == 60.0
