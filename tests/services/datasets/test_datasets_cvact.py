"""CVACT reader: a real ACT_data.mat in MATLAB struct form, image folders, CVACT_test."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from ucvgl.services.datasets import load_dataset
from ucvgl.services.datasets.cvact import _as_indices, _as_strings, _struct_field
from ucvgl.shared.errors import DatasetError

IDS = ["__-DFIFxvZBCn1873qkqXA", "abc", "-x_y-Z", "Fmhz_UEnFT3PEMk0m0E7vA", "q1"]


def test_reads_train_val_from_mat_structs(tmp_path, trees):
    utm = trees.cvact(tmp_path, IDS, train_ind=[1, 3, 5], val_ind=[4, 2])
    ds = load_dataset(tmp_path, "cvact")
    assert ds.format == "cvact" and ds.panorama == "full"
    assert sorted(ds.splits) == ["train", "val"]
    train, val = ds.split("train"), ds.split("val")
    assert train.ground_ids == [IDS[0], IDS[2], IDS[4]] and val.ground_ids == [IDS[3], IDS[1]]
    assert train.satellite_ids == train.ground_ids
    base = tmp_path / "ANU_data_small"
    assert train.ground_paths[1] == base / "streetview" / f"{IDS[2]}_grdView.jpg"
    assert train.satellite_paths[1] == base / "satview_polish" / f"{IDS[2]}_satView_polish.jpg"
    np.testing.assert_array_equal(train.positives, [0, 1, 2])
    np.testing.assert_array_equal(val.satellite_xy, utm[[3, 1]])
    np.testing.assert_array_equal(val.ground_xy, utm[[3, 1]])
    assert utm[3, 0] == 1003.0  # the fixture's utm rows are distinct


def test_cell_array_ids_and_images_directly_under_root(tmp_path, trees):
    trees.cvact(tmp_path, IDS, [2, 1], [5], base="", cell_ids=True)
    ds = load_dataset(tmp_path, "cvact")
    assert ds.split("train").ground_ids == [IDS[1], IDS[0]]
    assert ds.split("train").ground_paths[0] == tmp_path / "streetview" / "abc_grdView.jpg"


@pytest.mark.parametrize("squeeze", [False, True])
@pytest.mark.parametrize("as_record", [True, False])
def test_struct_helpers_handle_every_loadmat_shape(tmp_path, trees, squeeze, as_record):
    trees.cvact(tmp_path, IDS, [1, 3, 5], [4, 2], write_images=False)
    mat = scipy.io.loadmat(
        tmp_path / "ACT_data.mat", squeeze_me=squeeze, struct_as_record=as_record
    )
    assert _as_strings(mat["panoIds"]) == IDS
    np.testing.assert_array_equal(
        _as_indices(_struct_field(mat["trainSet"], "trainInd")), [1, 3, 5]
    )
    np.testing.assert_array_equal(_as_indices(_struct_field(mat["valSet"], "valInd")), [4, 2])


def test_char_matrix_without_strings(tmp_path, trees):
    trees.cvact(tmp_path, IDS, [1], [2], write_images=False)
    mat = scipy.io.loadmat(tmp_path / "ACT_data.mat", chars_as_strings=False)
    assert _as_strings(mat["panoIds"]) == IDS


def test_test_split_from_anu_data_test(tmp_path, trees):
    trees.cvact(tmp_path, IDS, [1, 2], [3], test_ids=["q1", "zz_new", "abc"])
    (tmp_path / "ANU_data_test" / "satview_polish" / "extra_satView_polish.jpg").write_bytes(
        (tmp_path / "ANU_data_test" / "satview_polish" / "q1_satView_polish.jpg").read_bytes()
    )
    ds = load_dataset(tmp_path, "cvact")
    test = ds.split("test")
    assert test.ground_ids == ["abc", "q1", "zz_new"]
    assert test.satellite_ids == ["abc", "extra", "q1", "zz_new"]
    np.testing.assert_array_equal(test.positives, [0, 2, 3])
    assert test.ground_paths[0] == tmp_path / "ANU_data_test" / "streetview" / "abc_grdView.jpg"
    xy = test.ground_xy
    np.testing.assert_array_equal(xy[0], [1001.0, 2002.0])  # 'abc' is row 2 of panoIds
    assert np.isnan(xy[2]).all()  # 'zz_new' is not in panoIds


def test_test_panorama_without_tile_is_an_issue(tmp_path, trees):
    trees.cvact(tmp_path, IDS, [1, 2], [3], test_ids=["q1", "abc"])
    (tmp_path / "ANU_data_test" / "satview_polish" / "q1_satView_polish.jpg").unlink()
    with pytest.raises(DatasetError, match="no satellite tile"):
        load_dataset(tmp_path, "cvact")
    ds = load_dataset(tmp_path, "cvact", skip_invalid=True)
    assert ds.split("test").ground_ids == ["abc"] and ds.report.skipped == 1


def test_missing_image_and_bad_index(tmp_path, trees):
    trees.cvact(tmp_path, IDS, [1, 3, 9], [4, 2])
    (tmp_path / "ANU_data_small" / "satview_polish" / f"{IDS[3]}_satView_polish.jpg").unlink()
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path, "cvact")
    msg = str(err.value)
    assert "trainSet.trainInd[3] = 9 is not an index in 1..5" in msg
    assert f"{IDS[3]}_satView_polish.jpg" in msg and "missing" in msg and "2 problem" in msg
    ds = load_dataset(tmp_path, "cvact", skip_invalid=True)
    assert ds.split("train").ground_ids == [IDS[0], IDS[2]]
    assert ds.split("val").ground_ids == [IDS[1]]
    np.testing.assert_array_equal(ds.split("val").positives, [0])
    assert ds.report.skipped == 2


def test_duplicate_index_is_reported(tmp_path, trees):
    trees.cvact(tmp_path, IDS, [1, 2, 1], [3])
    with pytest.raises(DatasetError, match="twice"):
        load_dataset(tmp_path, "cvact")
    ds = load_dataset(tmp_path, "cvact", skip_invalid=True)
    assert ds.split("train").ground_ids == IDS[:2]


def test_mat_without_utm_and_unreadable_mat(tmp_path, trees):
    trees.cvact(tmp_path, IDS, [1], [2])
    scipy.io.savemat(tmp_path / "ACT_data.mat", {"panoIds": np.array(IDS[:1])})
    with pytest.raises(DatasetError, match="missing variable.*utm"):
        load_dataset(tmp_path, "cvact")
    (tmp_path / "ACT_data.mat").write_bytes(b"garbage" * 20)
    with pytest.raises(DatasetError, match="ACT_data.mat: cannot read"):
        load_dataset(tmp_path, "cvact")


def test_missing_image_folders(tmp_path, trees):
    trees.cvact(tmp_path, IDS, [1], [2], write_images=False)
    (tmp_path / "ANU_data_small" / "satview_polish").rmdir()
    with pytest.raises(DatasetError, match="ANU_data_small/satview_polish"):
        load_dataset(tmp_path, "cvact")
