"""Stage budgets that follow convergence: extra cycles (warm restarts) while the loss
drops, the recorded decision, and resume in the middle of an extension."""

from __future__ import annotations

import json

import pytest
import torch

from ucvgl.services.presets import get_preset
from ucvgl.services.training.trainer import (
    BUDGET,
    CHECKPOINT,
    FINAL,
    StageConfig,
    StageRunner,
    cosine_lambda,
)
from ucvgl.shared.errors import ConfigError, JobCancelled

STEPS = 3
LR = 1e-3


def _model():
    from ucvgl.services.models import EncoderConfig, build_model

    torch.manual_seed(0)
    return build_model(
        EncoderConfig(
            backbone="test_convnext", ground_size=(32, 64), satellite_size=(32, 32), safa_branches=2
        )
    )


def _batches(epoch: int):
    return [torch.tensor(float(epoch))] * STEPS


def _planted(curve):
    """A loss that is ``curve(epoch)`` and touches every weight (zero gradient, so only the
    learning rate moves them, through AdamW's weight decay: the weights record the schedule)."""

    def loss_fn(step_module, batch):
        touch = sum(p.sum() for p in step_module.parameters())
        return torch.tensor(float(curve(int(batch.item())))) + 0.0 * touch

    return loss_fn


DROPPING = _planted(lambda e: 4.0 * 0.7**e)
FLAT = _planted(lambda e: 2.0)


class _StopAt:
    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def update(self, stage, fraction, message=""):
        return None

    def check_cancelled(self):
        self.calls += 1
        if self.calls == self.n:
            raise JobCancelled("stop")


def _cfg(**kw) -> StageConfig:
    return StageConfig("t", **{"epochs": 2, "lr": LR, "warmup_fraction": 0.2, **kw})


def _expected_lrs(cycles: list[int]) -> list[float]:
    """The learning rate after each epoch of cycles of these lengths (warm restarts)."""
    out = []
    for n in cycles:
        total = n * STEPS
        f = cosine_lambda(total, int(round(0.2 * total)))
        out += [LR * f(e * STEPS) for e in range(1, n + 1)]
    return out


def _strip(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_dropping_loss_extends_to_max_epochs(tmp_path):
    cfg = _cfg(max_epochs=5)
    result = StageRunner(_model(), cfg, tmp_path).run(_batches, STEPS, DROPPING)
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5]
    assert [h["cycle"] for h in result.history] == [1, 1, 2, 2, 3]
    assert [h["lr"] for h in result.history] == pytest.approx(_expected_lrs([2, 2, 1]))
    budget = result.budget
    assert budget["stop_reason"] == "max_epochs" and budget["epochs_run"] == 5
    assert budget["cycles"] == 3 and budget["max_epochs"] == 5
    # The last cycle (epoch 5 against epoch 4) still dropped by 30%.
    assert budget["improvement"] == pytest.approx(0.3)
    assert "still improving" in budget["detail"] and "+30.0%" in budget["detail"]
    assert result.extra["budget"] == budget
    assert json.loads((tmp_path / BUDGET).read_text()) == {"stage": "t", **budget}
    ckpt = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert ckpt["budget"] == budget and len(ckpt["cycle_plan"]) == 3
    # Warm restarts keep the optimiser state: Adam's step count ran on through the cycles.
    assert all(s["step"] == 5 * STEPS for s in ckpt["optimizer"]["state"].values())
    again = StageRunner(_model(), cfg, tmp_path).run(_batches, STEPS, DROPPING)
    assert again.skipped and again.budget == budget and again.resumed_from_epoch == 5


def test_flat_loss_stops_after_the_first_cycle(tmp_path):
    result = StageRunner(_model(), _cfg(max_epochs=6), tmp_path).run(_batches, STEPS, FLAT)
    assert [h["cycle"] for h in result.history] == [1, 1]
    budget = result.budget
    assert budget["stop_reason"] == "converged" and budget["epochs_run"] == 2
    assert budget["cycles"] == 1 and budget["improvement"] == 0.0
    assert "2.0000" in budget["detail"] and "min_improvement 5.0%" in budget["detail"]


def test_improvement_below_the_threshold_converges(tmp_path):
    # Cycle 1 drops 50%, cycle 2 only 2%: two cycles, then converged.
    curve = {0: 4.0, 1: 2.0, 2: 1.99, 3: 1.96}
    cfg = _cfg(max_epochs=8)
    result = StageRunner(_model(), cfg, tmp_path).run(_batches, STEPS, _planted(curve.get))
    assert [h["cycle"] for h in result.history] == [1, 1, 2, 2]
    assert result.budget["stop_reason"] == "converged"
    assert result.budget["improvement"] == pytest.approx(0.02)


