"""Stage set-up shared by the training stages: settings, items and hard negatives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ucvgl.services.datasets.index import ViewSplit
from ucvgl.services.presets import get_preset
from ucvgl.services.training import pair_stage
from ucvgl.services.training.pair_stage import (
    HARD_NEGATIVE_K,
    build_items,
    pair_items,
    stage_tile_neighbours,
)
from ucvgl.services.training.trainer import FINAL, StageConfig


def _split(g: int = 6, s: int = 20, latlon: bool = True) -> ViewSplit:
    rng = np.random.default_rng(0)
    return ViewSplit(
        [f"g{i}" for i in range(g)],
        [Path(f"g{i}.jpg") for i in range(g)],
        [f"s{j}" for j in range(s)],
        [Path(f"s{j}.jpg") for j in range(s)],
        positives=np.arange(g, dtype=np.int64),
        satellite_latlon=rng.uniform([40.0, -74.0], [40.1, -73.9], size=(s, 2)) if latlon else None,
    )


def test_stage_config_from_preset_takes_the_preset_optimiser_settings():
    preset = get_preset("tiny").replace(weight_decay=0.01, warmup_fraction=0.2, grad_clip=3.0)
    cfg = StageConfig.from_preset(preset, "stage", epochs=4, seed=9)
    assert cfg == StageConfig("stage", 4, preset.lr, 0.01, 0.2, 3.0, 9)
    assert StageConfig.from_preset(preset, "stage", epochs=4, lr=0.5).lr == 0.5


def test_pair_items_uses_the_preset_schedule():
    preset = get_preset("tiny").replace(
        unlabelled_ratio=0.5, coverage_switch=0.9, min_epoch_fraction=1.0
    )
    split, g, s = _split(), np.array([0, 2]), np.array([5, 7])
    got = pair_items(split, (g, s), preset, seed=3)
    want = build_items(
        g, s, 6, 20, unlabelled_ratio=0.5, coverage_switch=0.9, min_epoch_fraction=1.0, seed=3
    )
    for a, b in zip(
        (got.ground_idx, got.satellite_idx, got.positive),
        (want.ground_idx, want.satellite_idx, want.positive),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert len(got) > 2  # duplicated pairs plus unlabelled items: the preset was applied


def _no_embedding(*args, **kwargs):
    raise AssertionError("tiles with coordinates must not be embedded")


def test_stage_tile_neighbours_uses_coordinates_without_embedding(monkeypatch, tmp_path):
    monkeypatch.setattr(pair_stage, "embed_split", _no_embedding)
    split = _split()
    got = stage_tile_neighbours(None, split, get_preset("tiny"), tmp_path / "stage")
    assert got.shape == (split.num_satellite, HARD_NEGATIVE_K)


@pytest.mark.parametrize("reason", ["preset", "finished"])
def test_stage_tile_neighbours_none_when_not_needed(monkeypatch, tmp_path, reason):
    monkeypatch.setattr(pair_stage, "embed_split", _no_embedding)
    preset = get_preset("tiny")
    if reason == "preset":
        preset = preset.replace(hard_negatives=False)
    else:
        (tmp_path / FINAL).write_bytes(b"")
    assert stage_tile_neighbours(None, _split(latlon=False), preset, tmp_path) is None


def test_stage_tile_neighbours_embeds_tiles_without_coordinates(monkeypatch, tmp_path):
    import torch

    calls = []

    def fake_embed(model, split, view, **kwargs):
        calls.append((view, kwargs["cache_dir"]))
        return torch.nn.functional.normalize(torch.randn(split.num_satellite, 8), dim=1)

    monkeypatch.setattr(pair_stage, "embed_split", fake_embed)
    split = _split(latlon=False)
    got = stage_tile_neighbours(
        None, split, get_preset("tiny"), tmp_path / "stage", cache_dir=tmp_path / "cache"
    )
    assert calls == [("satellite", tmp_path / "cache")]
    assert got.shape == (split.num_satellite, HARD_NEGATIVE_K)


def test_authors_epoch_content_labelled_only_below_the_switch_everything_above():
    paper = get_preset("paper-small")
    assert (paper.unlabelled_ratio, paper.unlabelled_after_switch) == (0.0, True)
    assert (paper.coverage_switch, paper.min_epoch_fraction) == (0.4, 1.0)
    kwargs = dict(
        unlabelled_ratio=paper.unlabelled_ratio,
        coverage_switch=paper.coverage_switch,
        min_epoch_fraction=paper.min_epoch_fraction,
        unlabelled_after_switch=paper.unlabelled_after_switch,
        seed=0,
    )
    low = build_items(np.arange(10), np.arange(10), 100, 120, **kwargs)
    assert low.positive.all() and len(low) == 100  # duplicated up to N, nothing else
    assert set(low.ground_idx.tolist()) == set(range(10))
    high = build_items(np.arange(50), np.arange(50), 100, 120, **kwargs)
    assert high.num_positive == 50 and len(high) == 100  # every other panorama joins
    assert set(high.ground_idx[~high.positive].tolist()) == set(range(50, 100))
    assert not set(high.satellite_idx[~high.positive].tolist()) & set(range(50))
    # the cpu preset's ratio 0 still means no unlabelled item at any coverage
    cpu = get_preset("cpu")
    none = build_items(
        np.arange(50),
        np.arange(50),
        100,
        120,
        unlabelled_ratio=cpu.unlabelled_ratio,
        coverage_switch=cpu.coverage_switch,
        min_epoch_fraction=cpu.min_epoch_fraction,
        unlabelled_after_switch=cpu.unlabelled_after_switch,
        seed=0,
    )
    assert none.positive.all()
