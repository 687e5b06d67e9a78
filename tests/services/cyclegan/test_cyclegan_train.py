"""Training: learning, outputs, resume (bit-exact), cancellation, and error messages."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ucvgl.services.cyclegan import (
    CHECKPOINT_NAME,
    LOSSES_NAME,
    load_checkpoint,
    train_cyclegan,
)
from ucvgl.services.cyclegan.data import UnpairedImageDataset
from ucvgl.shared.errors import ConfigError, DatasetError, JobCancelled


class RecordingProgress:
    """Records updates; raises JobCancelled at the ``cancel_at``-th check."""

    def __init__(self, cancel_at: int | None = None) -> None:
        self.updates: list[tuple[str, float, str]] = []
        self.checks = 0
        self.cancel_at = cancel_at

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        self.updates.append((stage, fraction, message))

    def check_cancelled(self) -> None:
        self.checks += 1
        if self.cancel_at is not None and self.checks >= self.cancel_at:
            raise JobCancelled("cancelled by test")


def _states_equal(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, dict):
            if not _states_equal(x, y):
                return False
        elif isinstance(x, torch.Tensor):
            if not torch.equal(x, y):
                return False
        elif x != y:
            return False
    return True


def test_trains_writes_checkpoint_and_losses(tmp_path, image_dirs, tiny_cfg) -> None:
    bev, sat = image_dirs
    progress = RecordingProgress()
    cfg = dataclasses.replace(tiny_cfg, epochs=2)
    path = train_cyclegan(bev, sat, cfg, tmp_path / "out", progress=progress)
    assert path == tmp_path / "out" / CHECKPOINT_NAME
    state = load_checkpoint(path)
    assert state["epoch"] == 2
    assert state["config"] == cfg.to_dict()
    for key in ("g_ab", "g_ba", "d_a", "d_b", "opt_g", "opt_d", "sched_g", "sched_d"):
        assert state[key]
    assert state["pool_a"]["images"].shape == (4, 3, 32, 32)  # pool of 4 filled
    losses = json.loads((tmp_path / "out" / LOSSES_NAME).read_text())
    assert [e["epoch"] for e in losses["epochs"]] == [1, 2]
    first = losses["epochs"][0]
    assert first["images"] == 6  # max(6 BEV, 4 satellite)
    for key in ("gan_ab", "gan_ba", "cycle_a", "cycle_b", "idt_a", "idt_b", "d_a", "d_b"):
        assert np.isfinite(first[key]) and first[key] >= 0
    assert first["g_total"] == pytest.approx(
        sum(first[k] for k in ("gan_ab", "gan_ba", "cycle_a", "cycle_b", "idt_a", "idt_b"))
    )
    # linear decay over the second half: epoch 2 of 2 trains at half the rate
    assert [e["lr"] for e in losses["epochs"]] == pytest.approx([2e-4, 1e-4])
    # one update per step, fractions rising to 1, losses in the message
    assert len(progress.updates) == 12 and progress.checks == 12
    fractions = [u[1] for u in progress.updates]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert "cyc" in progress.updates[0][2] and "D_A" in progress.updates[0][2]


def _learnable_domains(root: Path, n: int) -> tuple[list[Path], list[Path]]:
    """A: smooth colour images; B: the same kind of images with inverted colours."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
    a_paths, b_paths = [], []
    for i in range(n):
        low = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(low).resize((32, 32), Image.Resampling.BILINEAR))
        a_paths.append(root / "a" / f"{i}.png")
        Image.fromarray(img).save(a_paths[-1])
        other = np.asarray(Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)))
        other = np.asarray(Image.fromarray(other).resize((32, 32), Image.Resampling.BILINEAR))
        b_paths.append(root / "b" / f"{i}.png")
        Image.fromarray(255 - other).save(b_paths[-1])
    return a_paths, b_paths


def test_cycle_loss_falls_over_epochs(tmp_path, tiny_cfg) -> None:
    a, b = _learnable_domains(tmp_path / "img", 8)
    cfg = dataclasses.replace(tiny_cfg, ngf=16, epochs=6, lr=1e-3, decay_epochs=0)
    train_cyclegan(a, b, cfg, tmp_path / "out")
    epochs = json.loads((tmp_path / "out" / LOSSES_NAME).read_text())["epochs"]
    cycle = [e["cycle_a"] + e["cycle_b"] for e in epochs]
    # measured: 8.7 -> 6.1 over 6 epochs of 8 images (untrained: about 10 * 2 * mean |x|)
    assert (cycle[-1] + cycle[-2]) / 2 < 0.85 * cycle[0], cycle


