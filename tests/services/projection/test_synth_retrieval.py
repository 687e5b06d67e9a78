"""On a synthetic world, raw BEV pixels retrieve their own tile far above chance.

The world (``ucvgl.services.synth.generate_world``) is rendered with a 2 m camera and
45.7 m tiles, exactly what a 170-degree BEV covers, so this checks the projection's
orientation, scale and (for CVUSA-like bands) vertical placement end to end. Run with -s
to see the numbers. Measured when written (100 locations, 48x96 panoramas, seed 1):
CVACT-like R@1 12 / R@10 51; CVUSA-like band R@1 9 / R@5 30 with the placement read from
synth_meta.json, R@5 5 with the band wrongly centred on the horizon (chance R@1 1, R@5 5).
Generating the two worlds takes ~10 s of CPU, hence ``slow``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ucvgl.services.datasets import load_dataset
from ucvgl.services.projection import bev_params_for_dataset, pixel_retrieval
from ucvgl.services.synth import generate_world

pytestmark = pytest.mark.slow

N, PANO, SAT, BEV = 100, (48, 96), 48, 48


def _world(tmp_path_factory, fmt: str):
    root = generate_world(
        Path(tmp_path_factory.mktemp(fmt)) / "world",
        fmt,
        N,
        0,
        seed=1,
        pano_size=PANO,
        sat_size=SAT,
        workers=2,
    )
    return load_dataset(root, fmt)


def _report(label: str, result: dict) -> None:
    keys = ("r1", "r5", "r10", "chance_r1", "chance_r5", "chance_r10")
    print(f"\n{label}: " + ", ".join(f"{k}={result[k]:.1f}" for k in keys))


def test_full_panorama_world(tmp_path_factory):
    dataset = _world(tmp_path_factory, "cvact")
    params = bev_params_for_dataset(dataset, BEV)
    assert params.fov_deg == pytest.approx(170.0) and not params.has_band_placement
    result = pixel_retrieval(dataset, params, split="train")
    _report(f"CVACT-like world, {N} locations", result)
    assert result["gallery_size"] == N
    assert result["r1"] >= 5 * result["chance_r1"]
    assert result["r10"] >= 3 * result["chance_r10"]


def test_band_panorama_world_needs_the_band_placement(tmp_path_factory):
    dataset = _world(tmp_path_factory, "cvusa")
    assert dataset.panorama == "band"
    params = bev_params_for_dataset(dataset, BEV)
    assert params.band_top_elevation_deg is not None  # read from synth_meta.json
    placed = pixel_retrieval(dataset, params, split="train")
    _report(f"CVUSA-like band world, {N} locations, placement from synth_meta.json", placed)
    centred = pixel_retrieval(
        dataset,
        replace(params, band_top_elevation_deg=None, band_bottom_elevation_deg=None),
        split="train",
    )
    _report("same world, band wrongly centred on the horizon", centred)
    assert placed["r1"] >= 5 * placed["chance_r1"]
    assert placed["r5"] >= centred["r5"] + 10
