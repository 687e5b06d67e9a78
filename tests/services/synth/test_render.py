"""Geometry of the synthetic renderers on hand-built worlds (no procedural map)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ucvgl.services.synth.render import (
    CAMERA_HEIGHT_M,
    TILE_EXTENT_M,
    render_panorama,
    render_satellite,
)
from ucvgl.services.synth.world import World

RED = (220, 20, 20)
CAM = (100.0, 100.0)


def _world_with_box(dx: float, dy: float, half: float = 4.0, height: float = 20.0) -> World:
    """An empty flat map with one red box centred at CAM + (dx, dy) metres."""
    world = World(200.0, 200.0, 0.25)
    x, y = CAM[0] + dx, CAM[1] + dy
    world.add_box(x - half, y - half, x + half, y + half, height, RED, RED, windows=False)
    return world.finalize()


def _red(img: np.ndarray) -> np.ndarray:
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return (r > 120) & (g < 90) & (b < 90) & (r - g > 60)


def test_tile_extent_matches_fov_170_from_2m() -> None:
    assert TILE_EXTENT_M == pytest.approx(2 * 2.0 * math.tan(math.radians(85.0)))
    assert TILE_EXTENT_M == pytest.approx(45.72, abs=0.01)


@pytest.mark.parametrize(
    ("dx", "dy", "expected_fraction"),
    [(0.0, 15.0, 0.5), (15.0, 0.0, 0.75), (-15.0, 0.0, 0.25), (0.0, -15.0, 0.0)],
    ids=["north-centre", "east-three-quarters", "west-quarter", "south-edges"],
)
def test_panorama_columns_follow_compass(dx: float, dy: float, expected_fraction: float) -> None:
    world = _world_with_box(dx, dy)
    pano = render_panorama(world, *CAM, (64, 128))
    cols = np.flatnonzero(_red(pano).any(axis=0))
    assert cols.size > 0
    w = pano.shape[1]
    # circular mean of the red columns' azimuths
    ang = cols / w * 2 * np.pi
    mean = math.atan2(np.sin(ang).mean(), np.cos(ang).mean()) % (2 * np.pi)
    got = mean / (2 * np.pi)
    diff = min(abs(got - expected_fraction), 1 - abs(got - expected_fraction))
    assert diff < 1.5 / w
    # the box (8 m wide at 15 m) spans 2*atan(4/11) ~ 40 degrees at most
    assert cols.size <= 0.12 * w + 2 or expected_fraction == 0.0


def test_north_building_is_at_top_centre_of_satellite_tile() -> None:
    world = _world_with_box(0.0, 18.0, half=3.0)
    tile = render_satellite(world, *CAM, 64)
    rows, cols = np.nonzero(_red(tile))
    assert rows.size > 0
    px = 64 / TILE_EXTENT_M  # pixels per metre
    # the box spans y = 15..21 m north of the centre -> rows 32 - 21 px .. 32 - 15 px
    assert rows.min() >= int(32 - 21 * px) - 1 and rows.max() <= int(32 - 15 * px) + 1
    assert abs(cols.mean() - 31.5) < 1.0
    assert cols.min() >= int(32 - 3 * px) - 1 and cols.max() <= int(32 + 3 * px) + 1


def test_east_building_is_right_of_centre_in_satellite_tile() -> None:
    world = _world_with_box(15.0, 0.0, half=3.0)
    rows, cols = np.nonzero(_red(render_satellite(world, *CAM, 64)))
    assert abs(rows.mean() - 31.5) < 1.0
    assert cols.mean() == pytest.approx(31.5 + 15 * 64 / TILE_EXTENT_M, abs=1.0)


def test_horizon_is_the_middle_row_of_a_full_panorama() -> None:
    world = World(400.0, 400.0, 0.5, ground_rgb=(90, 140, 60)).finalize()
    pano = render_panorama(world, 200.0, 200.0, (64, 128)).astype(int)
    sky = pano[: 64 // 2 + 1]  # rows 0 .. H/2 look at elevation >= 0
    ground = pano[64 // 2 + 1 :]
    assert (sky[..., 2] > sky[..., 1]).all()  # blue sky
    assert (ground[..., 1] > ground[..., 2]).all()  # green ground (hazy near the horizon)


def test_building_top_edge_matches_elevation_formula() -> None:
    """The first red row of the north column is where elev = atan((Hb - h) / D)."""
    distance, height, H = 20.0, 14.0, 180
    world = _world_with_box(0.0, distance + 4.0, half=4.0, height=height)  # near face at D
    pano = render_panorama(world, *CAM, (H, 2 * H))
    column = _red(pano)[:, H]  # the centre column looks north
    first = int(np.flatnonzero(column)[0])
    elevation = math.degrees(math.atan((height - CAMERA_HEIGHT_M) / distance))
    expected_row = (90.0 - elevation) / 180.0 * H
    assert abs(first - expected_row) <= 1.5
    # and the building's foot meets the ground at depression atan(h / D)
    last = int(np.flatnonzero(column)[-1])
    foot_row = (90.0 + math.degrees(math.atan(CAMERA_HEIGHT_M / distance))) / 180.0 * H
    assert abs(last - foot_row) <= 1.5


def test_band_rows_are_a_crop_of_the_full_panorama() -> None:
    world = _world_with_box(0.0, 15.0)
    full = render_panorama(world, *CAM, (64, 128))
    band = render_panorama(world, *CAM, (64, 128), rows=(20, 41))
    np.testing.assert_array_equal(band, full[20:41])


def test_heading_rolls_the_panorama() -> None:
    world = _world_with_box(6.0, 15.0)
    w, k = 128, 40
    north = render_panorama(world, *CAM, (64, w))
    turned = render_panorama(world, *CAM, (64, w), heading_deg=k * 360.0 / w)
    # the column that looks north moved k columns left
    rolled = np.roll(turned, k, axis=1).astype(int)
    assert np.mean(rolled == north) > 0.99
    assert np.abs(rolled - north.astype(int)).mean() < 1.0


def test_tree_crown_floats_above_ground() -> None:
    world = World(200.0, 200.0, 0.25)
    world.add_tree(100.0, 112.0, radius_m=3.0, height_m=10.0, foliage_rgb=(20, 200, 20))
    world.finalize()
    pano = render_panorama(world, *CAM, (90, 180))
    col = pano[:, 90].astype(int)
    green = (col[:, 1] > 150) & (col[:, 0] < 80)
    rows = np.flatnonzero(green)
    assert rows.size > 0
    # crown bottom at 10 - 2*3 = 4 m > camera height: the crown is seen above the horizon
    assert rows.max() < 45
