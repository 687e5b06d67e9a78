"""ViewEncoder / TwoViewModel with a tiny timm backbone on CPU."""

from __future__ import annotations

import math

import pytest
import torch

from ucvgl.services.models import EncoderConfig, TwoViewModel, ViewEncoder, build_model
from ucvgl.shared.errors import ConfigError

TINY = dict(backbone="convnext_atto", ground_size=(32, 64), satellite_size=(32, 32))


@pytest.fixture(scope="module")
def model() -> TwoViewModel:
    torch.manual_seed(0)
    return build_model(EncoderConfig(**TINY))


def test_two_view_forward_backward(model: TwoViewModel) -> None:
    ground, sat = torch.randn(4, 3, 32, 64), torch.randn(4, 3, 32, 32)
    g, s, scale = model(ground, sat)
    assert model.ground_encoder.feature_channels == 320
    assert g.shape == (4, 320 * 8) and s.shape == (4, 320 * 8) and model.embed_dim == 2560
    torch.testing.assert_close(g.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(s.norm(dim=1), torch.ones(4))
    assert scale.item() == pytest.approx(1 / 0.07, rel=1e-5)
    (scale * (g * s).sum()).backward()
    assert model.logit_scale.grad is not None
    assert model.ground_encoder.head.w1.grad is not None
    assert model.satellite_encoder.backbone.stem[0].weight.grad is not None
    model.zero_grad()


def test_encoders_are_separate_and_heads_sized_from_input(model: TwoViewModel) -> None:
    assert model.ground_encoder is not model.satellite_encoder
    assert model.ground_encoder.feature_hw == (1, 2) and model.ground_encoder.head.in_hw == 2
    assert model.satellite_encoder.feature_hw == (1, 1)
    assert model.data_config["mean"] == pytest.approx((0.485, 0.456, 0.406))
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))


def test_logit_scale_is_clamped_at_100(model: TwoViewModel) -> None:
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    try:
        assert model.clamped_logit_scale().exp().item() == pytest.approx(100.0)
        _, _, scale = model(torch.randn(1, 3, 32, 64), torch.randn(1, 3, 32, 32))
        assert scale.item() == pytest.approx(100.0)
    finally:
        with torch.no_grad():
            model.logit_scale.fill_(math.log(1 / 0.07))


def test_global_average_pooling_head() -> None:
    enc = ViewEncoder("convnext_atto", (32, 32), safa=False, drop_path_rate=0.1)
    out = enc(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 320) and enc.embed_dim == 320
    feats = enc.forward_features(torch.randn(2, 3, 32, 32))
    assert feats.shape == (2, 320, 1, 1)


def test_shared_weights() -> None:
    same = build_model(EncoderConfig(**TINY, shared_weights=True, safa=False))
    assert same.satellite_encoder is same.ground_encoder
    # SAFA sizes differ between the views: the backbone is shared, the heads are not.
    mixed = build_model(EncoderConfig(**TINY, shared_weights=True))
    assert mixed.satellite_encoder.backbone is mixed.ground_encoder.backbone
    assert mixed.satellite_encoder.head is not mixed.ground_encoder.head
    g, s, _ = mixed(torch.randn(2, 3, 32, 64), torch.randn(2, 3, 32, 32))
    assert g.shape == s.shape == (2, 2560)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        EncoderConfig(safa_branches=0)
    with pytest.raises(ValueError):
        EncoderConfig(ground_size=(0, 64))
    with pytest.raises(ConfigError, match="unknown timm backbone"):
        build_model(EncoderConfig(backbone="no_such_net"))
    with pytest.raises(ConfigError, match="does not exist"):
        build_model(EncoderConfig(**TINY, weights="/nonexistent/w.pth"))


def test_wrong_input_shape_is_a_clear_error(model: TwoViewModel) -> None:
    with pytest.raises(ValueError, match="positions"):
        model.embed_ground(torch.randn(1, 3, 64, 64))  # SAFA was sized for 32x64
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model.embed_satellite(torch.randn(3, 32, 32))
