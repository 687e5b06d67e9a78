"""The independent held-out world generator (benchmarks/worlds/othergen.py) at toy size.

Tiny worlds (6 + 3 locations, 32x64 panoramas, 32 px tiles) in both layouts, read back with
the project's own readers; the CVUSA band placement agrees with the projection's defaults.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.worlds import othergen  # noqa: E402
from ucvgl.services.datasets import load_dataset  # noqa: E402
from ucvgl.services.projection import bev_params_for_dataset, default_bev_params  # noqa: E402

TINY = {"n_train": 6, "n_val": 3, "seed": 5, "pano_hw": (32, 64), "tile": 32, "workers": 1}


@pytest.mark.parametrize(
    ("layout", "pano_size", "fov"),
    [("cvact", (64, 32), 170.0), ("cvusa", (64, 12), 175.0)],
)
def test_tiny_world_loads_with_the_project_readers(tmp_path, layout, pano_size, fov):
    root = tmp_path / layout
    info = othergen.generate(root, layout, **TINY)
    assert info["chunks"] == 2  # train and val never share a town
    ds = load_dataset(root, layout)
    assert {name: len(split.ground_paths) for name, split in ds.splits.items()} == {
        "train": 6,
        "val": 3,
    }
    for split in ds.splits.values():
        assert len(split.satellite_paths) == len(split.ground_paths)
        assert list(split.positives) == list(range(len(split.ground_paths)))
        with Image.open(split.ground_paths[0]) as pano, Image.open(split.satellite_paths[0]) as t:
            assert pano.size == pano_size and t.size == (32, 32)
            assert pano.format == t.format == "JPEG"
    assert not (root / "synth_meta.json").exists()  # readers use the format's default FOV
    assert bev_params_for_dataset(ds).fov_deg == fov
    if layout == "cvact":
        xy = ds.splits["train"].satellite_xy
        assert xy.shape == (6, 2) and (xy[:, 0] > 600_000).all()


def test_same_seed_same_bytes_and_unrelated_tiles_differ(tmp_path):
    kw = {**TINY, "n_train": 2, "n_val": 0}
    a = othergen.generate(tmp_path / "a", "cvusa", **kw)
    othergen.generate(tmp_path / "b", "cvusa", **kw)
    othergen.generate(tmp_path / "c", "cvusa", unrelated_tiles=True, **kw)
    assert a["unrelated_tiles"] is False
    for rel in ("streetview/panos/0000001.jpg", "bingmap/19/0000002.jpg"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    # the panoramas are the same town; the tiles come from another one
    pano = "streetview/panos/0000001.jpg"
    assert (tmp_path / "a" / pano).read_bytes() == (tmp_path / "c" / pano).read_bytes()
    tile = "bingmap/19/0000001.jpg"
    assert (tmp_path / "a" / tile).read_bytes() != (tmp_path / "c" / tile).read_bytes()
    assert len(load_dataset(tmp_path / "c", "cvusa").splits["train"].ground_paths) == 2


def test_cvusa_band_matches_the_projection_default_and_tile_sizes():
    spec = othergen.Spec("unused", "cvusa", 1, 0, 0, pano_hw=(256, 512))
    h, top, bottom = spec.band()
    assert h == 93
    ref_top, ref_bottom = default_bev_params("cvusa").band_elevations((h, 512))
    assert top == pytest.approx(ref_top) and bottom == pytest.approx(ref_bottom)
    for layout, fov in (("cvact", 170.0), ("cvusa", 175.0)):
        extent = othergen.LAYOUTS[layout]["tile_m"]
        assert extent == pytest.approx(2 * othergen.CAM_H * math.tan(math.radians(fov / 2)))


def test_refuses_a_non_empty_folder_and_bad_arguments(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(FileExistsError):
        othergen.generate(tmp_path, "cvact", 1, 0)
    with pytest.raises(ValueError):
        othergen.generate(tmp_path / "new", "vigor", 1, 0)
    with pytest.raises(ValueError):
        othergen.generate(tmp_path / "new", "cvact", 1, 0, pano_hw=(32, 32))
