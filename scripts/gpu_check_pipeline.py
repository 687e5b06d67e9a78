"""The pipeline part of ``scripts/gpu_check.sh``: `paper-small` on a synthetic world.

    python3 scripts/gpu_check_pipeline.py --out OUT_DIR [--cpu]

Generates a CVACT-layout world, runs the unsupervised pipeline (projection, CycleGAN, cold
start, AMM rounds, selection, evaluation, index) with ``paper-small`` shortened by
``Preset.replace`` to a few hundred training steps (ConvNeXt-S at 224, batch 128; mixed
precision on CUDA, which the trainer and the CycleGAN turn on by themselves), and writes
``OUT_DIR/pipeline.json``: the preset, the planned steps per stage, the seconds of every
stage, recall, peak GPU memory and the report's status. Stage checks only warn here: a
from-scratch model after a few hundred steps is not expected to learn, the rehearsal is
about every stage running at the paper's sizes. ``--cpu``: the ``tiny`` preset on a
24 + 8 world (a dry run of the same code path, seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def shortened_paper_small():
    """`paper-small` with the epochs of a rehearsal (a few hundred steps at 2,048 pairs)."""
    from ucvgl.services.presets import get_preset

    base = get_preset("paper-small")
    return base.replace(
        name="paper-small",  # the run folder's preset; settings are in run.json
        cyclegan={**base.cyclegan, "epochs": 1},
        intra_epochs=2,
        cross_epochs=6,
        amm_rounds=3,
        amm_epochs_per_round=2,
        health_checks="warn",
        weights="none",  # the GPU machine reaches no model hub: random init, same compute
    )


def planned_steps(preset, n_train: int) -> dict[str, int]:
    """Optimiser steps each stage runs at most (full batches of ``preset.batch_size``)."""
    per_epoch = n_train // preset.batch_size
    return {
        "cyclegan": n_train
        // max(1, int(preset.cyclegan.get("batch_size", 1)))
        * int(preset.cyclegan.get("epochs", 1)),
        "cold_start_intra": 2 * per_epoch * preset.intra_epochs,
        "cold_start_cross": per_epoch * preset.cross_epochs,
        "amm_at_most": per_epoch * preset.amm_epochs_per_round * preset.amm_rounds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for pipeline.json")
    parser.add_argument("--cpu", action="store_true", help="tiny preset and world on the CPU")
    parser.add_argument("--train", type=int, default=2048)
    parser.add_argument("--val", type=int, default=512)
    args = parser.parse_args(argv)

    import torch

    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.pipeline import PipelineRun
    from ucvgl.services.presets import get_preset
    from ucvgl.services.synth import generate_world

    if args.cpu:
        device, preset = "cpu", get_preset("tiny")
        n_train, n_val, pano, sat = 24, 8, (32, 64), 32
    else:
        if not torch.cuda.is_available():
            parser.error("CUDA is not available (torch.cuda.is_available() is False); use --cpu")
        device, preset = "cuda", shortened_paper_small()
        n_train, n_val = args.train, args.val
        pano, sat = preset.ground_size, preset.satellite_size
    work = args.out / "pipeline_work"
    began = time.perf_counter()
    world = generate_world(
        work / "world",
        "cvact",
        n_train,
        n_val,
        seed=0,
        pano_size=tuple(pano),
        sat_size=sat,
        workers=max(1, min(16, os.cpu_count() or 1)),
    )
    synth_s = time.perf_counter() - began
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    run = PipelineRun(
        load_dataset(world, "cvact"),
        work / "run",
        mode="unsupervised",
        preset=preset,
        device=device,
        seed=0,
    )
    began = time.perf_counter()
    report = run.run()
    seconds = time.perf_counter() - began
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "amp": device == "cuda",
        "preset": preset.to_dict(),
        "world": {"train": n_train, "val": n_val, "pano_size": list(pano), "sat_size": sat},
        "synth_seconds": round(synth_s, 1),
        "pipeline_seconds": round(seconds, 1),
        "planned_steps": planned_steps(preset, n_train),
        "stages": report.get("stages"),
        "recall": report.get("recall"),
        "rounds": report.get("rounds"),
        "status": report.get("status"),
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
    }
    path = args.out / "pipeline.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: result[k] for k in ("pipeline_seconds", "recall", "status")}))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
