"""Default projection parameters per format and from a synthetic world's synth_meta.json."""

from __future__ import annotations

import json
import math

import pytest

from ucvgl.services.datasets.index import CrossViewDataset
from ucvgl.services.projection import BEVParams, bev_params_for_dataset, default_bev_params
from ucvgl.shared.errors import ConfigError


def test_paper_defaults():
    cvact = default_bev_params("cvact")
    assert (cvact.fov_deg, cvact.out_size, cvact.has_band_placement) == (170, 1200, False)
    cvusa = default_bev_params("cvusa")
    assert (cvusa.fov_deg, cvusa.out_size, cvusa.band_offset_px) == (175, 750, -20)
    top, bottom = cvusa.band_elevations((224, 1232))
    assert top == pytest.approx(38.571, abs=1e-3) and bottom == pytest.approx(-26.883, abs=1e-3)
    assert default_bev_params("vigor").fov_deg == 170
    assert default_bev_params("folder").fov_deg == 170
    assert default_bev_params("CVUSA", out_size=64).out_size == 64
    assert default_bev_params("cvusa", 64).band_offset_px == -20
    with pytest.raises(ConfigError, match="unknown dataset format"):
        default_bev_params("kitti")


def _dataset(root, fmt="folder", panorama="full") -> CrossViewDataset:
    return CrossViewDataset(name="d", format=fmt, root=root, panorama=panorama, splits={})


def test_dataset_params_follow_format_and_panorama_kind(tmp_path):
    assert bev_params_for_dataset(_dataset(tmp_path, "cvact"), 32) == BEVParams(170, 32)
    band = bev_params_for_dataset(_dataset(tmp_path, "cvusa", "band"), 32)
    assert band.band_offset_px == -20 and band.fov_deg == 175
    full = bev_params_for_dataset(_dataset(tmp_path, "cvusa", "full"), 32)
    assert not full.has_band_placement


def test_synth_meta_sets_fov_and_band(tmp_path):
    meta = {  # as ucvgl.services.synth writes it
        "camera_height_m": 2.0,
        "tile_extent_m": 45.7,
        "bev_fov_deg": 172.5,
        "panorama": {
            "kind": "band",
            "size": [40, 256],
            "top_elevation_deg": 30.0,
            "bottom_elevation_deg": -40.0,
        },
    }
    (tmp_path / "synth_meta.json").write_text(json.dumps(meta))
    params = bev_params_for_dataset(_dataset(tmp_path, "cvusa", "band"), 48)
    assert params.fov_deg == 172.5 and params.out_size == 48
    assert params.band_elevations((10, 100)) == (30.0, -40.0)
    assert params.band_offset_px is None


def test_synth_meta_fov_from_tile_extent_and_camera_height(tmp_path):
    meta = {"camera_height_m": 2.0, "tile_extent_m": 4 * math.tan(math.radians(85)), "x": 1}
    (tmp_path / "synth_meta.json").write_text(json.dumps(meta))
    params = bev_params_for_dataset(_dataset(tmp_path, "cvact"), 16)
    assert params.fov_deg == pytest.approx(170.0)


def test_synth_meta_full_panorama_drops_the_band(tmp_path):
    meta = {"panorama": {"kind": "full", "size": [64, 128], "horizon_row": 32}}
    (tmp_path / "synth_meta.json").write_text(json.dumps(meta))
    assert not bev_params_for_dataset(_dataset(tmp_path, "cvusa", "band"), 16).has_band_placement


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[1, 2]",
        json.dumps({"bev_fov_deg": "wide"}),
        json.dumps({"bev_fov_deg": 200}),
        json.dumps({"camera_height_m": 0, "tile_extent_m": 40}),
        json.dumps({"panorama": {"kind": "band", "top_elevation_deg": 10}}),
        json.dumps(
            {"panorama": {"kind": "band", "top_elevation_deg": -50, "bottom_elevation_deg": 10}}
        ),
        json.dumps({"panorama": "cube"}),
    ],
)
def test_bad_synth_meta_names_the_file(tmp_path, text):
    (tmp_path / "synth_meta.json").write_text(text)
    with pytest.raises(ConfigError, match="synth_meta.json"):
        bev_params_for_dataset(_dataset(tmp_path), 16)
