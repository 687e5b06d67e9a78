"""Stage runner: schedule formula, checkpoint every epoch, resume after cancellation."""

from __future__ import annotations

import math

import pytest
import torch

from ucvgl.services.training.trainer import (
    CHECKPOINT,
    FINAL,
    StageConfig,
    StageRunner,
    contrastive_loss,
    cosine_lambda,
)
from ucvgl.shared.errors import JobCancelled


def test_cosine_lambda_formula():
    f = cosine_lambda(total_steps=20, warmup_steps=4)
    assert [f(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    for s in range(4, 21):
        assert f(s) == pytest.approx(0.5 * (1 + math.cos(math.pi * (s - 4) / 16)))
    assert f(20) == pytest.approx(0.0)


def _model():
    from ucvgl.services.models import EncoderConfig, build_model

    torch.manual_seed(0)
    return build_model(
        EncoderConfig(
            backbone="test_convnext", ground_size=(32, 64), satellite_size=(32, 32), safa_branches=2
        )
    )


def _data():
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(4, 3, 32, 64, generator=g), torch.randn(4, 3, 32, 32, generator=g))
        for _ in range(3)
    ]


def _loss(step_module, batch):
    (ge,), (se,), log_scale = step_module(ground=[batch[0]], satellite=[batch[1]])
    return contrastive_loss(ge, se, log_scale, 0.1)


class _StopAt:
    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def update(self, stage, fraction, message=""):
        return None

    def check_cancelled(self):
        self.calls += 1
        if self.calls == self.n:
            raise JobCancelled("stop")


def test_resume_after_cancellation_equals_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    data = _data()
    cfg = StageConfig("t", epochs=3, lr=1e-3)
    full = _model()
    StageRunner(full, cfg, tmp_path / "full").run(lambda e: iter(data), 3, _loss)

    model = _model()
    with pytest.raises(JobCancelled):  # cancelled in the middle of epoch 2
        StageRunner(model, cfg, tmp_path / "cut", progress=_StopAt(5)).run(
            lambda e: iter(data), 3, _loss
        )
    ckpt = torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=False)
    assert ckpt["epoch"] == 1 and not (tmp_path / "cut" / FINAL).exists()
    resumed = _model()  # a fresh process: weights come from the checkpoint
    result = StageRunner(resumed, cfg, tmp_path / "cut").run(lambda e: iter(data), 3, _loss)
    assert result.resumed_from_epoch == 1 and [h["epoch"] for h in result.history] == [1, 2, 3]
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    # The temperature was trained and saved.
    assert resumed.logit_scale.item() != pytest.approx(math.log(1 / 0.07))
    again = StageRunner(_model(), cfg, tmp_path / "cut").run(lambda e: iter(data), 3, _loss)
    assert again.skipped


def test_non_finite_loss_is_a_clear_error(tmp_path):
    data = _data()

    def bad(step_module, batch):
        return _loss(step_module, batch) * float("nan")

    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        StageRunner(_model(), StageConfig("t", 1, 1e-3), tmp_path).run(lambda e: iter(data), 3, bad)
