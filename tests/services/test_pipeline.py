"""The pipeline end to end on a tiny generated world: report, resume, modes, worker jobs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from ucvgl.services.datasets import load_dataset
from ucvgl.services.pipeline import (
    PipelineRun,
    run_job,
    run_pipeline,
    validate_job_params,
)
from ucvgl.services.presets import get_preset
from ucvgl.shared.errors import ConfigError, JobCancelled

N_TRAIN, N_VAL = 24, 12


@pytest.fixture(autouse=True)
def _single_torch_thread(one_torch_thread):
    """Two shared cores: one torch thread avoids oversubscription (10x faster here)."""


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_world) -> Path:
    return make_world(tmp_path_factory.mktemp("world") / "cvact", "cvact", N_TRAIN, N_VAL)


@pytest.fixture(scope="module")
def unsupervised_run(world, tmp_path_factory) -> tuple[Path, dict]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs") / "unsup"
    report = run_pipeline(world, "cvact", "unsupervised", "tiny", out, device="cpu")
    return out, report


def test_unsupervised_report_schema(unsupervised_run, world):
    out, report = unsupervised_run
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert report["mode"] == "unsupervised" and report["preset"] == "tiny"
    # tiny's model learns nothing: its health checks are recorded ('warn'), never stop it
    assert report["status"] == "ok" and report["failure"] is None
    assert [(c["stage"], c["check"]) for c in report["health"]] == [
        ("translate", "cyclegan_content"),
        ("cold_start", "model_matches"),
        ("select", "model_matches"),
    ]
    assert all(c["action"] in ("ok", "warn") for c in report["health"])
    assert report["dataset"]["splits"]["train"]["ground"] == N_TRAIN
    assert report["dataset"]["splits"]["val"]["satellite"] == N_VAL
    assert set(report["recall"]) >= {"r1", "r5", "r10", "r1p"}
    assert report["recall"]["r1"] <= report["recall"]["r5"] <= report["recall"]["r10"]
    assert [s["name"] for s in report["stages"]] == [
        "project",
        "prior",
        "cyclegan",
        "translate",
        "cold_start",
        "amm",
        "select",
        "evaluate",
        "index",
    ]
    assert all(s["seconds"] >= 0 for s in report["stages"])
    rounds = report["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    t = get_preset("tiny").threshold_for("cvact")
    assert rounds[0]["threshold"] == pytest.approx(t)
    assert rounds[1]["threshold"] == pytest.approx(t / 2)  # T (1 + cos(pi/2)) / 2
    # The world has ground truth: every label is scored against it, and the counts agree
    # with the labels files, row by row, checked here against the dataset's own pairs.
    train = load_dataset(world, "cvact").split("train")
    true_tile = {
        g: train.satellite_ids[int(p)]
        for g, p in zip(train.ground_ids, train.positives, strict=True)
    }
    prior = report["prior"]
    for r in rounds:
        assert {"round", "threshold", "mutual", "labels", "correct"} <= set(r)
        assert 0 <= r["labels"] <= r["mutual"] <= N_TRAIN
        assert r["correct"] is not None and 0 <= r["correct"] <= r["labels"]
        assert r["known_labels"] == prior["pairs"]  # unsupervised: the prior's anchors
        rows = list(csv.DictReader(open(r["labels_path"])))
        assert len(rows) == r["labels"] + r["known_labels"]  # prior anchors + pseudo-pairs
        assert rows and list(rows[0]) == [
            "ground_id",
            "satellite_id",
            "margin",
            "similarity",
            "correct",
        ]
        truth = [int(true_tile[row["ground_id"]] == row["satellite_id"]) for row in rows]
        assert [int(row["correct"]) for row in rows] == truth
        anchors, mined = truth[: r["known_labels"]], truth[r["known_labels"] :]
        assert sum(mined) == r["correct"] and sum(anchors) == prior["correct"]
        assert len({row["ground_id"] for row in rows}) == len(rows)  # one label per panorama
        assert all(
            float(row["margin"]) >= r["threshold"] - 1e-6
            for row in rows[r["known_labels"] :]  # anchors first, then pseudo-pairs
        )
        assert sum(r["margin_histogram"]["counts"]) == r["mutual"]
    # tiny's model learns nothing (recall at chance), but the projection prior's pairs need no
    # training: mostly right (measured 4 of 5 on this world; chance 1 in 24 per pair).
    assert prior["pairs"] >= 3 and prior["correct"] >= 0.6 * prior["pairs"]
    # Recall is counted over the 12 held-out panoramas, in whole hits.
    assert report["recall"]["evaluated"] == report["recall"]["gallery_size"] == N_VAL
    for key in ("r1", "r5", "r10"):
        hits = report["recall"][key] * N_VAL / 100
        assert hits == pytest.approx(round(hits), abs=1e-6)
    # Budgets: the tiny preset's are fixed; every training stage says so.
    budgets = report["budgets"]
    assert set(budgets) == {
        "cold_start_intra",
        "cold_start_cross",
        "amm_round_001",
        "amm_round_002",
    }
    assert budgets["cold_start_cross"]["stage"] == "cold start: ground-fake"
    assert all(b["stop_reason"] == "fixed" and b["cycles"] == 1 for b in budgets.values())
    assert report["amm_stop_reason"] == report["amm_stop"]["reason"] == "fixed"
    # Selection: label-free candidates, the chosen weights copied.
    sel = report["selection"]
    assert [c["name"] for c in sel["candidates"]] == ["start", "round 1", "round 2"]
    assert sel["selected"]["name"] in {"start", "round 1", "round 2"}
    assert (out / "model" / "selected.pt").exists()
    assert (out / "index" / "manifest.json").exists()
    manifest = json.loads((out / "index" / "manifest.json").read_text())
    assert manifest["count"] == N_TRAIN + N_VAL


def test_second_run_redoes_nothing(unsupervised_run, world):
    out, report = unsupervised_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    again = run_pipeline(world, "cvact", "unsupervised", "tiny", out, device="cpu")
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    assert before == after
    assert again["recall"] == report["recall"]
    assert again["rounds"] == report["rounds"]


def test_run_folder_refuses_other_settings(unsupervised_run, world):
    out, _ = unsupervised_run
    with pytest.raises(ConfigError, match="another run"):
        run_pipeline(world, "cvact", "supervised", "tiny", out, device="cpu")


class CancelDuring:
    """Cancels the job when a progress message of ``stage`` contains ``text``."""

    def __init__(self, stage: str, text: str) -> None:
        self.stage, self.text, self.armed, self.cancelled = stage, text, False, False

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        if self.stage in stage and self.text in message and not self.cancelled:
            self.armed = True

    def check_cancelled(self) -> None:
        if self.armed:
            self.armed, self.cancelled = False, True
            raise JobCancelled("cancelled by the test")


def test_cancel_and_resume_continues_from_checkpoint(world, tmp_path):
    from ucvgl.services.datasets import load_dataset

    dataset = load_dataset(world, "cvact")
    preset = get_preset("tiny").replace(cross_epochs=2, amm_rounds=1)
    out = tmp_path / "run"
    cancel = CancelDuring("ground-fake", "epoch 2/2")
    with pytest.raises(JobCancelled):
        PipelineRun(dataset, out, preset=preset, device="cpu", progress=cancel).run()
    assert cancel.cancelled
    intra = out / "stages" / "cold_start_intra" / "model.pt"
    cross_ckpt = out / "stages" / "cold_start_cross" / "checkpoint.pt"
    assert intra.exists() and cross_ckpt.exists()
    assert not (out / "stages" / "cold_start_cross" / "model.pt").exists()
    first_epoch = torch.load(cross_ckpt, weights_only=False)["history"]
    assert [h["epoch"] for h in first_epoch] == [1]
    frozen = {
        p: p.stat().st_mtime_ns
        for p in [intra, out / "cyclegan" / "cyclegan_last.pt", *sorted((out / "fake").iterdir())]
    }

    report = PipelineRun(dataset, out, preset=preset, device="cpu").run()
    assert {p: p.stat().st_mtime_ns for p in frozen} == frozen  # finished stages not redone
    from ucvgl.services.models import load_model

    _, extra = load_model(out / "stages" / "cold_start_cross" / "model.pt")
    history = extra["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0] == first_epoch[0]  # epoch 1 continued from, not retrained
    assert len(report["rounds"]) == 1 and report["recall"] is not None


def test_validate_job_params_names_the_field():
    with pytest.raises(ConfigError, match="params.gt_ratio"):
        validate_job_params("semi", {"gt_ratio": 1.5})
    with pytest.raises(ConfigError, match="params.bogus"):
        validate_job_params("pipeline", {"bogus": 1})
    with pytest.raises(ConfigError, match="params.preset|unknown preset"):
        validate_job_params("pipeline", {"preset": "huge"})
    with pytest.raises(ConfigError, match="params.round"):
        validate_job_params("amm_round", {"round": 0})
    with pytest.raises(ConfigError, match="params.mode"):
        validate_job_params("supervised", {"mode": "semi"})
    with pytest.raises(ConfigError, match="job_type"):
        validate_job_params("dance", {})


def test_run_job_reuses_a_finished_run(unsupervised_run, world):
    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.progress import NullProgress

    out, report = unsupervised_run
    dataset = load_dataset(world, "cvact")
    params = {"preset": "tiny", "device": "cpu"}
    evaluation = run_job("evaluate", dataset, params, out, NullProgress())
    assert evaluation["split"] == "val"
    assert evaluation["recall"]["r1"] == report["recall"]["r1"]
    assert run_job("index", dataset, params, out, NullProgress()) == {
        "index_dir": str(out / "index"),
        "model_path": str(out / "model" / "selected.pt"),
    }
    rounds = run_job("amm_round", dataset, {**params, "round": 1}, out, NullProgress())
    assert [r["round"] for r in rounds["rounds"]] == [1]
    assert "margin_histogram" in rounds["rounds"][0] and "labels_path" in rounds["rounds"][0]
    assert Path(rounds["model_path"]).is_file()
    json.dumps(rounds)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["semi", "supervised"])
def test_other_modes_end_to_end(world, tmp_path, mode):
    report = run_pipeline(
        world, "cvact", mode, "tiny", tmp_path / mode, device="cpu", gt_ratio=0.25
    )
    assert report["mode"] == mode
    assert set(report["recall"]) >= {"r1", "r5", "r10", "r1p"}
    if mode == "semi":
        assert report["dataset"]["known_pairs"] == 6
        assert [r["round"] for r in report["rounds"]] == [1, 2]
        assert all(r["known_labels"] == 6 for r in report["rounds"])
        # the known pairs are always in the labels file
        rows = list(csv.DictReader(open(report["rounds"][0]["labels_path"])))
        assert len(rows) == 6 + report["rounds"][0]["labels"]
    else:
        assert report["rounds"] == []
        assert [s["name"] for s in report["stages"]] == [
            "supervised",
            "select",
            "evaluate",
            "index",
        ]


def test_supervised_needs_ground_truth(tmp_path):
    import numpy as np

    from ucvgl.services.datasets.index import CrossViewDataset, ViewSplit

    split = ViewSplit(
        ["g0", "g1"],
        [Path("a"), Path("b")],
        ["s0", "s1"],
        [Path("c"), Path("d")],
        positives=np.array([-1, -1]),
    )
    ds = CrossViewDataset("x", "folder", tmp_path, "full", {"train": split})
    with pytest.raises(ConfigError, match="ground-truth"):
        PipelineRun(ds, tmp_path / "run", mode="supervised", preset="tiny", device="cpu").run()


def test_cli_evaluate_and_match_on_a_finished_run(unsupervised_run):
    from typer.testing import CliRunner

    from ucvgl.cli import app

    out, report = unsupervised_run
    result = CliRunner().invoke(app, ["evaluate", "--run", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert f"{report['recall']['r1']:.2f}" in result.output
    assert "cold_start" in result.output and "total" in result.output
    result = CliRunner().invoke(app, ["match", "--run", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "selected (label-free)" in result.output
    result = CliRunner().invoke(app, ["evaluate", "--run", str(out / "nowhere")])
    assert result.exit_code == 1 and "--data and --format" in result.output


@pytest.mark.slow
def test_cli_demo_tiny(tmp_path):
    from typer.testing import CliRunner

    from ucvgl.cli import app

    args = [
        "demo",
        "--out",
        str(tmp_path / "demo"),
        "--train",
        "16",
        "--val",
        "8",
        "--preset",
        "tiny",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "R@1" in result.output and "selected (label-free)" in result.output
    report = json.loads((tmp_path / "demo" / "run" / "report.json").read_text())
    assert report["dataset"]["splits"]["train"]["ground"] == 16


@pytest.mark.slow
def test_semi_can_continue_from_the_label_free_cold_start(world, tmp_path):
    preset = get_preset("tiny").replace(semi_cold_start=True, amm_fake_query=True, amm_rounds=1)
    out = tmp_path / "semi_cold"
    report = run_pipeline(world, "cvact", "semi", preset, out, device="cpu", gt_ratio=0.25)
    # the cold start ran inside the semi run, then the warm-up continued from its weights
    assert (out / "stages" / "cold_start_cross" / "model.pt").is_file()
    assert len(list((out / "fake").glob("*"))) == N_TRAIN
    assert (out / "stages" / "semi_warmup" / "model.pt").is_file()
    assert [r["round"] for r in report["rounds"]] == [1]
    assert report["rounds"][0]["known_labels"] == 6


def labels_of(report: dict) -> list[list[dict[str, str]]]:
    """The rows of each round's labels CSV (prior anchors first, then mined pairs)."""
    return [list(csv.DictReader(open(r["labels_path"]))) for r in report["rounds"]]


