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

The two pipelines run at once, each in a child process of one torch thread (the suite
runs in one process on two cores; one after the other they took 8.5 of its 15.5 minutes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ucvgl.services.datasets import load_dataset
from ucvgl.services.evaluation import recall_at_k
from ucvgl.services.pixel_prior import thumbnail_descriptors
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


SMALL_CPU_CHANGES = dict(
    batch_size=32,
    max_epoch_factor=1.0,
    amm_max_rounds=None,
    supervised_epochs=12,
    cross_epochs=8,
    amm_rounds=2,
    cyclegan=dict(ngf=8, ndf=8, n_blocks=2, epochs=2, batch_size=4),
    health_checks="warn",  # record the checks; this small run is judged by recall
)
"""The ``cpu`` preset's method on a small pool: its image sizes, model, losses and stages;
batches of 32 and fixed, shorter schedules so that both runs take minutes."""

RUN_ONE = """
import json, sys, torch
from ucvgl.services.pipeline import run_pipeline
from ucvgl.services.presets import get_preset
world, mode, out, changes = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
torch.set_num_threads(1)
torch.manual_seed(0)
preset = get_preset("cpu").replace(**changes)
run_pipeline(world, "cvact", mode, preset, out, device="cpu", seed=0)
"""
"""One pipeline run in a child process: WORLD MODE OUT CHANGES_JSON (report in OUT)."""


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


@pytest.fixture(scope="module")
def reports(world, tmp_path_factory) -> dict[str, dict]:
    """The supervised and unsupervised runs' reports, both run at once (see the module)."""
    base = tmp_path_factory.mktemp("learning_runs")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {}
    for mode in ("unsupervised", "supervised"):
        log = (base / f"{mode}.log").open("w")
        args = [str(world), mode, str(base / mode), json.dumps(SMALL_CPU_CHANGES)]
        cmd = [sys.executable, "-c", RUN_ONE, *args]
        runs[mode] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    out = {}
    for mode, (proc, log) in runs.items():
        code = proc.wait()
        log.close()
        if code:
            tail = (base / f"{mode}.log").read_text()[-3000:]
            pytest.fail(f"the {mode} run exited {code}:\n{tail}")
        out[mode] = json.loads((base / mode / "report.json").read_text())
    return out


def test_raw_baseline_is_above_chance_but_far_from_solved(raw_r1):
    # The world carries the signal (the projection alone finds some tiles), and leaves
    # room for learning to show.
    assert 3 * CHANCE_R1 < raw_r1 < 70.0


def test_supervised_learns(reports, raw_r1):
    report = reports["supervised"]
    r1 = report["recall"]["r1"]
    # Measured 34.7 (chance 0.67); a broken loss, optimiser or data path stays near chance.
    assert r1 >= 15 * CHANCE_R1, f"supervised R@1 {r1:.1f} (chance {CHANCE_R1:.2f})"
    # Within reach of the raw-pixel baseline after 12 short epochs (measured 34.7 vs
    # 38.0 here); beating it by a wide margin takes the full world (README, issue 10).
    assert r1 >= 0.6 * raw_r1


def test_unsupervised_learns(reports):
    report = reports["unsupervised"]
    r1 = report["recall"]["r1"]
    assert r1 >= 5 * CHANCE_R1, f"unsupervised R@1 {r1:.1f} (chance {CHANCE_R1:.2f})"
    # Pseudo-labels without any ground truth: the projection prior's are mostly right
    # (measured 95 of 101; chance 1 / 300).
    prior = report["prior"]
    assert prior["pairs"] >= 30 and prior["correct"] / prior["pairs"] >= 0.8
    assert [c["stage"] for c in report["health"]][:2] == ["translate", "cold_start"]