def test_resume_trains_only_the_missing_epochs_bit_exactly(tmp_path, image_dirs, tiny_cfg):
    bev, sat = image_dirs
    two = dataclasses.replace(tiny_cfg, epochs=2)
    straight = load_checkpoint(train_cyclegan(bev, sat, two, tmp_path / "straight"))

    out = tmp_path / "resumed"
    train_cyclegan(bev, sat, tiny_cfg, out)  # epochs=1
    assert load_checkpoint(out / CHECKPOINT_NAME)["epoch"] == 1
    progress = RecordingProgress()
    train_cyclegan(bev, sat, two, out, progress=progress)
    assert len(progress.updates) == 6  # one epoch of 6 steps, not two
    resumed = load_checkpoint(out / CHECKPOINT_NAME)
    assert resumed["epoch"] == 2
    for key in ("g_ab", "g_ba", "d_a", "d_b", "opt_g", "opt_d", "pool_a", "pool_b"):
        assert _states_equal(straight[key], resumed[key]), key
    epochs = json.loads((out / LOSSES_NAME).read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]

    # all epochs done: returns at once without a training step
    progress = RecordingProgress()
    assert train_cyclegan(bev, sat, two, out, progress=progress) == out / CHECKPOINT_NAME
    assert progress.checks == 0 and progress.updates[-1][1] == 1.0


def test_cancel_keeps_last_epoch_and_resume_matches(tmp_path, image_dirs, tiny_cfg) -> None:
    bev, sat = image_dirs
    two = dataclasses.replace(tiny_cfg, epochs=2)
    straight = load_checkpoint(train_cyclegan(bev, sat, two, tmp_path / "straight"))
    out = tmp_path / "cancelled"
    with pytest.raises(JobCancelled):
        train_cyclegan(bev, sat, two, out, progress=RecordingProgress(cancel_at=9))
    assert load_checkpoint(out / CHECKPOINT_NAME)["epoch"] == 1
    resumed = load_checkpoint(train_cyclegan(bev, sat, two, out))
    assert _states_equal(straight["g_ab"], resumed["g_ab"])


def test_max_images_per_epoch_caps_steps(tmp_path, image_dirs, tiny_cfg) -> None:
    bev, sat = image_dirs
    cfg = dataclasses.replace(tiny_cfg, max_images_per_epoch=3, pool_size=0)
    progress = RecordingProgress()
    train_cyclegan(bev, sat, cfg, tmp_path / "out", progress=progress)
    assert len(progress.updates) == 3
    assert load_checkpoint(tmp_path / "out" / CHECKPOINT_NAME)["pool_a"]["images"].numel() == 0


def test_resume_with_other_architecture_is_refused(tmp_path, image_dirs, tiny_cfg) -> None:
    bev, sat = image_dirs
    train_cyclegan(bev, sat, tiny_cfg, tmp_path / "out")
    wider = dataclasses.replace(tiny_cfg, ngf=16, epochs=2)
    with pytest.raises(ConfigError, match="ngf"):
        train_cyclegan(bev, sat, wider, tmp_path / "out")


def test_corrupt_checkpoint_is_reported(tmp_path, image_dirs, tiny_cfg) -> None:
    bev, sat = image_dirs
    out = tmp_path / "out"
    out.mkdir()
    (out / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"cyclegan_last\.pt.*delete it"):
        train_cyclegan(bev, sat, tiny_cfg, out)


def test_unreadable_or_missing_image_is_named(tmp_path, image_dirs, tiny_cfg) -> None:
    bev, sat = image_dirs
    bad = tmp_path / "bev" / "broken.png"
    bad.write_bytes(b"\x89PNG garbage")
    with pytest.raises(DatasetError, match="broken.png"):
        train_cyclegan([*bev, bad], sat, dataclasses.replace(tiny_cfg, pool_size=0), tmp_path / "o")
    with pytest.raises(DatasetError, match="satellite"):
        train_cyclegan(bev, [], tiny_cfg, tmp_path / "o2")


def test_dataset_items_are_unpaired_scaled_and_reproducible(image_dirs) -> None:
    bev, sat = image_dirs
    ds = UnpairedImageDataset(bev, sat, 32, seed=0)
    assert len(ds) == 6
    item = ds[5]
    assert item["a"].shape == item["b"].shape == (3, 32, 32)
    assert -1.0 <= float(item["a"].min()) and float(item["a"].max()) <= 1.0
    assert torch.equal(ds[5]["b"], item["b"])
    ds.set_epoch(1)
    draws = {tuple(ds[i]["b"].flatten()[:5].tolist()) for i in range(6)}
    assert len(draws) > 1  # B images drawn at random, not in lockstep with A