def test_fixed_budget_when_max_epochs_is_none(tmp_path):
    fixed = _model()
    result = StageRunner(fixed, _cfg(epochs=3), tmp_path / "fixed").run(_batches, STEPS, DROPPING)
    assert [h["cycle"] for h in result.history] == [1, 1, 1]
    assert [h["lr"] for h in result.history] == pytest.approx(_expected_lrs([3]))
    assert result.budget["stop_reason"] == "fixed" and result.budget["max_epochs"] is None
    assert result.budget["epochs_run"] == 3 and result.budget["cycles"] == 1
    assert set(result.history[0]) == {
        "epoch",
        "cycle",
        "loss",
        "steps",
        "lr",
        "logit_scale",
        "seconds",
    }
    # Cycle 1 of a convergence budget IS the fixed schedule: same history, same weights.
    capped = _model()
    other = StageRunner(capped, _cfg(epochs=3, max_epochs=3), tmp_path / "capped").run(
        _batches, STEPS, DROPPING
    )
    assert other.budget["stop_reason"] == "max_epochs"
    assert _strip(other.history) == _strip(result.history)
    for a, b in zip(fixed.state_dict().values(), capped.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "stop_at",
    [
        STEPS + 2,  # in cycle 1's last epoch (before the decision)
        2 * STEPS + 2,  # in the first epoch of cycle 2 (its plan is in the checkpoint)
        3 * STEPS + 2,  # in the middle of the extension
        4 * STEPS + 1,  # at the first step of cycle 3 (after the 2nd warm restart)
    ],
)
def test_resume_mid_extension_follows_the_uninterrupted_schedule(tmp_path, stop_at):
    cfg = _cfg(max_epochs=6)
    full = _model()
    want = StageRunner(full, cfg, tmp_path / "full").run(_batches, STEPS, DROPPING)
    assert [h["cycle"] for h in want.history] == [1, 1, 2, 2, 3, 3]

    with pytest.raises(JobCancelled):
        StageRunner(_model(), cfg, tmp_path / "cut", progress=_StopAt(stop_at)).run(
            _batches, STEPS, DROPPING
        )
    assert not (tmp_path / "cut" / FINAL).exists()
    resumed = _model()  # a fresh process: the plan comes from the checkpoint
    got = StageRunner(resumed, cfg, tmp_path / "cut").run(_batches, STEPS, DROPPING)
    assert got.resumed_from_epoch == (stop_at - 1) // STEPS
    assert [h["lr"] for h in got.history] == [h["lr"] for h in want.history]
    assert _strip(got.history) == _strip(want.history)
    assert got.budget == want.budget
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_resume_after_the_last_checkpoint_keeps_the_decision(tmp_path):
    cfg = _cfg(max_epochs=4)
    want = StageRunner(_model(), cfg, tmp_path).run(_batches, STEPS, DROPPING)
    (tmp_path / FINAL).unlink()  # killed between the last checkpoint and model.pt
    (tmp_path / BUDGET).unlink()
    got = StageRunner(_model(), cfg, tmp_path).run(_batches, STEPS, DROPPING)
    assert got.resumed_from_epoch == 4 and got.budget == want.budget
    assert _strip(got.history) == _strip(want.history)


def test_stage_config_budget_from_the_preset():
    tiny = get_preset("tiny")
    assert StageConfig.from_preset(tiny, "s", epochs=4).max_epochs is None
    cpu = get_preset("cpu")
    assert cpu.max_epoch_factor == 3.0 and cpu.amm_max_rounds > cpu.amm_rounds
    cfg = StageConfig.from_preset(cpu.replace(max_epoch_factor=2.5), "s", epochs=3)
    assert cfg.max_epochs == 8 and cfg.min_improvement == cpu.min_improvement
    for name in ("paper-small", "paper-base"):
        assert get_preset(name).max_epoch_factor == 1.0 and get_preset(name).amm_max_rounds is None
    with pytest.raises(ValueError, match="max_epochs"):
        StageConfig("s", 4, 1e-3, max_epochs=3)
    with pytest.raises(ConfigError, match="max_epoch_factor"):
        tiny.replace(max_epoch_factor=0.5)
    with pytest.raises(ConfigError, match="amm_max_rounds"):
        tiny.replace(amm_rounds=3, amm_max_rounds=2)
