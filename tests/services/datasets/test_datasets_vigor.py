"""VIGOR reader: satellite lists, 13-field panorama lines, protocols, validation."""

from __future__ import annotations

import numpy as np
import pytest

from ucvgl.services.datasets import load_dataset
from ucvgl.services.datasets.vigor import parse_panorama_name, parse_tile_latlon
from ucvgl.shared.errors import ConfigError, DatasetError


def test_name_parsers():
    assert parse_tile_latlon("satellite_41.88_-87.63.png") == (41.88, -87.63)
    assert parse_tile_latlon("satellite_-33.5_151.2.png") == (-33.5, 151.2)
    assert parse_tile_latlon("tile_1_2.png") is None
    assert parse_panorama_name("-7Lv_TsE,41.879,-87.631,.jpg") == ("-7Lv_TsE", 41.879, -87.631)
    assert parse_panorama_name("abc,41.879,.jpg") is None


def test_same_area_fills_every_field(tmp_path, trees):
    info = trees.vigor(tmp_path, cities=("Chicago", "Seattle"), n_tiles=4, n_train=2, n_test=3)
    ds = load_dataset(tmp_path, "vigor")
    assert ds.format == "vigor" and ds.panorama == "full" and sorted(ds.splits) == ["test", "train"]
    all_tiles = info["Chicago"]["tiles"] + info["Seattle"]["tiles"]
    for split, picked in (("train", slice(0, 2)), ("test", slice(2, 5))):
        s = ds.split(split)
        assert s.satellite_ids == [t[:-4] for t in all_tiles]  # every tile of both cities
        assert s.satellite_paths[5] == tmp_path / "Seattle" / "satellite" / all_tiles[5]
        panos = info["Chicago"]["panos"][picked] + info["Seattle"]["panos"][picked]
        assert s.ground_ids == [p[0] for p in panos]
        assert s.ground_paths[0] == tmp_path / "Chicago" / "panorama" / panos[0][1]
        offset = [0] * len(info["Chicago"]["panos"][picked]) + [4] * len(
            info["Seattle"]["panos"][picked]
        )
        np.testing.assert_array_equal(
            s.positives, [p[2] + o for p, o in zip(panos, offset, strict=True)]
        )
        np.testing.assert_array_equal(
            s.semi_positives, [np.add(p[3], o) for p, o in zip(panos, offset, strict=True)]
        )
        assert s.semi_positives.shape == (len(panos), 3) and s.positive_offsets.shape == (
            len(panos),
            4,
            2,
        )
    test = ds.split("test")
    g = 2  # the first test panorama of Chicago has g = 2 in the builder
    np.testing.assert_allclose(test.positive_offsets[0, 0], [g + 0.5, -g - 0.25])
    np.testing.assert_allclose(test.positive_offsets[0, 2], [110.0 + g, -200.0 - g])
    np.testing.assert_allclose(test.satellite_latlon[1], [40.001, -80.001], atol=1e-9)
    np.testing.assert_allclose(test.satellite_latlon[4], [41.0, -81.0], atol=1e-9)
    np.testing.assert_allclose(test.ground_latlon[0], [40.0021, -80.002], atol=1e-9)


def test_cross_area_uses_the_papers_city_split(tmp_path, trees):
    info = trees.vigor(tmp_path, cities=("Chicago", "NewYork", "Seattle"), n_tiles=3)
    ds = load_dataset(tmp_path, "vigor", protocol="cross_area")
    train, test = ds.split("train"), ds.split("test")
    # VIGOR: train NewYork + Seattle, test SanFrancisco + Chicago (absent cities skipped)
    assert train.satellite_ids == [
        t[:-4] for t in info["NewYork"]["tiles"] + info["Seattle"]["tiles"]
    ]
    assert test.satellite_ids == [t[:-4] for t in info["Chicago"]["tiles"]]
    assert test.ground_ids == [p[0] for p in info["Chicago"]["panos"]]  # every panorama
    assert train.num_ground == 8
    np.testing.assert_array_equal(train.positives[4:], [p[2] + 3 for p in info["Seattle"]["panos"]])


