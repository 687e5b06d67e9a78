"""`ucvgl pipeline --preset paper-small --set ...`: a shrunken paper run on a tiny world.

The acceptance test of issue 11 parts 1-2: the overrides shrink paper-small (sizes,
epochs, backbone, weights none) so it finishes on CPU in seconds, and its report lists the
resolved settings and the weights used.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ucvgl.cli import app

SHRINK = [
    "backbone=test_convnext",
    "ground_size=32,64",
    "satellite_size=32",
    "bev_size=32",
    "cyclegan={ngf: 4, ndf: 4, n_blocks: 1, n_layers: 2, epochs: 1, batch_size: 4, pool_size: 0}",
    "batch_size=8",
    "eval_batch_size=32",
    "intra_epochs=1",
    "cross_epochs=1",
    "amm_rounds=1",
    "min_place_distance_m=0",
    "health_checks=warn",
]


@pytest.fixture(autouse=True)
def _single_torch_thread(one_torch_thread):
    """Two shared cores: one torch thread."""


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from ucvgl.services.synth import generate_world

    out = tmp_path_factory.mktemp("world") / "cvact"
    return generate_world(out, "cvact", 16, 8, seed=0, pano_size=(32, 64), sat_size=32, workers=1)


def _sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def test_shrunken_paper_small_run_reports_its_settings_and_weights(world, tmp_path):
    import torch

    torch.set_num_threads(1)
    out = tmp_path / "run"
    config = tmp_path / "shrink.yaml"
    config.write_text("amm_epochs_per_round: 1\nlr: 0.001\n")
    args = ["pipeline", "--data", str(world), "--format", "cvact", "--preset", "paper-small"]
    args += ["--out", str(out), "--device", "cpu", "--config", str(config), "--weights", "none"]
    result = CliRunner().invoke(app, args + _sets(SHRINK))
    assert result.exit_code == 0, result.output

    report = json.loads((out / "report.json").read_text())
    shown = CliRunner().invoke(
        app,
        ["presets", "show", "paper-small", "--format", "cvact", "--json", "--config", str(config)]
        + _sets([*SHRINK, "weights=none"]),
    )
    assert shown.exit_code == 0, shown.output
    assert report["preset"] == "paper-small"
    assert report["settings"] == json.loads(shown.output)
    assert report["settings"]["ground_size"] == [32, 64] and report["settings"]["lr"] == 0.001
    assert report["settings"]["weights"] == "none"
    assert report["weights"] == {
        view: {
            "backbone": "test_convnext",
            "source": "none",
            "tag": None,
            "file": None,
            "sha256": None,
        }
        for view in ("ground", "satellite")
    }
    assert report["recall"] is not None and len(report["rounds"]) == 1

    # a stage command on the run folder uses its saved (shrunken) settings
    result = CliRunner().invoke(app, ["evaluate", "--run", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    # other settings on the same run folder are refused, naming the setting
    result = CliRunner().invoke(app, args + _sets([*SHRINK, "batch_size=4"]))
    assert result.exit_code == 1
    assert "preset_settings.batch_size" in result.output


def test_missing_hub_weights_stop_the_run_before_any_work(world, tmp_path, monkeypatch):
    from huggingface_hub import constants

    # what HF_HOME=tmp_path/hf HF_HUB_OFFLINE=1 give at import: an empty cache, no network
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "run"
    args = ["pipeline", "--data", str(world), "--format", "cvact", "--preset", "paper-small"]
    args += ["--out", str(out), "--device", "cpu", "--weights", "hub:r160_in1k"]
    result = CliRunner().invoke(app, args + _sets(SHRINK))
    assert result.exit_code == 1
    assert "test_convnext.r160_in1k" in result.output
    assert str(tmp_path / "hf" / "hub") in result.output and "--weights none" in result.output
    assert not (out / "bev").exists() and not (out / "stages").exists()
    assert not (out / "report.json").exists()


def test_bad_set_option_names_the_key(world, tmp_path):
    args = ["pipeline", "--data", str(world), "--format", "cvact", "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(app, [*args, "--set", "epochs=3"])
    assert result.exit_code == 1
    assert "'epochs'" in result.output and "cross_epochs" in result.output
    result = CliRunner().invoke(app, [*args, "--set", "safa=sometimes"])
    assert result.exit_code == 1 and "'safa'" in result.output and "bool" in result.output
