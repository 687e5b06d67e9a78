"""Stage checks in the pipeline: a world with no true pair stops loudly, never "selects".

The tiles of a tiny synthetic world are shuffled (tile i shows place i+1), so no panorama
has its tile in the pool. With ``health_checks="stop"`` the run must end with
``StageFailed`` after the cold start, write ``report.json`` with status "failed", and
select, evaluate and index nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from ucvgl.services.health import HEALTH_FILE, HealthRecords, StageCheck, StageFailed
from ucvgl.services.pipeline import PipelineRun, run_pipeline
from ucvgl.services.presets import get_preset
from ucvgl.services.progress import NullProgress

N_TRAIN, N_VAL = 24, 8
STRICT = get_preset("tiny").replace(health_checks="stop")


@pytest.fixture(autouse=True)
def _single_torch_thread(one_torch_thread):
    """Two shared cores: one torch thread avoids oversubscription."""


@pytest.fixture(scope="module")
def shuffled_world(tmp_path_factory) -> Path:
    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.synth import generate_world

    out = tmp_path_factory.mktemp("shuffled") / "cvact"
    root = generate_world(
        out, "cvact", N_TRAIN, N_VAL, seed=1, pano_size=(32, 64), sat_size=32, workers=1
    )
    paths = list(load_dataset(root, "cvact").split("train").satellite_paths)
    data = [p.read_bytes() for p in paths]
    for path, content in zip(paths, data[1:] + data[:1], strict=True):
        path.write_bytes(content)  # tile i now shows place i + 1: no true pair in the pool
    return root


@pytest.fixture(scope="module")
def failed_run(shuffled_world, tmp_path_factory) -> tuple[Path, StageFailed]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs") / "shuffled"
    try:
        with pytest.raises(StageFailed) as info:
            run_pipeline(shuffled_world, "cvact", "unsupervised", STRICT, out, device="cpu")
    finally:
        torch.set_num_threads(before)
    return out, info.value


def test_no_true_pair_stops_after_the_cold_start(failed_run):
    out, exc = failed_run
    check = exc.check
    assert (check.stage, check.check, check.action) == ("cold_start", "model_matches", "stop")
    assert not check.passed and check.numbers["pairs_at_fdr"] < check.floor
    assert str(exc) == check.message
    for text in ("stage cold_start", f"floor {check.floor:.0f}", "decoys", "Try:"):
        assert text in str(exc)
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "failed"
    assert report["failure"] == check.to_dict()
    kinds = [(c["stage"], c["check"]) for c in report["health"]]
    assert kinds == [("translate", "cyclegan_content"), ("cold_start", "model_matches")]
    assert report["model_path"] is None and report["index_dir"] is None
    assert report["recall"] is None and report["selection"]["selected"] is None
    assert report["rounds"] == []
    assert exc.report_path == out / "report.json"
    # nothing after the stop: no AMM round, no selected model, no evaluation, no index
    assert not (out / "model" / "selected.pt").exists()
    assert not (out / "evaluation.json").exists() and not (out / "index").exists()
    assert not list((out / "stages").glob("amm_round_*"))
    decoys = json.loads((out / "decoys" / "manifest.json").read_text())
    assert decoys["count"] == N_TRAIN and decoys["size"] == STRICT.satellite_size


def test_resume_re_runs_the_failed_check(failed_run, shuffled_world, monkeypatch):
    import ucvgl.services.health as health

    out, first = failed_run
    calls = []
    real = health.check_model_matches

    def counted(*args, **kwargs):
        calls.append(kwargs["stage"])
        return real(*args, **kwargs)

    monkeypatch.setattr(health, "check_model_matches", counted)
    cold = out / "stages" / "cold_start_cross" / "model.pt"
    stamp = cold.stat().st_mtime_ns
    with pytest.raises(StageFailed) as info:
        run_pipeline(shuffled_world, "cvact", "unsupervised", STRICT, out, device="cpu")
    assert calls == ["cold_start"]  # re-run, not skipped
    assert info.value.check.numbers == first.check.numbers
    assert cold.stat().st_mtime_ns == stamp  # the cold start itself is not redone


def test_cli_prints_the_failure_and_exits_non_zero(failed_run, shuffled_world, monkeypatch):
    from typer.testing import CliRunner

    from ucvgl.cli import app
    from ucvgl.commands.pipeline import STAGE_FAILED_EXIT
    from ucvgl.services import presets

    out, exc = failed_run
    monkeypatch.setitem(presets.PRESETS, "tiny", STRICT)  # the CLI takes preset names
    args = ["pipeline", "--data", str(shuffled_world), "--format", "cvact", "--preset", "tiny"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--device", "cpu"])
    assert result.exit_code == STAGE_FAILED_EXIT != 0, result.output
    assert "STAGE FAILED" in result.output and exc.check.message in result.output
    assert str(out / "report.json") in result.output
    assert "Traceback" not in result.output and "R@1" not in result.output


def _copy_run(out: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    return copy


def _planted(stage: str, check: str, action: str) -> StageCheck:
    return StageCheck(stage, check, action == "ok", "x", {"x": 0}, 1.0, action, "planted")


def test_cyclegan_fallback_uses_the_bevs(failed_run, shuffled_world, tmp_path):
    from ucvgl.services.datasets import load_dataset

    run_dir = _copy_run(failed_run[0], tmp_path)
    dataset = load_dataset(shuffled_world, "cvact")
    preset = STRICT.replace(amm_fake_query=True)
    for action, folder in (("fallback", "bev"), ("ok", "fake")):
        (run_dir / HEALTH_FILE).unlink()
        HealthRecords(run_dir).put(_planted("translate", "cyclegan_content", action))
        run = PipelineRun(dataset, run_dir, preset=preset, device="cpu")
        images = run.cross_view_images()
        assert len(images) == N_TRAIN and {p.parent.name for p in images} == {folder}
        assert run.amm_queries() == images


def test_cold_start_falls_back_to_a_confident_prior(failed_run, shuffled_world, tmp_path):
    from ucvgl.services.datasets import load_dataset

    run_dir = _copy_run(failed_run[0], tmp_path)
    summary = json.loads((run_dir / "prior.json").read_text())
    (run_dir / "prior.json").write_text(json.dumps({**summary, "pairs": 12}))
    run = PipelineRun(load_dataset(shuffled_world, "cvact"), run_dir, preset=STRICT, device="cpu")
    run.cold_start(NullProgress())  # no StageFailed: AMM starts from the prior's pairs
    record = HealthRecords(run_dir).get("cold_start", "model_matches")
    assert record.action == "fallback" and record.numbers["prior_pairs"] == 12
    assert "projection prior's 12 confident pairs" in record.message
    assert run.report()["status"] == "ok"
