"""Learning happens: on a small fixed-seed world, the supervised and the unsupervised
pipelines both beat chance by a wide margin.

This is the test that fails when training is broken (a loss that never moves, labels at
chance, a model that embeds everything alike): it asserts recall far above chance. Beating
the raw-pixel baseline by a wide margin needs the full 1,000-location worlds and is shown by
``benchmarks/quality.py`` (README), not here. It runs the real ``cpu`` preset's method at
 a 300 + 150 location world at the preset's image sizes of the tuning family (``tune-1``), in a
few CPU minutes; it runs in CI.

Measured on this machine: at 64 px instead of 128 both learned modes stayed below the raw
colour baseline (supervised 14.7, unsupervised 12.7 vs 22.7 R@1 on 150 tiles): the
ConvNeXt's 2x4 feature map is too coarse for SAFA there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ucvgl.services.datasets import load_dataset
from ucvgl.services.evaluation import recall_at_k
from ucvgl.services.pipeline import run_pipeline
from ucvgl.services.pixel_prior import thumbnail_descriptors
from ucvgl.services.presets import get_preset
from ucvgl.services.projection import bev_params_for_dataset, project_dataset

N_TRAIN, N_VAL = 300, 150
CHANCE_R1 = 100.0 / N_VAL


@pytest.fixture(autouse=True)
def _single_torch_thread(one_torch_thread):
    """Two shared cores: one torch thread avoids oversubscription."""


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from ucvgl.services.synth.family import generate_named_world

    out = tmp_path_factory.mktemp("learning") / "tune-1"
    return generate_named_world("tune-1", out, N_TRAIN, N_VAL)  # 128x256 panoramas, 128 px tiles


def small_cpu_preset():
    """The ``cpu`` preset's method on a small pool: its image sizes, model, losses and
    stages; batches of 32 and fixed, shorter schedules so that both runs take minutes."""
    return get_preset("cpu").replace(
        batch_size=32,
        max_epoch_factor=1.0,
        amm_max_rounds=None,
        supervised_epochs=12,
        cross_epochs=8,
        amm_rounds=2,
        cyclegan=dict(ngf=8, ndf=8, n_blocks=2, epochs=2, batch_size=4),
        health_checks="warn",  # record the checks; this small run is judged by recall
    )


@pytest.fixture(scope="module")
def raw_r1(world) -> float:
    """R@1 of colour thumbnails of the BEV against the tiles (no learning)."""
    dataset = load_dataset(world, "cvact")
    split = dataset.split("val")
    bev = project_dataset(
        dataset,
        world.parent / "raw_bev",
        bev_params_for_dataset(dataset, out_size=128),
        splits=["val"],
    )
    g = thumbnail_descriptors(bev, 24, standardise=False)
    s = thumbnail_descriptors(split.satellite_paths, 24, standardise=False)
    r = recall_at_k(torch.from_numpy(g), torch.from_numpy(s), split.positives, device="cpu")
    return float(r["r1"])


def _run(world: Path, mode: str, tmp_path_factory) -> dict:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp(f"learning_{mode}") / "run"
    return run_pipeline(world, "cvact", mode, small_cpu_preset(), out, device="cpu", seed=0)


def test_raw_baseline_is_above_chance_but_far_from_solved(raw_r1):
    # The world carries the signal (the projection alone finds some tiles), and leaves
    # room for learning to show.
    assert 3 * CHANCE_R1 < raw_r1 < 70.0


def test_supervised_learns(world, raw_r1, tmp_path_factory):
    report = _run(world, "supervised", tmp_path_factory)
    r1 = report["recall"]["r1"]
    # Measured 34.7 (chance 0.67); a broken loss, optimiser or data path stays near chance.
    assert r1 >= 15 * CHANCE_R1, f"supervised R@1 {r1:.1f} (chance {CHANCE_R1:.2f})"
    # Within reach of the raw-pixel baseline after 12 short epochs (measured 34.7 vs
    # 38.0 here); beating it by a wide margin takes the full world (README, issue 10).
    assert r1 >= 0.6 * raw_r1


def test_unsupervised_learns(world, raw_r1, tmp_path_factory):
    report = _run(world, "unsupervised", tmp_path_factory)
    r1 = report["recall"]["r1"]
    assert r1 >= 5 * CHANCE_R1, f"unsupervised R@1 {r1:.1f} (chance {CHANCE_R1:.2f})"
    # Pseudo-labels without any ground truth: the projection prior's are mostly right
    # (measured 95 of 101; chance 1 / 300).
    prior = report["prior"]
    assert prior["pairs"] >= 30 and prior["correct"] / prior["pairs"] >= 0.8
    assert [c["stage"] for c in report["health"]][:2] == ["translate", "cold_start"]
