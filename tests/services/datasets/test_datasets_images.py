"""Image reading: RGB conversion, clear errors, the pixel limit, rolling panoramas to north."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from ucvgl.services.datasets import load_panorama, load_rgb
from ucvgl.shared.errors import DatasetError


def _azimuth_panorama(path, width: int, heading: float) -> None:
    """A panorama whose column x stores which azimuth step it looks at.

    The centre column looks at ``heading`` (degrees clockwise from north) and azimuth grows
    to the right: column x looks at ``heading + (x - W/2) * 360/W``; the pixel stores that
    azimuth divided by the column width in degrees (mod W).
    """
    step = 360.0 / width
    x = np.arange(width)
    azimuth_step = np.round(heading / step + x - width / 2).astype(int) % width
    pixels = np.zeros((4, width, 3), dtype=np.uint8)
    pixels[..., 0] = azimuth_step.astype(np.uint8)[None, :]
    Image.fromarray(pixels).save(path)


@pytest.mark.parametrize("heading", [0.0, 90.0, -90.0, 180.0, 10.0, 350.0, 720.0 + 40.0])
def test_load_panorama_puts_north_at_the_centre_column(tmp_path, heading):
    width = 36  # 10 degrees per column
    path = tmp_path / "pano.png"
    _azimuth_panorama(path, width, heading)
    rolled = np.asarray(load_panorama(path, heading_deg=heading))[0, :, 0]
    # after the roll, column x looks at (x - W/2) * 360/W: north (0) at the centre column
    np.testing.assert_array_equal(rolled, (np.arange(width) - width // 2) % width)
    assert rolled[width // 2] == 0
    if heading == 90.0:  # the sign: the centre looked east, so north was at column W/4
        original = np.asarray(Image.open(path))[0, :, 0]
        assert original[width // 4] == 0 and rolled[width // 2] == original[width // 4]


def test_load_panorama_without_heading_is_unchanged(tmp_path):
    path = tmp_path / "pano.png"
    _azimuth_panorama(path, 36, 30.0)
    original = np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(load_panorama(path)), original)
    np.testing.assert_array_equal(np.asarray(load_panorama(path, float("nan"))), original)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "RGB"])
def test_load_rgb_converts_modes(tmp_path, mode):
    path = tmp_path / "x.png"
    Image.new(mode, (5, 3)).save(path)
    image = load_rgb(path)
    assert image.mode == "RGB" and image.size == (5, 3)


def test_missing_unreadable_and_truncated_files(tmp_path):
    with pytest.raises(DatasetError, match=r"nope\.jpg: image file is missing"):
        load_rgb(tmp_path / "nope.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(DatasetError, match=r"bad\.jpg: image file is unreadable"):
        load_rgb(bad)
    full = tmp_path / "full.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(full, quality=95)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"cut\.jpg: image file is truncated"):
        load_rgb(cut)


@pytest.fixture
def pixel_limit_100(monkeypatch):
    """Settings with max_image_pixels = 100 (restored afterwards)."""
    from ucvgl.shared.config import get_settings

    monkeypatch.setenv("UCVGL_MAX_IMAGE_PIXELS", "100")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("UCVGL_MAX_IMAGE_PIXELS")
    get_settings.cache_clear()


def test_pixel_limit_from_settings(tmp_path, pixel_limit_100):
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    Image.new("RGB", (10, 10)).save(small)
    Image.new("RGB", (16, 8)).save(big)
    assert load_rgb(small).size == (10, 10)
    with pytest.raises(DatasetError, match=r"big\.png: image is 16x8 = 128 pixels, more than"):
        load_rgb(big)
    from ucvgl.services.datasets.images import check_image_header

    assert "limit of 100" in check_image_header(big) and check_image_header(small) is None


@pytest.mark.realdata
def test_real_pairs_read_at_their_listed_sizes(real_pairs_dir):
    with open(real_pairs_dir / "pairs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 47
    for row in rows:
        ground = load_panorama(real_pairs_dir / row["ground"])
        sat = load_rgb(real_pairs_dir / row["satellite"])
        assert ground.mode == "RGB" and sat.mode == "RGB"
        assert "x".join(map(str, ground.size)) == row["ground_size"], row["ground"]
        assert "x".join(map(str, sat.size)) == row["satellite_size"], row["satellite"]
        rolled = load_panorama(real_pairs_dir / row["ground"], heading_deg=90.0)
        w = ground.width
        np.testing.assert_array_equal(
            np.asarray(rolled)[:, w // 2], np.asarray(ground)[:, w // 2 - w // 4]
        )
