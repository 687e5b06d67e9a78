"""save_model / load_model round trips and loading local backbone weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ucvgl.services.models import EncoderConfig, ViewEncoder, build_model, load_model, save_model
from ucvgl.shared.errors import ConfigError

TINY = dict(backbone="convnext_atto", ground_size=(32, 64), satellite_size=(32, 32))


def test_round_trip_preserves_outputs_logit_scale_and_extra(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(EncoderConfig(**TINY)).eval()
    with torch.no_grad():
        model.logit_scale.fill_(3.21)  # a trained value, not the init
        model.ground_encoder.head.b1.add_(0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ground, sat = torch.randn(2, 3, 32, 64), torch.randn(2, 3, 32, 32)
    model(ground, sat)[0].sum().backward()
    opt.step()
    extra = {"epoch": 3, "optimizer": opt.state_dict(), "tau": 0.025, "labels": torch.arange(5)}
    path = save_model(model, tmp_path / "ckpt" / "model.pt", extra=extra)
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))

    loaded, got_extra = load_model(path)
    loaded.eval()
    assert loaded.config == model.config
    assert loaded.logit_scale.item() == model.logit_scale.item()
    with torch.no_grad():
        for a, b in zip(model(ground, sat), loaded(ground, sat), strict=True):
            assert torch.equal(a, b)
    assert got_extra["epoch"] == 3 and got_extra["tau"] == 0.025
    assert torch.equal(got_extra["labels"], torch.arange(5))
    opt2 = torch.optim.AdamW(loaded.parameters(), lr=1e-4)
    opt2.load_state_dict(got_extra["optimizer"])  # resumable


def test_shared_weights_round_trip(tmp_path: Path) -> None:
    model = build_model(EncoderConfig(**TINY, shared_weights=True, safa=False))
    loaded, extra = load_model(save_model(model, tmp_path / "m.pt"))
    assert extra == {} and loaded.satellite_encoder is loaded.ground_encoder
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval().embed_satellite(x), loaded.eval().embed_satellite(x))


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConfigError, match="corrupt"):
        load_model(bad)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ConfigError, match="not a ucvgl"):
        load_model(other)


def test_local_backbone_weights_are_loaded(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(1)
    source = timm.create_model("convnext_atto", pretrained=False)  # with its classifier
    weights = tmp_path / "atto.pth"
    torch.save(source.state_dict(), weights)
    enc = ViewEncoder("convnext_atto", (32, 32), weights=weights)
    assert enc.weights_report is not None and enc.weights_report.method == "timm"
    src = source.state_dict()
    own = enc.backbone.state_dict()
    assert set(own) == set(src) - {"head.fc.weight", "head.fc.bias"}
    for name, tensor in own.items():
        assert torch.equal(tensor, src[name]), name


def test_partial_and_foreign_backbone_weights(tmp_path: Path) -> None:
    import timm

    source = timm.create_model("convnext_atto", pretrained=False, num_classes=0)
    state = source.state_dict()
    dropped = "head.norm.weight"
    partial = tmp_path / "partial.pth"
    torch.save({"state_dict": {k: v for k, v in state.items() if k != dropped}}, partial)
    enc = ViewEncoder("convnext_atto", (32, 32), weights=partial)
    assert enc.weights_report.method == "state_dict"
    assert enc.weights_report.missing_keys == [dropped]
    assert torch.equal(enc.backbone.stem[0].weight, state["stem.0.weight"])

    foreign = tmp_path / "resnet.pth"
    torch.save(timm.create_model("resnet10t", pretrained=False).state_dict(), foreign)
    with pytest.raises(ConfigError, match="do not match"):
        ViewEncoder("convnext_atto", (32, 32), weights=foreign)

    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00garbage")
    with pytest.raises(ConfigError, match="cannot read backbone weights"):
        ViewEncoder("convnext_atto", (32, 32), weights=corrupt)
