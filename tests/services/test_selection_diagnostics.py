"""Selection diagnostics: Spearman against scipy, and recall never changing the choice."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy.stats import spearmanr

from ucvgl.services.datasets import load_dataset
from ucvgl.services.pipeline import SELECTED_MODEL, PipelineRun
from ucvgl.services.preset_overrides import resolve_preset
from ucvgl.services.progress import NullProgress
from ucvgl.services.selection_diagnostics import (
    CRITERION_NAME,
    DIAGNOSTICS_FILE,
    average_ranks,
    diagnose,
    merge_into_selection,
    spearman,
)


@pytest.fixture(autouse=True)
def _single_torch_thread(one_torch_thread):
    """Two shared cores: one torch thread avoids oversubscription."""


def test_average_ranks_share_ties():
    assert average_ranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])).tolist() == [4, 1, 4, 2, 4]


@pytest.mark.parametrize("seed", range(8))
def test_spearman_matches_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 12))
    x = rng.integers(0, 4, n).astype(float)  # few values: many ties
    y = rng.integers(0, 5, n) + 0.5 * x
    want = spearmanr(x, y).statistic
    got = spearman(x, y)
    if np.isnan(want):
        assert got is None
    else:
        assert got == pytest.approx(want, abs=1e-12)


def test_spearman_undefined_cases():
    assert spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert spearman([5.0, 5.0, 5.0], [1.0, 2.0, 3.0]) is None  # constant criterion
    assert spearman([1.0], [2.0]) is None
    assert spearman([1.0, float("nan")], [2.0, 3.0]) is None


def _candidates(scores):
    return [
        {"name": name, "path": f"/x/{name}.pt", "criterion": {"score": s, "confident": int(s)}}
        for name, s in zip(("start", "round 1", "round 2"), scores, strict=True)
    ]


def test_diagnose_reports_recall_without_changing_the_choice():
    cands = _candidates([10.5, 30.2, 20.1])
    recalls = [{"r1": 40.0, "r5": 70.0}, {"r1": 5.0, "r5": 20.0}, {"r1": 25.0, "r5": 50.0}]
    diag = diagnose(cands, "round 1", recalls, "val")
    assert diag["criterion"] == CRITERION_NAME and diag["eval_split"] == "val"
    assert diag["chosen"] == "round 1"  # what the criterion chose, whatever recall says
    assert diag["best_by_recall"] == "start"
    assert [c["criterion"] for c in diag["candidates"]] == [10.5, 30.2, 20.1]
    assert diag["spearman_r1"] == pytest.approx(-1.0)  # criterion order reverses recall's
    with pytest.raises(ValueError, match="not among the candidates"):
        diagnose(cands, "round 9", recalls, "val")


def test_merge_keeps_the_selection_and_adds_recall():
    cands = _candidates([1.0, 2.0, 3.0])
    recalls = [{"r1": 1.0, "r5": 2.0}, {"r1": 3.0, "r5": 4.0}, {"r1": 5.0, "r5": 6.0}]
    selection = {"criterion": "text", "candidates": cands, "selected": cands[2]}
    assert merge_into_selection(selection, None) is selection
    merged = merge_into_selection(selection, diagnose(cands, "round 2", recalls, "val"))
    assert merged["selected"] == cands[2] and merged["criterion"] == "text"
    assert [c["r1"] for c in merged["candidates"]] == [1.0, 3.0, 5.0]
    assert merged["candidates"][0]["path"] == "/x/start.pt"
    assert merged["spearman_r1"] == pytest.approx(1.0)
    assert merged["chosen"] == merged["best_by_recall"] == "round 2"


def test_diagnostics_on_a_tiny_run_leave_the_choice_unchanged(tmp_path, make_world, monkeypatch):
    world = make_world(tmp_path / "world", "cvact", 16, 8)
    dataset = load_dataset(world, "cvact")
    out = tmp_path / "run"
    off = PipelineRun(dataset, out, preset="tiny", device="cpu")
    assert off.preset.selection_diagnostics is False
    off.select(NullProgress())
    chosen_off = json.loads((out / "model" / "selection.json").read_text())
    weights_off = (out / SELECTED_MODEL).read_bytes()
    assert not (out / "model" / DIAGNOSTICS_FILE).exists()
    assert "spearman_r1" not in off.report()["selection"]

    # The same run folder (AMM rounds resumed, not retrained), selection done again.
    shutil.rmtree(out / "model")
    preset = resolve_preset("tiny", "cvact", {"selection_diagnostics": "true"})
    on = PipelineRun(dataset, out, preset=preset, device="cpu")
    on.select(NullProgress())
    chosen_on = json.loads((out / "model" / "selection.json").read_text())
    assert chosen_on == chosen_off
    assert (out / SELECTED_MODEL).read_bytes() == weights_off

    diag = json.loads((out / "model" / DIAGNOSTICS_FILE).read_text())
    assert diag["chosen"] == chosen_off["name"]
    assert [c["name"] for c in diag["candidates"]] == ["start", "round 1", "round 2"]
    assert all(0.0 <= c["r1"] <= c["r5"] <= 100.0 for c in diag["candidates"])
    assert all(c["criterion"] is not None for c in diag["candidates"])
    # The candidate's diagnostic recall is the evaluation stage's recall of the same model.
    recall = on.evaluate(NullProgress())
    row = next(c for c in diag["candidates"] if c["name"] == chosen_off["name"])
    assert (row["r1"], row["r5"]) == pytest.approx((recall["r1"], recall["r5"]))
    sel = on.report()["selection"]
    assert sel["chosen"] == sel["selected"]["name"] == chosen_off["name"]
    assert "spearman_r1" in sel and all("r1" in c for c in sel["candidates"])

    # Recall rigged to favour another candidate: the choice still does not move.
    shutil.rmtree(out / "model")
    names = [c["name"] for c in diag["candidates"]]
    favourite = next(n for n in names if n != chosen_off["name"])
    calls = iter(names)

    def rigged(self, model, name, progress):
        r1 = 100.0 if next(calls) == favourite else 0.0
        return {"r1": r1, "r5": r1}

    monkeypatch.setattr(PipelineRun, "_evaluate_split", rigged)
    again = PipelineRun(dataset, out, preset=preset, device="cpu")
    again.select(NullProgress())
    assert json.loads((out / "model" / "selection.json").read_text()) == chosen_off
    rigged_diag = json.loads((out / "model" / DIAGNOSTICS_FILE).read_text())
    assert rigged_diag["best_by_recall"] == favourite != rigged_diag["chosen"]
    assert (out / SELECTED_MODEL).read_bytes() == weights_off
