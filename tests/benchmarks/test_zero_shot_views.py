"""benchmarks/zero_shot_views.py: the tile extent of a synthetic world."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))

import zero_shot_views  # noqa: E402


def test_tile_extent_reads_synthetic_metadata(tmp_path):
    assert zero_shot_views.tile_extent(tmp_path) is None
    (tmp_path / "synth_meta.json").write_text('{"camera_height_m": 2.0}')
    assert zero_shot_views.tile_extent(tmp_path) is None
    (tmp_path / "synth_meta.json").write_text('{"tile_extent_m": 60.0}')
    assert zero_shot_views.tile_extent(tmp_path) == 60.0
