"""Translation: one PNG per BEV named after it, resumable, equal to the generator's output."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ucvgl.services.cyclegan import load_generator, train_cyclegan, translate
from ucvgl.services.cyclegan.data import image_to_tensor, tensor_to_image
from ucvgl.shared.errors import ConfigError, DatasetError


@pytest.fixture
def checkpoint(tmp_path, image_dirs, tiny_cfg) -> Path:
    bev, sat = image_dirs
    return train_cyclegan(bev, sat, dataclasses.replace(tiny_cfg, pool_size=0), tmp_path / "gan")


def test_writes_one_png_per_input_in_order(tmp_path, image_dirs, checkpoint) -> None:
    bev, _ = image_dirs
    calls = []

    class Recorder:
        def update(self, stage: str, fraction: float, message: str = "") -> None:
            calls.append(fraction)

        def check_cancelled(self) -> None:
            pass

    outs = translate(checkpoint, bev, tmp_path / "fake", batch_size=4, progress=Recorder())
    assert outs == [tmp_path / "fake" / f"{p.stem}.png" for p in bev]
    assert all(p.is_file() for p in outs)
    assert Image.open(outs[0]).size == (32, 32) and Image.open(outs[0]).mode == "RGB"
    assert calls == [4 / 6, 1.0]
    assert not list((tmp_path / "fake").glob(".*.tmp"))


def test_output_is_the_generator_applied_to_the_resized_bev(tmp_path, image_dirs, checkpoint):
    bev, _ = image_dirs
    out = translate(checkpoint, bev[:2], tmp_path / "fake", batch_size=1)
    gen = load_generator(checkpoint, "cpu")
    assert not gen.training
    with torch.no_grad():
        expected = gen(image_to_tensor(Image.open(bev[1]).convert("RGB"), 32)[None])[0]
    written = np.asarray(Image.open(out[1])).astype(int)
    assert np.abs(written - np.asarray(tensor_to_image(expected)).astype(int)).max() <= 1


def test_out_size_and_skipping_existing(tmp_path, image_dirs, checkpoint) -> None:
    bev, _ = image_dirs
    out_dir = tmp_path / "fake"
    out_dir.mkdir()
    marker = Image.new("RGB", (5, 5), (1, 2, 3))
    marker.save(out_dir / f"{bev[2].stem}.png")
    outs = translate(checkpoint, bev, out_dir, out_size=48)
    assert Image.open(outs[0]).size == (48, 48)
    assert Image.open(outs[2]).size == (5, 5)  # existed: left alone
    before = {p: p.stat().st_mtime_ns for p in outs}
    assert translate(checkpoint, bev, out_dir, out_size=48) == outs
    assert {p: p.stat().st_mtime_ns for p in outs} == before


def test_errors_name_the_file(tmp_path, image_dirs, checkpoint) -> None:
    bev, _ = image_dirs
    with pytest.raises(ConfigError, match="missing.pt.*train"):
        translate(tmp_path / "missing.pt", bev, tmp_path / "fake")
    bad_ckpt = tmp_path / "bad.pt"
    bad_ckpt.write_bytes(b"\x00" * 10)
    with pytest.raises(ConfigError, match="bad.pt"):
        translate(bad_ckpt, bev, tmp_path / "fake")
    with pytest.raises(ConfigError, match="not a ucvgl CycleGAN"):
        torch.save({"weights": 1}, tmp_path / "other.pt")
        translate(tmp_path / "other.pt", bev, tmp_path / "fake")
    twin = tmp_path / "elsewhere" / bev[0].name
    twin.parent.mkdir()
    twin.write_bytes(bev[0].read_bytes())
    with pytest.raises(ConfigError, match="unique"):
        translate(checkpoint, [bev[0], twin], tmp_path / "fake")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"nope")
    with pytest.raises(DatasetError, match="broken.png"):
        translate(checkpoint, [broken], tmp_path / "fake")