@pytest.mark.slow
def test_vigor_layout_runs_end_to_end(tmp_path):
    """VIGOR: many overlapping tiles per panorama, same-area test split as evaluation."""
    from ucvgl.services.synth import generate_world

    n_train, n_test = 12, 6
    world = generate_world(
        tmp_path / "vigor", "vigor", n_train, n_test, seed=0, pano_size=(32, 64), sat_size=32
    )
    gallery = len(load_dataset(world, "vigor").split("test").satellite_ids)
    assert gallery > n_train + n_test  # VIGOR's half-overlapping grid: more tiles than places
    report = run_pipeline(world, "vigor", "unsupervised", "tiny", tmp_path / "run", device="cpu")
    assert report["status"] == "ok"
    data = report["dataset"]
    # the evaluation split is named by its protocol; it reads the dataset's "test" split
    assert data["format"] == "vigor" and data["eval_split"] == "same_area"
    assert report["recall_per_split"]["same_area"]["dataset_split"] == "test"
    assert data["splits"]["train"]["ground"] == n_train
    assert data["splits"]["test"]["ground"] == n_test
    recall = report["recall"]
    assert recall["evaluated"] == n_test and recall["gallery_size"] == gallery
    assert "hit_rate" in recall  # VIGOR's semi-positive metric
    for key in ("r1", "r5", "r10"):
        hits = recall[key] * n_test / 100
        assert hits == pytest.approx(round(hits), abs=1e-6)
    assert report["prior"]["correct"] is not None
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    for r, rows in zip(report["rounds"], labels_of(report), strict=True):
        assert r["correct"] is not None  # scored against VIGOR's positives
        assert len(rows) == r["known_labels"] + r["labels"]
        mined = rows[r["known_labels"] :]
        assert sum(int(row["correct"]) for row in mined) == r["correct"]
    manifest = json.loads((tmp_path / "run" / "index" / "manifest.json").read_text())
    assert manifest["count"] == gallery  # one gallery, shared by train and test


