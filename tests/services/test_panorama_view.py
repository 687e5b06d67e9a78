"""Panoramas of one vertical layout shown as another (``ucvgl.services.panorama_view``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ucvgl.services.panorama_view import (
    FULL_SPHERE,
    cut_rows,
    dataset_elevations,
    rows_for,
    seen_elevations,
    source_view_rows,
)
from ucvgl.services.training.data import ImageListDataset

CVUSA_BAND = (38.6, -26.9)


def _rows_reference(stored, wanted):
    """Row v of a panorama spanning (top, bottom) looks at top - v/H (top - bottom)."""
    span = stored[0] - stored[1]
    return (stored[0] - wanted[0]) / span, (stored[0] - wanted[1]) / span


def test_a_cvusa_band_is_the_middle_rows_of_a_full_sphere():
    rows = rows_for(FULL_SPHERE, CVUSA_BAND)
    assert rows == pytest.approx(((90 - 38.6) / 180, (90 + 26.9) / 180))
    assert rows == pytest.approx(_rows_reference(FULL_SPHERE, CVUSA_BAND))


def test_a_full_sphere_shown_through_a_band_reaches_beyond_it():
    top, bottom = rows_for(CVUSA_BAND, FULL_SPHERE)
    assert top < 0 < 1 < bottom
    assert (top, bottom) == pytest.approx(_rows_reference(CVUSA_BAND, FULL_SPHERE))


def test_the_same_layout_needs_no_cut_and_bad_ranges_are_refused():
    assert rows_for(FULL_SPHERE, FULL_SPHERE) is None
    assert rows_for(CVUSA_BAND, CVUSA_BAND) is None
    with pytest.raises(ValueError, match="top > bottom"):
        rows_for(FULL_SPHERE, (-10.0, 10.0))


@pytest.mark.parametrize("stored", [FULL_SPHERE, CVUSA_BAND, (20.0, -60.0)])
@pytest.mark.parametrize("wanted", [CVUSA_BAND, (45.0, -45.0), (10.0, -80.0)])
def test_the_rows_span_the_wanted_elevations(stored, wanted):
    rows = rows_for(stored, wanted)
    seen = stored if rows is None else seen_elevations(stored, rows)
    assert seen == pytest.approx(wanted)


def test_cut_rows_keeps_those_rows_and_pads_black_beyond_the_image():
    h, w = 40, 80
    array = np.zeros((h, w, 3), np.uint8)
    array[:, :, 0] = np.arange(h, dtype=np.uint8)[:, None] + 100  # row index in red
    image = Image.fromarray(array)
    band = np.asarray(cut_rows(image, (0.25, 0.75)))
    np.testing.assert_array_equal(band, array[10:30])
    padded = np.asarray(cut_rows(image, (-0.25, 1.25)))
    assert padded.shape == (60, w, 3)
    np.testing.assert_array_equal(padded[10:50], array)
    assert not padded[:10].any() and not padded[50:].any()
    assert cut_rows(image, None) is image


def test_the_loader_cuts_then_resizes(tmp_path: Path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, (64, 128, 3), dtype=np.uint8)
    path = tmp_path / "pano.png"
    Image.fromarray(array).save(path)
    rows = rows_for(FULL_SPHERE, CVUSA_BAND)
    got = ImageListDataset([path], (32, 64), panorama=True, rows=rows, cache=False).decode(0)
    top, bottom = round(rows[0] * 64), round(rows[1] * 64)
    expected = np.asarray(Image.fromarray(array[top:bottom]).resize((64, 32), Image.BILINEAR))
    np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), expected)
    whole = ImageListDataset([path], (32, 64), panorama=True, cache=False).decode(0)
    assert not np.array_equal(whole.numpy(), got.numpy())
    # tiles are never cut
    tile = ImageListDataset([path], (32, 64), rows=rows, cache=False).decode(0)
    np.testing.assert_array_equal(tile.numpy(), whole.numpy())


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[str, Path]:
    from ucvgl.services.synth import generate_world

    base = tmp_path_factory.mktemp("layouts")
    return {
        fmt: generate_world(base / fmt, fmt, 4, 2, seed=3, pano_size=(32, 64), sat_size=32)
        for fmt in ("cvusa", "cvact")
    }


def test_each_world_says_which_elevations_its_panoramas_span(worlds):
    import json

    from ucvgl.services.datasets import load_dataset

    meta = json.loads((worlds["cvusa"] / "synth_meta.json").read_text())["panorama"]
    band = dataset_elevations(load_dataset(worlds["cvusa"], "cvusa"))
    assert band == pytest.approx((meta["top_elevation_deg"], meta["bottom_elevation_deg"]))
    assert band[0] < 90 and band[1] > -90
    assert dataset_elevations(load_dataset(worlds["cvact"], "cvact")) == FULL_SPHERE


def test_a_band_source_reads_the_bands_rows_of_a_full_target(worlds):
    from ucvgl.services.datasets import load_dataset

    target = load_dataset(worlds["cvact"], "cvact")
    source = {"format": "cvusa", "data": str(worlds["cvusa"])}
    record, rows = source_view_rows(source, None, target)
    band = dataset_elevations(load_dataset(worlds["cvusa"], "cvusa"))
    assert rows == pytest.approx(_rows_reference(FULL_SPHERE, band))
    assert record["rows"] == pytest.approx(list(rows))
    assert record["source_elevations"] == pytest.approx(list(band))
    # a source adapted in its turn passes on what it saw, not its dataset's layout
    _, again = source_view_rows({"format": "cvact", "data": str(worlds["cvact"])}, rows, target)
    assert again == pytest.approx(rows)
    # same layout: nothing cut; a source dataset that is gone: as they are, and said so
    same = {"format": "cvact", "data": str(worlds["cvact"])}
    assert source_view_rows(same, None, target)[1] is None
    gone, none = source_view_rows({"format": "cvusa", "data": "/nowhere/at/all"}, None, target)
    assert none is None and "not here" in gone["reason"]
