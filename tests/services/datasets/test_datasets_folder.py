"""Folder layout: ground/ + satellite/ with optional coordinates, metadata and pairs."""

from __future__ import annotations

import numpy as np
import pytest

from ucvgl.services.datasets import load_dataset
from ucvgl.shared.errors import DatasetError


def test_unlabelled_folder_is_all_train(tmp_path, trees):
    trees.folder(tmp_path, n_ground=3, n_sat=4)
    (tmp_path / "ground" / "notes.txt").write_text("ignored")
    ds = load_dataset(tmp_path, "folder")
    assert ds.format == "folder" and ds.panorama == "full" and list(ds.splits) == ["train"]
    s = ds.split("train")
    assert s.ground_ids == ["g0", "g1", "g2"] and s.satellite_ids == ["s0", "s1", "s2", "s3"]
    assert s.ground_paths[1] == tmp_path / "ground" / "g1.jpg"
    assert s.satellite_paths[3] == tmp_path / "satellite" / "s3.png"
    assert s.positives is None and s.satellite_latlon is None and s.ground_heading_deg is None
    assert not ds.has_ground_truth


def test_subfolders_give_path_ids(tmp_path, trees):
    trees.folder(tmp_path)
    trees.image(tmp_path / "ground" / "area2" / "x.webp", (32, 16))
    trees.image(tmp_path / "satellite" / "area2" / "t.tif", (8, 8))
    s = load_dataset(tmp_path, "folder").split("train")
    assert "area2/x" in s.ground_ids and "area2/t" in s.satellite_ids


def test_csv_metadata_pairs_and_splits(tmp_path, trees):
    trees.folder(tmp_path, n_ground=4, n_sat=5)
    (tmp_path / "satellite_coords.csv").write_text(
        "name,lat,lon\ns0.png,10.5,20.5\ns1,11,21\ns2.png,12,22\ns3.png,13,23\n"
    )
    (tmp_path / "ground_meta.csv").write_text(
        "name,heading_deg,lat,lon,split\n"
        "g0.jpg,90,10.5,20.5,train\ng1.jpg,,,,train\ng2.jpg,-45,12,22,test\ng3,180,13,23,\n"
    )
    (tmp_path / "pairs.csv").write_text("ground,satellite\ng0.jpg,s0.png\ng2.jpg,s2.png\ng3,s3\n")
    ds = load_dataset(tmp_path, "folder")
    assert sorted(ds.splits) == ["test", "train"]
    train, test = ds.split("train"), ds.split("test")
    assert train.ground_ids == ["g0", "g1", "g3"] and test.ground_ids == ["g2"]
    # paired tiles follow their panoramas' splits; unpaired s1, s4 are in every gallery
    assert train.satellite_ids == ["s0", "s1", "s3", "s4"]
    assert test.satellite_ids == ["s1", "s2", "s4"]
    np.testing.assert_array_equal(train.positives, [0, -1, 2])
    np.testing.assert_array_equal(test.positives, [1])
    np.testing.assert_array_equal(train.ground_heading_deg, [90.0, 0.0, 180.0])
    np.testing.assert_array_equal(test.ground_heading_deg, [-45.0])
    np.testing.assert_allclose(
        train.satellite_latlon, [[10.5, 20.5], [11, 21], [13, 23], [np.nan, np.nan]]
    )
    np.testing.assert_allclose(train.ground_latlon, [[10.5, 20.5], [np.nan, np.nan], [13, 23]])
    assert train.satellite_xy is None


def test_projected_coordinates_and_pair_splits(tmp_path, trees):
    trees.folder(tmp_path, n_ground=2, n_sat=2)
    (tmp_path / "satellite_coords.csv").write_text(
        "name,x,y,crs\ns0.png,500000.5,4649776.25,EPSG:32633\ns1.png,500046,4649776,EPSG:32633\n"
    )
    (tmp_path / "pairs.csv").write_text(
        "ground,satellite,split\ng0.jpg,s0.png,val\ng1.jpg,s1.png,train\n"
    )
    ds = load_dataset(tmp_path, "folder")
    assert sorted(ds.splits) == ["train", "val"]
    np.testing.assert_allclose(ds.split("val").satellite_xy, [[500000.5, 4649776.25]])
    assert ds.split("val").satellite_latlon is None
    np.testing.assert_array_equal(ds.split("train").positives, [0])


def test_bad_rows_name_file_and_line_and_can_be_skipped(tmp_path, trees):
    trees.folder(tmp_path, n_ground=4, n_sat=3)
    (tmp_path / "ground_meta.csv").write_text(
        "name,heading_deg,split\ng0.jpg,ninety,train\nmissing.jpg,0,train\ng1.jpg,0,holdout\n"
    )
    (tmp_path / "pairs.csv").write_text("ground,satellite\ng2.jpg,nope.png\ng3.jpg,s1.png,extra\n")
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path, "folder")
    msg = str(err.value)
    assert "ground_meta.csv:2: bad heading_deg 'ninety'" in msg
    assert "ground_meta.csv:3: no panorama 'missing.jpg'" in msg
    assert "ground_meta.csv:4: split 'holdout' is not one of" in msg
    assert "pairs.csv:2: no tile 'nope.png'" in msg
    assert "pairs.csv:3: malformed row" in msg
    assert "5 problem(s)" in msg
    ds = load_dataset(tmp_path, "folder", skip_invalid=True)
    assert ds.split("train").ground_ids == ["g3"]  # g0, g1, g2 dropped; g3's pair row dropped
    np.testing.assert_array_equal(ds.split("train").positives, [-1])
    assert ds.report.skipped == 5


def test_bad_header_and_duplicate_ids(tmp_path, trees):
    trees.folder(tmp_path)
    (tmp_path / "pairs.csv").write_text("panorama,tile\ng0.jpg,s0.png\n")
    with pytest.raises(DatasetError, match=r"pairs\.csv:1: header 'panorama,tile' must have"):
        load_dataset(tmp_path, "folder")
    (tmp_path / "pairs.csv").unlink()
    trees.image(tmp_path / "ground" / "g0.png", (32, 16))
    with pytest.raises(DatasetError, match="duplicate ground id 'g0'"):
        load_dataset(tmp_path, "folder")


def test_empty_folders_are_errors(tmp_path, trees):
    (tmp_path / "ground").mkdir()
    (tmp_path / "satellite").mkdir()
    with pytest.raises(DatasetError, match=f"no images in {tmp_path / 'ground'}"):
        load_dataset(tmp_path, "folder")
    trees.folder(tmp_path, n_ground=1, n_sat=0)
    with pytest.raises(DatasetError, match="no images in .*satellite"):
        load_dataset(tmp_path, "folder")


def test_everything_skipped_is_an_empty_dataset(tmp_path, trees):
    trees.folder(tmp_path, n_ground=2, n_sat=1)
    for p in (tmp_path / "ground").iterdir():
        p.write_bytes(b"broken")
    with pytest.raises(DatasetError, match="no usable panoramas .*all 2 entries were skipped"):
        load_dataset(tmp_path, "folder", skip_invalid=True, validate_images=True)
