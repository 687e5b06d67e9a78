"""A run folder keeps its resolved settings: later commands and jobs reuse them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ucvgl.services.datasets.index import CrossViewDataset, ViewSplit
from ucvgl.services.pipeline import (
    RUN_FILE,
    PipelineRun,
    check_run_settings,
    run_folder_preset,
)
from ucvgl.services.preset_overrides import resolve_preset, settings_json
from ucvgl.shared.errors import ConfigError


@pytest.fixture
def dataset(tmp_path) -> CrossViewDataset:
    split = ViewSplit(
        ["g0", "g1"],
        [Path("a"), Path("b")],
        ["s0", "s1"],
        [Path("c"), Path("d")],
        positives=np.array([0, 1]),
    )
    return CrossViewDataset("x", "cvact", tmp_path, "full", {"train": split})


def test_run_folder_settings_are_reused_and_changes_refused(dataset, tmp_path):
    run_dir = tmp_path / "run"
    mine = resolve_preset("paper-small", "cvact", {"batch_size": "8", "weights": "none"})
    PipelineRun(dataset, run_dir, preset=mine, device="cpu")
    saved = json.loads((run_dir / RUN_FILE).read_text())
    assert saved["preset"] == "paper-small" and saved["preset_settings"] == settings_json(mine)

    # a later command or job without overrides gets the saved settings, not paper-small's
    assert run_folder_preset(run_dir, "cvact") == mine
    assert run_folder_preset(run_dir, "cvact", "paper-small", {"batch_size": 8}) == mine
    PipelineRun(dataset, run_dir, preset=run_folder_preset(run_dir, "cvact"), device="cpu")
    # a changed setting is refused, naming it and its saved value
    with pytest.raises(ConfigError, match=r"preset_settings\.lr=0\.0001"):
        run_folder_preset(run_dir, "cvact", overrides={"lr": "1e-3"})
    with pytest.raises(ConfigError, match=r"preset_settings\.batch_size=8"):
        check_run_settings(run_dir, resolve_preset("paper-small", "cvact", {"weights": "none"}))
    # a measurement-only setting may change: it never alters what is trained or selected
    measured = run_folder_preset(run_dir, "cvact", overrides={"selection_diagnostics": "true"})
    assert measured.selection_diagnostics and measured.replace(selection_diagnostics=False) == mine
    # another preset name starts from that preset (PipelineRun refuses it on this folder)
    assert run_folder_preset(run_dir, "cvact", "cpu").name == "cpu"
    with pytest.raises(ConfigError, match="preset='paper-small'"):
        PipelineRun(dataset, run_dir, preset="cpu", device="cpu")
    assert run_folder_preset(tmp_path / "new", "cvact").name == "cpu"