def test_folder_layout_without_ground_truth_runs_end_to_end(tmp_path):
    """A user's own imagery: panoramas with headings and GPS, tiles with coordinates, and
    no known pair and no split anywhere. The run mines labels, scores none, builds an index.

    The world's true pairs are kept aside (out of the dataset folder) only to report how
    many of the mined pairs are right; the run never sees them.
    """
    from ucvgl.services.synth import generate_world

    n = 16 + 8
    world = generate_world(
        tmp_path / "mine", "folder", 16, 8, seed=0, pano_size=(32, 64), sat_size=32, workers=1
    )
    truth = {r["ground"]: r["satellite"] for r in csv.DictReader(open(world / "pairs.csv"))}
    (world / "pairs.csv").unlink()
    meta = list(csv.DictReader(open(world / "ground_meta.csv")))
    with open(world / "ground_meta.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "heading_deg", "lat", "lon"])
        writer.writerows([m["name"], m["heading_deg"], m["lat"], m["lon"]] for m in meta)
    dataset = load_dataset(world, "folder")
    assert not dataset.has_ground_truth

    report = run_pipeline(world, "folder", "unsupervised", "tiny", tmp_path / "run", device="cpu")
    assert report["status"] == "ok" and report["failure"] is None
    data = report["dataset"]
    assert data["eval_split"] is None and data["splits"] == {
        "train": {"ground": n, "satellite": n, "known_pairs": 0}
    }
    assert report["recall"] is None  # nothing to evaluate against
    assert report["prior"]["correct"] is None and report["prior"]["pairs"] >= 1
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    grounds, tiles = (
        set(dataset.split("train").ground_ids),
        set(dataset.split("train").satellite_ids),
    )
    right = total = 0
    for r, rows in zip(report["rounds"], labels_of(report), strict=True):
        assert r["correct"] is None
        assert len(rows) == r["known_labels"] + r["labels"]
        assert r["known_labels"] == report["prior"]["pairs"]
        assert all(row["correct"] == "" for row in rows)  # no ground truth, no score
        assert {row["ground_id"] for row in rows} <= grounds
        assert {row["satellite_id"] for row in rows} <= tiles
        assert len({row["ground_id"] for row in rows}) == len(rows)  # one label per panorama
        right += sum(
            truth[f"{row['ground_id']}.jpg"] == f"{row['satellite_id']}.jpg" for row in rows
        )
        total += len(rows)
    print(f"folder run: {right} of {total} labels right by the hidden pairs (chance 1 in {n})")
    manifest = json.loads((tmp_path / "run" / "index" / "manifest.json").read_text())
    assert manifest["count"] == n
    assert (tmp_path / "run" / "model" / "selected.pt").exists()


# ---------------------------------------------------------------- paper ablations (Tab. 2)
def test_without_fake_no_cyclegan_and_the_cold_start_pairs_bevs(world, tmp_path):
    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.progress import NullProgress

    run = PipelineRun(
        load_dataset(world, "cvact"),
        tmp_path,
        preset=get_preset("tiny").replace(use_fake=False),
        device="cpu",
    )
    assert not run.needs_fakes()
    assert run.cyclegan(NullProgress()) is None and run.translate(NullProgress()) == []
    assert not (tmp_path / "cyclegan").exists()
    bev = run.project(NullProgress())
    assert run.cross_view_images() == bev and all(p.parent == tmp_path / "bev" for p in bev)


def test_without_bev_the_cyclegan_gets_panoramas_and_no_prior(world, tmp_path):
    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.progress import NullProgress

    dataset = load_dataset(world, "cvact")
    tiny = get_preset("tiny")
    run = PipelineRun(dataset, tmp_path / "a", preset=tiny.replace(use_bev=False), device="cpu")
    assert run.translation_inputs() == list(dataset.split("train").ground_paths)
    assert run.prior(NullProgress()) is None  # the prior is a projection too
    with_bev = PipelineRun(dataset, tmp_path / "b", preset=tiny, device="cpu")
    assert with_bev.translation_inputs() == with_bev.project(NullProgress())


def test_without_cross_view_the_cyclegan_is_not_needed(world, tmp_path):
    from ucvgl.services.datasets import load_dataset

    dataset = load_dataset(world, "cvact")
    tiny = get_preset("tiny")
    assert PipelineRun(dataset, tmp_path / "a", preset=tiny, device="cpu").needs_fakes()
    run = PipelineRun(dataset, tmp_path / "b", preset=tiny.replace(cross_view=False))
    assert not run.needs_fakes()
    queries = tiny.replace(cross_view=False, amm_fake_query=True)
    assert PipelineRun(dataset, tmp_path / "c", preset=queries, device="cpu").needs_fakes()


def test_the_run_resolves_the_preset_for_the_dataset_format(world, tmp_path):
    import shutil

    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.projection.defaults import SYNTH_META_FILE

    dataset = load_dataset(world, "cvact")
    run = PipelineRun(dataset, tmp_path / "a", preset="paper-small", device="cpu")
    assert run.preset.dataset_format == "cvact"
    assert run.preset.threshold_for("cvact") == pytest.approx(0.025)
    saved = json.loads((tmp_path / "a" / "run.json").read_text())["preset_settings"]
    assert saved["bev_fov_deg"] == 170.0 and saved["dataset_format"] == "cvact"
    # the synthetic world's own camera geometry wins over the preset's field of view
    meta_fov = run.bev_params().fov_deg
    other = PipelineRun(
        dataset, tmp_path / "b", preset=get_preset("tiny").replace(bev_fov_deg=150.0)
    )
    assert other.bev_params().fov_deg == meta_fov != 150.0
    # without such metadata the preset's field of view is used
    plain = shutil.copytree(world, tmp_path / "plain")
    (plain / SYNTH_META_FILE).unlink()
    tiny = get_preset("tiny")
    bare = PipelineRun(load_dataset(plain, "cvact"), tmp_path / "c", preset=tiny, device="cpu")
    assert bare.bev_params().fov_deg == 170.0  # the format's default
    run = PipelineRun(
        load_dataset(plain, "cvact"), tmp_path / "d", preset=tiny.replace(bev_fov_deg=150.0)
    )
    assert run.bev_params().fov_deg == 150.0


@pytest.mark.slow  # about 15-30 s per mode on two shared cores
@pytest.mark.parametrize("mode", ["unsupervised", "semi"])
def test_a_shrunk_paper_preset_runs_end_to_end(world, tmp_path, mode):
    """paper-small's own code paths (continuous AMM, the authors' intra-view augmentation
    and epoch content, CycleGAN resize-and-crop, drop-path, no hard negatives) at toy size."""
    small = get_preset("paper-small").replace(
        backbone="test_convnext",
        ground_size=(32, 64),
        satellite_size=32,
        bev_size=40,
        cyclegan=dict(size=32, load_size=40, ngf=4, ndf=4, n_blocks=1, n_layers=2, epochs=1),
        batch_size=8,
        eval_batch_size=32,
        intra_epochs=1,
        cross_epochs=1,
        semi_warm_epochs=1,
        amm_rounds=2,
        health_checks="warn",
        weights="none",
    )
    report = run_pipeline(world, "cvact", mode, small, tmp_path, device="cpu", gt_ratio=0.25)
    assert report["status"] == "ok" and report["recall"] is not None
    assert len(report["rounds"]) == 2
    saved = json.loads((tmp_path / "run.json").read_text())["preset_settings"]
    assert saved["amm_schedule"] == "continuous" and saved["drop_path_rate"] == 0.2
    assert saved["ground_size"] == [32, 64] and saved["amm_threshold"] == {"cvact": 0.025}
    stages = tmp_path / "stages"
    first = "cold_start_cross" if mode == "unsupervised" else "semi_warmup"
    offset = 0 if mode == "unsupervised" else 1  # semi: the warm-up opens the cosine
    rounds = [
        torch.load(stages / f"amm_round_00{r}" / "checkpoint.pt", weights_only=False)
        for r in (1, 2)
    ]
    windows = [c["stage"]["epoch_window"] for c in rounds]
    assert windows == [(offset, offset + 2), (offset + 1, offset + 2)]
    assert rounds[0]["state"]["optimizer_from"].endswith(f"{first}/checkpoint.pt")
    assert rounds[1]["state"]["optimizer_from"].endswith("amm_round_001/checkpoint.pt")
