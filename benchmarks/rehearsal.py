"""Issue 12: full-size rehearsal of the unsupervised pipeline at CVACT's counts, on a CPU.

    .venv/bin/python benchmarks/rehearsal.py --train 35532 --val 8884 --out runs/rehearsal

Every stage of ``ucvgl pipeline --mode unsupervised`` runs on the whole world (projection
of every panorama, the CycleGAN's translation of every BEV, embedding and matching of the
whole pool, selection, evaluation and the index of every tile), with ``paper-base``'s
settings except: a small backbone and small images (``--input``, default 32x64 panoramas
and 32 px tiles, BEVs and CycleGAN), ``health_checks='warn'`` (a model trained a few
steps is at chance by design), and every training epoch cut to ``--steps`` batches
(``make_loader`` of the training stages is wrapped to stop after that many batches: the
datasets, samplers and hard-negative batches are built for the full N; the CycleGAN gets
``max_images_per_epoch``). Each stage prints its time, the peak RSS of the process and
the peak PSS of the process with its DataLoader workers.

The world copies rendered scenes (``_stream_common.replicate_world``: rendering 44k
locations takes hours on 2 shared cores), so places repeat; its numbers are about time and
memory, never quality.

GPU time of a real run: the images each encoder stage of a real ``paper-base`` run pushes
through ConvNeXt-B (epochs x images from the preset; the AMM rounds assumed to train on
the whole pool each round), times the FLOPs per image measured with torch's flop counter
on the real model, over an assumed H100 rate (989 TFLOP/s dense bf16, NVIDIA datasheet, at
an ASSUMED 40% utilisation; training = 3x forward). Projection, CycleGAN and matching are
not extrapolated (their CPU times are printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, write_json  # noqa: E402
from _stream_common import TreeMemory, ensure_scenes, flops_per_image, replicate_world  # noqa: E402

GPU_PEAK_FLOPS = 989e12
GPU_UTILISATION = 0.40


class _FirstBatches:
    """A DataLoader stand-in that yields only its first ``steps`` batches per epoch."""

    def __init__(self, loader, steps: int) -> None:
        self.loader, self.steps = loader, steps

    def __len__(self) -> int:
        return min(self.steps, len(self.loader))

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i >= self.steps:
                break
            yield batch


def cap_training_epochs(steps: int) -> None:
    """Wrap ``make_loader`` of the training stages (not of embedding) to ``steps`` batches."""
    from ucvgl.services.training import cold_start, pair_stage

    for module in (cold_start, pair_stage):
        real = module.make_loader

        def capped(*a, _real=real, **k):
            return _FirstBatches(_real(*a, **k), steps)

        module.make_loader = capped


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (DataLoader workers)."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def real_run_gpu_seconds(n_train: int, n_val: int, paper, flops: dict[str, float]) -> dict:
    """Encoder FLOPs of a real paper-base run on this world's counts, and GPU seconds."""
    g, s = flops["ground"], flops["satellite"]
    train = 3.0  # forward + backward
    pool = n_train * (g + s)  # embedding the pool once
    stages = {
        # intra-view (two crops of each panorama and tile), ground <-> fake, then the check
        # (pool + decoys; AMM round 1 reads these embeddings from the cache)
        "cold_start": paper.intra_epochs * 2 * pool * train
        + paper.cross_epochs * pool * train
        + pool
        + n_train * s,
        # each round embeds the pool with the new model and trains (assumed: the whole
        # pool per epoch), then the selection embeds the final model's pool
        "amm": paper.amm_rounds * (pool + paper.amm_epochs_per_round * pool * train) + pool,
        "select": n_train * s,  # the decoys (the pool's embeddings are cached)
        "evaluate": n_val * (g + s),
        # every tile: the train tiles' embeddings are in stages/cache, the index reads
        # run_dir/cache (pipeline.py), so they are embedded again
        "index": (n_train + n_val) * s,
    }
    rate = GPU_PEAK_FLOPS * GPU_UTILISATION
    return {k: v / rate for k, v in stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=35532)
    parser.add_argument("--val", type=int, default=8884)
    parser.add_argument("--out", default="runs/rehearsal")
    parser.add_argument("--scenes", default="runs/memory_world/small")
    parser.add_argument("--file-size", default="64x128", help="panorama files HxW (tiles H)")
    parser.add_argument("--input", default="32x64", help="model input HxW (tiles, BEV: H)")
    parser.add_argument("--backbone", default="test_convnext")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="rehearsal")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.pipeline import STAGES as PIPELINE_STAGES
    from ucvgl.services.pipeline import PipelineRun
    from ucvgl.services.presets import get_preset
    from ucvgl.services.progress import NullProgress

    started = time.perf_counter()
    out = Path(args.out)
    fh, fw = (int(v) for v in args.file_size.split("x"))
    world = out / f"world_{args.train}_{args.val}"
    gen = replicate_world(
        ensure_scenes(Path(args.scenes)),
        world,
        args.train,
        args.val,
        pano_size=(fh, fw),
        sat_size=fh,
    )
    print(f"world: {gen}", flush=True)
    h, w = (int(v) for v in args.input.split("x"))
    paper = get_preset("paper-base")
    preset = paper.replace(
        name="paper-base (rehearsal)",
        backbone=args.backbone,
        ground_size=(h, w),
        satellite_size=h,
        bev_size=h,
        batch_size=args.batch,
        eval_batch_size=args.batch * 4,
        intra_epochs=1,
        cross_epochs=1,
        amm_rounds=1,
        health_checks="warn",
        weights="none",  # a small backbone from random init: memory and time, not quality
        cyclegan=dict(
            ngf=4,
            ndf=4,
            n_blocks=1,
            n_layers=2,
            epochs=1,
            batch_size=4,
            pool_size=0,
            max_images_per_epoch=4 * args.steps,
        ),
    )
    cap_training_epochs(args.steps)
    t = time.perf_counter()
    dataset = load_dataset(world, "cvact")
    load_s = time.perf_counter() - t
    run = PipelineRun(dataset, out / "run", mode="unsupervised", preset=preset, device="cpu")
    rows = [{"stage": "load dataset", "seconds": load_s}]
    with TreeMemory() as mem:
        for name in PIPELINE_STAGES["unsupervised"]:
            mem.reset()
            t, cpu = time.perf_counter(), _cpu_seconds()
            run._timed(name, getattr(run, name), NullProgress())
            row = {
                "stage": name,
                "seconds": time.perf_counter() - t,
                "cpu_s": _cpu_seconds() - cpu,
                "peak_rss_mb": mem.peak_rss_mb,
                "peak_tree_pss_mb": mem.peak_mb,
                "processes": mem.max_processes,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    report = run.write_report()
    flops = flops_per_image(paper)
    gpu = real_run_gpu_seconds(args.train, args.val, paper, flops)
    for row in rows:
        if row["stage"] in gpu:
            row["real_run_gpu_h"] = gpu[row["stage"]] / 3600
    total = time.perf_counter() - started
    table = print_table(
        rows,
        [
            "stage",
            "seconds",
            "cpu_s",
            "peak_rss_mb",
            "peak_tree_pss_mb",
            "processes",
            "real_run_gpu_h",
        ],
    )
    print(
        f"real paper-base run on one H100 (assumed 40% of 989 TFLOP/s), encoder stages: "
        f"{sum(gpu.values()) / 3600:.1f} h; ConvNeXt-B GFLOPs per panorama "
        f"{flops['ground'] / 1e9:.1f}, per tile {flops['satellite'] / 1e9:.1f}",
        flush=True,
    )
    print(f"total {total:.0f} s", flush=True)
    write_json(
        args.name,
        {
            "args": vars(args),
            "world": gen,
            "rows": rows,
            "report_status": report.get("status"),
            "counts": report.get("dataset"),
            "convnext_b_flops": flops,
            "real_run_gpu_seconds": gpu,
            "gpu_assumption": "H100 SXM dense bf16 989 TFLOP/s (NVIDIA datasheet), 40% assumed",
            "total_seconds": total,
            "table": table,
        },
    )


if __name__ == "__main__":
    main()
