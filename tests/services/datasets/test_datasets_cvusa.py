"""CVUSA reader: split files, one-to-one pairs, validation."""

from __future__ import annotations

import numpy as np
import pytest

from ucvgl.services.datasets import load_dataset
from ucvgl.shared.errors import DatasetError


def test_reads_both_splits_with_one_to_one_pairs(tmp_path, trees):
    ids = trees.cvusa(tmp_path, n_train=3, n_val=2)
    ds = load_dataset(tmp_path, "cvusa")
    assert ds.format == "cvusa" and ds.panorama == "band" and ds.name == tmp_path.name
    assert sorted(ds.splits) == ["train", "val"]
    for split, expected in ids.items():
        s = ds.split(split)
        assert s.ground_ids == expected and s.satellite_ids == expected
        assert s.ground_paths == [tmp_path / "streetview" / "panos" / f"{i}.jpg" for i in expected]
        assert s.satellite_paths == [tmp_path / "bingmap" / "19" / f"{i}.jpg" for i in expected]
        np.testing.assert_array_equal(s.positives, np.arange(len(expected)))
        assert s.positives.dtype == np.int64
        assert s.semi_positives is None and s.satellite_latlon is None
    assert ds.report.ok and ds.counts()["train"] == {"ground": 3, "satellite": 3, "known_pairs": 3}


def test_missing_image_names_file_and_line(tmp_path, trees):
    ids = trees.cvusa(tmp_path)
    (tmp_path / "streetview" / "panos" / f"{ids['train'][1]}.jpg").unlink()
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path, "cvusa")
    msg = str(err.value)
    assert "splits/train-19zl.csv:2" in msg
    assert f"streetview/panos/{ids['train'][1]}.jpg" in msg and "missing" in msg
    assert "skip_invalid=True" in msg and "--skip-invalid" in msg and "1 problem" in msg


def test_skip_invalid_drops_bad_lines_and_counts_them(tmp_path, trees):
    ids = trees.cvusa(tmp_path, n_train=4)
    (tmp_path / "bingmap" / "19" / f"{ids['train'][0]}.jpg").unlink()
    split_file = tmp_path / "splits" / "train-19zl.csv"
    text = split_file.read_text()
    split_file.write_text(text + "only-one-field\n" + text.splitlines()[2] + "\n")
    ds = load_dataset(tmp_path, "cvusa", skip_invalid=True)
    train = ds.split("train")
    assert train.ground_ids == ids["train"][1:]
    np.testing.assert_array_equal(train.positives, np.arange(3))
    assert ds.report.skipped == 3  # missing tile, malformed line, duplicate of line 3
    lines = sorted((i.line, i.reason.split(" ")[0]) for i in ds.report.issues)
    assert lines == [(1, "satellite"), (5, "malformed"), (6, "duplicate"), (6, "duplicate")]


def test_malformed_line_reports_line_number(tmp_path, trees):
    trees.cvusa(tmp_path)
    f = tmp_path / "splits" / "val-19zl.csv"
    f.write_text(f.read_text() + "a,b,c,d\n")
    with pytest.raises(DatasetError, match=r"val-19zl\.csv:3: malformed line"):
        load_dataset(tmp_path, "cvusa")


def test_paths_leaving_the_dataset_are_rejected(tmp_path, trees):
    trees.cvusa(tmp_path / "d")
    f = tmp_path / "d" / "splits" / "val-19zl.csv"
    f.write_text(f.read_text() + "../outside.jpg,streetview/panos/0000004.jpg\n")
    with pytest.raises(DatasetError, match="leaves the dataset"):
        load_dataset(tmp_path / "d", "cvusa")


def test_validate_images_finds_unreadable_image(tmp_path, trees):
    ids = trees.cvusa(tmp_path)
    bad = tmp_path / "bingmap" / "19" / f"{ids['val'][0]}.jpg"
    bad.write_bytes(b"not an image at all")
    assert load_dataset(tmp_path, "cvusa").split("val").num_ground == 2  # existence only
    with pytest.raises(DatasetError, match="unreadable"):
        load_dataset(tmp_path, "cvusa", validate_images=True)
    ds = load_dataset(tmp_path, "cvusa", validate_images=True, skip_invalid=True)
    assert ds.split("val").ground_ids == ids["val"][1:] and ds.report.skipped == 1
    assert ds.report.issues[0].path == f"bingmap/19/{ids['val'][0]}.jpg"
