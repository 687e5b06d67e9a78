"""Evaluation splits: names per format, CVACT_test and VIGOR cross-area, never trained on."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from ucvgl.services.datasets import load_dataset
from ucvgl.services.eval_splits import check_eval_splits, parse_eval_splits
from ucvgl.services.pipeline import PipelineRun, run_pipeline
from ucvgl.services.synth import generate_world
from ucvgl.shared.errors import ConfigError

N_TRAIN, N_VAL, N_TEST = 16, 6, 5


@pytest.fixture(autouse=True)
def _single_torch_thread(one_torch_thread):
    """Two shared cores: one torch thread avoids oversubscription."""


@pytest.fixture(scope="module")
def cvact(tmp_path_factory, make_world) -> Path:
    out = tmp_path_factory.mktemp("act") / "cvact"
    return make_world(out, "cvact", N_TRAIN, N_VAL, seed=3, n_test=N_TEST)


@pytest.fixture(scope="module")
def vigor(tmp_path_factory, make_world) -> Path:
    out = tmp_path_factory.mktemp("vigor") / "vigor"
    return make_world(out, "vigor", 12, 6, seed=4, cities=("NewYork", "Chicago"))


def test_names_per_format():
    assert parse_eval_splits("val, test") == ["val", "test"]
    assert parse_eval_splits(["val", "val,test"]) == ["val", "test"]
    assert parse_eval_splits(None) is None and parse_eval_splits([]) is None
    assert check_eval_splits("cvact", ["val", "test"]) == ["val", "test"]
    with pytest.raises(ConfigError, match="'test' is not an evaluation split of a cvusa"):
        check_eval_splits("cvusa", ["test"])
    with pytest.raises(ConfigError, match="one VIGOR protocol per run"):
        check_eval_splits("vigor", ["same_area", "cross_area"])


def test_cvact_writer_makes_cvact_test_paired_by_id(cvact):
    dataset = load_dataset(cvact, "cvact")
    test = dataset.split("test")
    assert test.num_ground == test.num_satellite == N_TEST
    assert all(p.parent.parent.name == "ANU_data_test" for p in test.ground_paths)
    for g, pos in zip(test.ground_ids, test.positives, strict=True):
        assert test.satellite_ids[pos] == g
    assert dataset.split("train").num_ground == N_TRAIN
    assert dataset.split("val").num_ground == N_VAL
    meta = json.loads((cvact / "synth_meta.json").read_text())
    assert meta["counts"]["test"] == N_TEST and meta["params"]["n_test"] == N_TEST


def test_worlds_without_a_test_set_keep_their_parameters(tmp_path):
    out = generate_world(tmp_path / "w", "cvact", 3, 2, pano_size=(16, 32), sat_size=8)
    assert "n_test" not in json.loads((out / "synth_meta.json").read_text())["params"]
    with pytest.raises(ConfigError, match="cvact only"):
        generate_world(tmp_path / "u", "cvusa", 3, 2, pano_size=(16, 32), sat_size=8, n_test=2)


def test_evaluated_splits_are_never_read_before_evaluation(cvact, tmp_path, monkeypatch):
    """No image of an evaluated split is opened by any stage before 'evaluate'."""
    from PIL import Image

    dataset = load_dataset(cvact, "cvact")
    held_out = {
        str(p)
        for name in ("val", "test")
        for p in dataset.split(name).ground_paths + dataset.split(name).satellite_paths
    }
    stage = {"now": None}
    opened: dict[str, set[str]] = {}
    open_image, timed = Image.open, PipelineRun._timed

    def spy_open(fp, *args, **kwargs):
        opened.setdefault(stage["now"], set()).add(str(fp))
        return open_image(fp, *args, **kwargs)

    def spy_timed(self, name, fn, progress):
        stage["now"] = name
        return timed(self, name, fn, progress)

    monkeypatch.setattr(Image, "open", spy_open)
    monkeypatch.setattr(PipelineRun, "_timed", spy_timed)
    torch.set_num_threads(1)
    out = tmp_path / "run"
    run_pipeline(cvact, "cvact", "supervised", "tiny", out, device="cpu", eval_splits="val")
    test_paths = {str(p) for p in dataset.split("test").ground_paths}
    assert not test_paths & set().union(*opened.values())  # not evaluated: never opened
    # `ucvgl evaluate --eval-split test` adds CVACT_test to the finished run
    from typer.testing import CliRunner

    from ucvgl.cli import app

    result = CliRunner().invoke(app, ["evaluate", "--run", str(out), "--eval-split", "test"])
    assert result.exit_code == 0, result.output
    assert "test split" in result.output
    training = set().union(*(v for k, v in opened.items() if k not in ("evaluate", "index")))
    train_paths = {str(p) for p in dataset.split("train").ground_paths}
    assert train_paths <= training  # the spy saw the training images ...
    assert not training & held_out  # ... and none of the evaluated splits'
    # read to evaluate (the index embeds every tile, and evaluation reuses those embeddings)
    assert held_out <= opened["evaluate"] | opened["index"]
    report = json.loads((out / "report.json").read_text())
    per_split = report["recall_per_split"]  # every split evaluated in the run folder
    assert set(per_split) == {"val", "test"}
    assert per_split["test"]["dataset_split"] == "test"
    assert per_split["test"]["evaluated"] == N_TEST and per_split["val"]["evaluated"] == N_VAL
    assert report["recall"] == per_split["test"] and report["dataset"]["eval_splits"] == ["test"]


def test_a_split_that_shares_items_with_training_is_refused(cvact, tmp_path):
    dataset = load_dataset(cvact, "cvact")
    train, test = dataset.split("train"), dataset.split("test")
    dataset.splits["test"] = dataclasses.replace(
        test, ground_paths=[train.ground_paths[0], *test.ground_paths[1:]]
    )
    with pytest.raises(ConfigError, match="eval_split 'test': 1 panoramas"):
        PipelineRun(dataset, tmp_path / "r", preset="tiny", eval_splits=["test"])
    dataset.splits["test"] = dataclasses.replace(
        test, satellite_paths=[train.satellite_paths[0], *test.satellite_paths[1:]]
    )
    with pytest.raises(ConfigError, match="satellite tiles"):
        PipelineRun(dataset, tmp_path / "r", preset="tiny", eval_splits=["test"])
    # the real layout passes; a missing split is named with its folder
    PipelineRun(load_dataset(cvact, "cvact"), tmp_path / "ok", preset="tiny", eval_splits="test")
    del dataset.splits["test"]
    with pytest.raises(ConfigError, match="ANU_data_test"):
        PipelineRun(dataset, tmp_path / "r2", preset="tiny", eval_splits=["test"])


def test_vigor_cross_area_reads_the_cross_area_pool(vigor, tmp_path):
    same = load_dataset(vigor, "vigor")  # same-area protocol
    run = PipelineRun(same, tmp_path / "same", preset="tiny")
    assert run.eval_names == ["same_area"]
    cross = PipelineRun(same, tmp_path / "cross", preset="tiny", eval_splits=["cross_area"])
    assert cross.eval_names == ["cross_area"]
    train, test = cross.train_split, cross.dataset.split("test")
    assert {p.parent.parent.name for p in train.ground_paths} == {"NewYork"}
    assert {p.parent.parent.name for p in test.ground_paths} == {"Chicago"}
    assert {p.parent.parent.name for p in test.satellite_paths} == {"Chicago"}
    # a run folder of one protocol is not evaluated with the other
    with pytest.raises(ConfigError, match="vigor_protocol"):
        PipelineRun(same, tmp_path / "same", preset="tiny", eval_splits=["cross_area"])
