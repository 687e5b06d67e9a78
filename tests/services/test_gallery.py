"""Tiles and panoramas beside a query's answer: true tiles by path, files inside the roots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ucvgl.services.datasets.index import CrossViewDataset, ViewSplit
from ucvgl.services.gallery import (
    PathRefused,
    TileTable,
    inside_roots,
    panoramas,
    split_order,
)


def test_inside_roots_resolves_links_and_dots(tmp_path):
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "a" / "t.jpg").write_bytes(b"x")
    (tmp_path / "out.jpg").write_bytes(b"y")
    (root / "a" / "link.jpg").symlink_to(tmp_path / "out.jpg")
    (root / "a" / "notes.txt").write_text("z")
    assert (
        inside_roots(root / "a" / ".." / "a" / "t.jpg", [root]) == (root / "a" / "t.jpg").resolve()
    )
    for outside in (root / ".." / "out.jpg", root / "a" / "link.jpg"):
        with pytest.raises(PathRefused, match="outside the data roots"):
            inside_roots(outside, [root])
    with pytest.raises(PathRefused, match="not an image file"):
        inside_roots(root / "a" / "notes.txt", [root])
    with pytest.raises(FileNotFoundError):
        inside_roots(root / "missing.jpg", [root])
    assert (
        inside_roots(root / "a" / "link.jpg", [root, tmp_path]) == (tmp_path / "out.jpg").resolve()
    )


def dataset(positives) -> CrossViewDataset:
    split = ViewSplit(
        ground_ids=["g0", "g1", "g2"],
        ground_paths=[Path(f"/d/ground/g{i}.jpg") for i in range(3)],
        satellite_ids=["s0", "s1"],
        satellite_paths=[Path("/d/sat/s0.jpg"), Path("/d/sat/s1.jpg")],
        positives=positives,
        ground_heading_deg=np.array([10.0, np.nan, 350.0], dtype=np.float32),
    )
    return CrossViewDataset(
        "d", "folder", Path("/d"), "equirectangular", {"train": split, "val": split}
    )


def test_panoramas_name_their_true_tile_by_the_index_id_of_its_file():
    # The index qualified its ids by split (the same id in two splits): found by path.
    tiles = TileTable(["val/s1", "val/s0"], [{"path": "/d/sat/s1.jpg"}, {"path": "/d/sat/s0.jpg"}])
    found = panoramas(dataset(np.array([1, -1, 0])), tiles, "val")
    assert [(p.ground_id, p.true_satellite_id, p.heading_deg) for p in found] == [
        ("g0", "val/s1", 10.0),
        ("g1", None, None),  # unknown pair, north-aligned
        ("g2", "val/s0", 350.0),
    ]
    assert found[0].to_dict()["file_name"] == "g0.jpg"
    assert all(p.true_satellite_id is None for p in panoramas(dataset(None), tiles, "train"))
    assert split_order(dataset(None)) == ["val", "train"]
    assert tiles.path_of("val/s0") == Path("/d/sat/s0.jpg") and tiles.path_of("s0") is None