def test_city_selection_and_bad_options(tmp_path, trees):
    trees.vigor(tmp_path, cities=("Chicago", "Seattle"))
    ds = load_dataset(tmp_path, "vigor", cities="Seattle")
    assert all(i.startswith("Sea_") for i in ds.split("train").ground_ids)
    with pytest.raises(DatasetError, match="NewYork"):
        load_dataset(tmp_path, "vigor", cities=["NewYork"])
    with pytest.raises(ConfigError, match="Paris"):
        load_dataset(tmp_path, "vigor", cities=["Paris"])
    with pytest.raises(ConfigError, match="protocol"):
        load_dataset(tmp_path, "vigor", protocol="sideways")
    with pytest.raises(ConfigError, match="no option"):
        load_dataset(tmp_path, "cvusa", protocol="cross_area")


def test_bad_lines_missing_files_and_skip(tmp_path, trees):
    info = trees.vigor(tmp_path, cities=("Chicago",), n_tiles=4, n_train=3, n_test=1)
    f = tmp_path / "splits" / "Chicago" / "same_area_balanced_train.txt"
    lines = f.read_text().splitlines()
    lines[1] = " ".join(lines[1].split()[:7])  # truncated line 2
    lines.append(lines[0])  # duplicate panorama on line 4
    f.write_text("\n".join(lines) + "\n")
    (tmp_path / "Chicago" / "panorama" / info["Chicago"]["panos"][2][1]).unlink()
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path, "vigor")
    msg = str(err.value)
    assert "same_area_balanced_train.txt:2: malformed line: expected 13 fields, got 7" in msg
    assert "same_area_balanced_train.txt:3: panorama file is missing" in msg
    assert "same_area_balanced_train.txt:4: duplicate panorama id" in msg
    ds = load_dataset(tmp_path, "vigor", skip_invalid=True)
    assert ds.split("train").ground_ids == [info["Chicago"]["panos"][0][0]]
    assert ds.report.skipped == 3


def test_missing_tile_drops_its_panoramas_and_clears_semi_positives(tmp_path, trees):
    info = trees.vigor(tmp_path, cities=("Chicago",), n_tiles=4, n_train=4, n_test=1)
    tiles = info["Chicago"]["tiles"]
    (tmp_path / "Chicago" / "satellite" / tiles[1]).unlink()
    with pytest.raises(
        DatasetError, match=r"satellite_list\.txt:2: satellite tile file is missing"
    ):
        load_dataset(tmp_path, "vigor")
    ds = load_dataset(tmp_path, "vigor", skip_invalid=True)
    train = ds.split("train")
    # panorama g has positive g % 4 and semis (g+1, g+2, g+3) % 4; tile 1 is gone
    assert train.ground_ids == [info["Chicago"]["panos"][g][0] for g in (0, 2, 3)]
    assert train.num_satellite == 3
    # old indices 0, 2, 3 become 0, 1, 2; tile 1 becomes -1
    np.testing.assert_array_equal(train.positives, [0, 1, 2])
    np.testing.assert_array_equal(train.semi_positives, [[-1, 1, 2], [2, 0, -1], [0, -1, 1]])
    assert ds.report.skipped == 2  # the tile and panorama 1 (its positive)


def test_unknown_tile_reference(tmp_path, trees):
    trees.vigor(tmp_path, cities=("Seattle",))
    f = tmp_path / "splits" / "Seattle" / "same_area_balanced_test.txt"
    fields = f.read_text().splitlines()[0].split()
    fields[4] = "satellite_1.0_2.0.png"
    f.write_text(" ".join(fields) + "\n")
    with pytest.raises(DatasetError, match="semi-positive 1 tile 'satellite_1.0_2.0.png' is not"):
        load_dataset(tmp_path, "vigor")
