"""AMM rounds that follow the label-free signal: extra rounds while the count of confident
mutual matches grows, the recorded stop reason, resume and ``only_round``."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ucvgl.services.datasets.index import ViewSplit
from ucvgl.services.presets import get_preset
from ucvgl.services.training import amm
from ucvgl.services.training.trainer import FINAL, StageResult
from ucvgl.shared.errors import ConfigError

N, T = 40, 0.05


def _embeddings(confident: int):
    """A pool whose N panoramas are all mutual matches, ``confident`` of them with margin 1
    and the others with a margin of about 0.02 (< T)."""
    sat = torch.eye(N)
    ground = sat.clone()
    for i in range(confident, N):
        ground[i, (i + 1) % N] = 0.97
    return torch.nn.functional.normalize(ground, dim=1), sat


class _World:
    """A fake model whose confident-match count after k rounds of training is counts[k]."""

    def __init__(self, monkeypatch, counts: list[int]) -> None:
        self.counts, self.trained, self.embeds = counts, [], 0
        monkeypatch.setattr(amm, "embed_split", self.embed)
        monkeypatch.setattr(amm, "train_on_items", self.train)
        monkeypatch.setattr(amm, "load_weights_into", self.load)
        monkeypatch.setattr(amm, "stage_tile_neighbours", lambda *a, **k: None)

    def embed(self, model, split, view, **kwargs):
        self.embeds += 1
        g, s = _embeddings(self.counts[model.rounds])
        return {"ground": g, "satellite": s}[view]

    def train(self, model, split, items, cfg, stage_dir, preset, **kwargs):
        model.rounds += 1
        self.trained.append(kwargs["state"]["round"])
        Path(stage_dir, FINAL).write_text(str(model.rounds))
        budget = {"epochs_run": 1, "stop_reason": "fixed"}
        return StageResult(cfg.name, Path(stage_dir, FINAL), [], {}, 0, False, budget)

    def load(self, model, path):
        model.rounds = int(Path(path).read_text())
        return {}

    def run(self, tmp_path, preset, **kwargs):
        split = ViewSplit(
            [f"g{i}" for i in range(N)],
            [Path(f"g{i}.jpg") for i in range(N)],
            [f"s{j}" for j in range(N)],
            [Path(f"s{j}.jpg") for j in range(N)],
        )
        model = SimpleNamespace(rounds=0)
        return amm.run_amm(
            model,
            split,
            preset,
            T,
            tmp_path,
            tmp_path,
            initial_path=tmp_path / "start.pt",
            **kwargs,
        )


def _preset(**kw):
    return get_preset("tiny").replace(amm_rounds=3, min_improvement=0.05, **kw)


def _confident(result):
    return [r["criterion_before"]["confident"] for r in result["rounds"]]


def test_amm_extra_rounds_stop_when_the_confident_count_stops_growing(monkeypatch, tmp_path):
    world = _World(monkeypatch, [10, 14, 18, 20, 20, 30, 40])
    result = world.run(tmp_path, _preset(amm_max_rounds=6))
    # Round 4 runs (18 -> 20: +11%); round 5 does not (20 -> 20).
    assert world.trained == [1, 2, 3, 4]
    assert _confident(result) == [10, 14, 18, 20]
    assert [r["extra"] for r in result["rounds"]] == [False, False, False, True]
    thresholds = [r["threshold"] for r in result["rounds"]]
    assert thresholds[3] == thresholds[2] > 0  # the last regular round's tau
    assert result["amm_stop_reason"] == "converged"
    stop = result["amm_stop"]
    assert stop["rounds_run"] == 4 and stop["max_rounds"] == 6 and stop["growth"] == 0.0
    assert "20 -> 20" in stop["detail"] and "round 5 not run" in stop["detail"]
    assert [c["name"] for c in result["candidates"]][-1] == "round 4"
    assert result["candidates"][-1]["criterion"]["confident"] == 20
    assert not amm.round_dir(tmp_path, 5).exists()
    assert result["rounds"][0]["budget"] == {"epochs_run": 1, "stop_reason": "fixed"}

    # Resumed: finished rounds are skipped, the same decision is taken again.
    world.trained.clear()
    again = world.run(tmp_path, _preset(amm_max_rounds=6))
    assert world.trained == [] and again["amm_stop"] == stop
    assert _confident(again) == _confident(result)


def test_amm_extra_rounds_run_to_the_cap_while_the_count_grows(monkeypatch, tmp_path):
    world = _World(monkeypatch, [10, 14, 18, 22, 26, 30, 34])
    result = world.run(tmp_path, _preset(amm_max_rounds=5))
    assert world.trained == [1, 2, 3, 4, 5]
    assert result["amm_stop_reason"] == "max_rounds"
    assert result["amm_stop"]["growth"] == pytest.approx(30 / 26 - 1)
    assert "26 -> 30" in result["amm_stop"]["detail"]


def test_amm_without_max_rounds_is_fixed(monkeypatch, tmp_path):
    world = _World(monkeypatch, [10, 14, 18, 22, 26])
    result = world.run(tmp_path, _preset())
    assert world.trained == [1, 2, 3]
    assert result["amm_stop_reason"] == "fixed"
    assert [r["extra"] for r in result["rounds"]] == [False] * 3


def test_amm_only_round_runs_up_to_that_round(monkeypatch, tmp_path):
    world = _World(monkeypatch, [10, 14, 18, 20, 20, 30])
    preset = _preset(amm_max_rounds=6)
    first = world.run(tmp_path, preset, only_round=3)
    assert world.trained == [1, 2, 3] and first["amm_stop_reason"] == "only_round"
    assert first["candidates"][-1]["path"] == str(amm.round_dir(tmp_path, 3) / FINAL)
    extra = world.run(tmp_path, preset, only_round=4)  # earned: 18 -> 20
    assert world.trained == [1, 2, 3, 4] and extra["amm_stop_reason"] == "only_round"
    refused = world.run(tmp_path, preset, only_round=5)  # not earned: 20 -> 20
    assert world.trained == [1, 2, 3, 4] and refused["amm_stop_reason"] == "converged"
    assert len(refused["rounds"]) == 4


def test_confident_growth_from_zero():
    assert amm.confident_growth(0, 0) == 0.0
    assert math.isinf(amm.confident_growth(0, 3))
    assert amm.confident_growth(20, 21) == pytest.approx(0.05)
    assert np.isfinite(amm.confident_growth(5, 0))


def test_amm_min_growth_sets_the_bar_apart_from_the_loss_stops(monkeypatch, tmp_path):
    counts = [10, 14, 18, 20, 20, 30, 40]
    # -1: every extra round runs, even when the count does not grow (20 -> 20).
    world = _World(monkeypatch, counts)
    every = world.run(tmp_path / "every", _preset(amm_max_rounds=6, amm_min_growth=-1.0))
    assert world.trained == [1, 2, 3, 4, 5, 6]
    assert every["amm_stop_reason"] == "max_rounds" and every["amm_stop"]["min_growth"] == -1.0
    # A bar above 18 -> 20 (+11%): no extra round; min_improvement (5%) is not consulted.
    world = _World(monkeypatch, counts)
    strict = world.run(tmp_path / "strict", _preset(amm_max_rounds=6, amm_min_growth=0.2))
    assert world.trained == [1, 2, 3] and strict["amm_stop_reason"] == "converged"
    assert strict["amm_stop"]["min_growth"] == 0.2
    assert "amm_min_growth 20.0%" in strict["amm_stop"]["detail"]


def test_amm_min_growth_defaults_to_min_improvement_and_is_checked():
    preset = _preset(amm_max_rounds=6)
    assert preset.amm_min_growth is None and preset.amm_growth_bar == preset.min_improvement
    assert preset.replace(amm_min_growth=0.0).amm_growth_bar == 0.0
    with pytest.raises(ConfigError, match="amm_min_growth must be >= -1"):
        preset.replace(amm_min_growth=-1.5)


@pytest.mark.parametrize("counts", [[10, 14, 18, 20, 20, 30, 40], [10, 14, 18, 21, 24, 22, 30]])
def test_amm_stop_study_replays_the_rule_of_run_amm(monkeypatch, tmp_path, counts):
    """benchmarks/amm_stop_study.py replays (bar, cap) on one run that ran every round; it
    must give the rounds and the chosen model that run_amm itself gives with them."""
    repo = Path(__file__).resolve().parents[3]
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    from benchmarks import amm_stop_study

    full = _World(monkeypatch, counts).run(
        tmp_path / "full", _preset(amm_max_rounds=6, amm_min_growth=-1.0)
    )
    rows = [
        {
            "name": c["name"],
            "criterion": {k: c["criterion"][k] for k in ("confident", "score")},
            "r1": 10.0 * i,
            "r5": 0.0,
        }
        for i, c in enumerate(full["candidates"])
    ]
    assert len(rows) == 7
    for cap in (3, 4, 5, 6):
        for bar in (0.3, 0.12, 0.05, 0.0, -1.0):
            world = _World(monkeypatch, counts)
            real = world.run(
                tmp_path / f"{cap}_{bar}", _preset(amm_max_rounds=cap, amm_min_growth=bar)
            )
            replayed = amm_stop_study.replay(rows, 3, 6, bar, cap)
            assert replayed["rounds"] == len(real["rounds"]) == len(world.trained), (cap, bar)
            assert replayed["chosen"] == real["selected"]["name"], (cap, bar)
    # A run that stopped at round 4 cannot tell what a cap of 6 with bar -1 would give.
    assert amm_stop_study.replay(rows[:5], 3, 4, -1.0, 6) is None
