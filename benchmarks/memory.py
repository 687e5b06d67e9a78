"""Issue 12: peak memory of the real stages vs world size, and the data path's images/s.

    .venv/bin/python benchmarks/memory.py --world runs/memory_world/paper --sizes 2000,8000

The world is a CVACT-layout synthetic world whose JPEG files are paper-size (panoramas
384x768, tiles 384; see ``--make-world``: rendered small and upscaled with grain, because
rendering at paper size costs ~0.3 s a location on 2 shared cores). The world of N
locations is the first N training panoramas with their tiles, and N/4 validation ones.

Each (N, stage) runs in a fresh process so its peak is its own:

- ``cold_start``: the intra-view stage (two augmented crops of every panorama and tile)
  and the ground <-> fake stage (the tiles stand in for the CycleGAN's fakes), each on its
  full dataset and sampler, stopped after ``--steps`` optimiser steps;
- ``amm_round``: embed every panorama and tile of the pool (decoded in DataLoader
  workers), mutual matching, pseudo-labels above the preset's threshold, GPS hard-negative
  batches, ``--steps`` training steps;
- ``evaluate``: embed the validation panoramas and tiles, recall@K.

The model is ``paper-base`` with a small backbone (``--backbone``) and, so that embedding
N images fits the CPU time, a smaller model input (``--input``: the files stay paper-size
and are decoded with JPEG draft mode at that size) and batch (``--batch``); everything else
(augmentations, hard negatives, matching, the loaders) is paper-base's. A separate
``data`` process measures the data path per worker process at the full paper-base sizes:
images/s decoded + normalised (embedding) and pairs/s decoded + augmented (training), and
from the FLOPs of the real ConvNeXt-B at 384 how many such workers one GPU needs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import peak_rss_mb, print_table, run_worker, write_json  # noqa: E402
from _stream_common import (  # noqa: E402
    TreeMemory,
    ensure_scenes,
    flops_per_image,
    peak_rss_children_mb,
    replicate_world,
    run_capped,
    subset_split,
)

STAGES = ("cold_start", "amm_round", "evaluate")

# The GPU assumed for "workers per GPU": an H100 SXM, 989 TFLOP/s dense bf16 (NVIDIA H100
# datasheet), at an ASSUMED 40% of peak for ConvNeXt-B training with AMP (not measured:
# no GPU was lent to this session). Training costs 3x the forward FLOPs.
GPU_PEAK_FLOPS = 989e12
GPU_UTILISATION = 0.40


def _preset(args):
    from ucvgl.services.presets import get_preset

    h, w = (int(v) for v in args.input.split("x"))
    return get_preset("paper-base").replace(
        backbone=args.backbone,
        ground_size=(h, w),
        satellite_size=h,
        batch_size=args.batch,
        eval_batch_size=args.batch * 2,
        weights="none",  # a small backbone from random init: memory and time, not quality
    )


def _splits(args, n: int):
    from ucvgl.services.datasets import load_dataset

    data = load_dataset(Path(args.world), "cvact")
    train = subset_split(data.split("train"), n)
    val = subset_split(data.split("val"), max(1, n // 4))
    return train, val


def stage_worker(args) -> dict:
    """One stage at one N in this fresh process; returns its row."""
    import torch

    torch.set_num_threads(args.threads)
    from ucvgl.services.models import build_model
    from ucvgl.services.training.cold_start import train_ground_fake, train_intra_view

    preset = _preset(args)
    train, val = _splits(args, args.n)
    torch.manual_seed(0)
    model = build_model(preset.encoder_config())
    row: dict = {"n": args.n, "stage": args.worker, "val": val.num_ground}
    work = Path(tempfile.mkdtemp(prefix="ucvgl-mem-"))
    base_rss = peak_rss_mb()
    t0 = time.perf_counter()
    with TreeMemory() as mem:
        if args.worker == "cold_start":
            caps = [
                run_capped(
                    lambda p: train_intra_view(
                        model, train, preset, work / "intra", progress=p, seed=0
                    ),
                    args.steps,
                ),
                run_capped(
                    lambda p: train_ground_fake(
                        model,
                        train,
                        list(train.satellite_paths),
                        preset,
                        work / "cross",
                        progress=p,
                    ),
                    args.steps,
                ),
            ]
            row["steps"] = sum(c.done for c in caps)
        elif args.worker == "amm_round":
            row.update(_amm_round(model, train, preset, work, args.steps))
        else:
            from ucvgl.services.evaluation import recall_at_k
            from ucvgl.services.training.embed import embed_split

            g = embed_split(model, val, "ground", batch_size=preset.eval_batch_size)
            s = embed_split(model, val, "satellite", batch_size=preset.eval_batch_size)
            recall = recall_at_k(g, s, val.positives)
            row["r1"] = recall["r1"]
    row["seconds"] = time.perf_counter() - t0
    row["peak_rss_mb"] = peak_rss_mb()
    row["setup_rss_mb"] = base_rss
    row["peak_tree_pss_mb"] = mem.peak_mb
    row["peak_worker_rss_mb"] = peak_rss_children_mb()
    row["processes"] = mem.max_processes
    return row


def _amm_round(model, split, preset, work: Path, steps: int) -> dict:
    """Embed + match + pseudo-labels + capped training (amm.py's round, in its parts)."""
    import numpy as np

    from ucvgl.services.training.amm import match_pool
    from ucvgl.services.training.pair_stage import (
        pair_items,
        stage_tile_neighbours,
        train_on_items,
    )
    from ucvgl.services.training.trainer import StageConfig

    t = time.perf_counter()
    from ucvgl.services.progress import NullProgress

    pool = match_pool(
        model, split, preset, device="cpu", cache_dir=work / "cache", progress=NullProgress()
    )
    embed_match_s = time.perf_counter() - t
    m = pool.matches
    keep = (m.margin >= preset.threshold_for("cvact")).numpy()
    if keep.sum() < 8:  # an untrained model has few confident matches: take the best ones
        keep = np.zeros(m.num_pairs, bool)
        keep[np.argsort(-m.margin.numpy())[: max(8, m.num_pairs // 10)]] = True
    pairs = (m.ground_idx.numpy()[keep], m.satellite_idx.numpy()[keep])
    items = pair_items(split, pairs, preset, seed=1)
    cfg = StageConfig.from_preset(preset, "AMM round 1", epochs=1, lr=preset.amm_lr, seed=1)
    rdir = work / "amm_round_001"
    neighbours = stage_tile_neighbours(model, split, preset, rdir, cache_dir=work / "cache")
    cap = run_capped(
        lambda p: train_on_items(
            model,
            split,
            items,
            cfg,
            rdir,
            preset,
            smoothing=preset.smoothing_pseudo,
            tile_neighbours=neighbours,
            progress=p,
        ),
        steps,
    )
    return {
        "embed_match_s": embed_match_s,
        "images_embedded": split.num_ground + split.num_satellite,
        "mutual": m.num_pairs,
        "labels": int(keep.sum()),
        "items": len(items),
        "steps": cap.done,
    }


def data_worker(args) -> dict:
    """Images/s of the data path per worker process at full paper-base sizes."""
    import torch

    torch.set_num_threads(1)
    from ucvgl.services.augment import PairTransform
    from ucvgl.services.presets import get_preset
    from ucvgl.services.training.data import (
        ImageListDataset,
        Normalize,
        PairDataset,
        make_loader,
    )

    paper = get_preset("paper-base")
    train, _ = _splits(args, args.n)
    m = min(args.data_images, train.num_ground)
    gsize, ssize = tuple(paper.ground_size), paper.satellite_size
    heads = None if train.ground_heading_deg is None else train.ground_heading_deg[:m]
    row: dict = {"n": args.n, "stage": "data path", "images": m}

    def rate(dataset, per_item: int, key: str) -> float:
        """Items/s of one worker (wall), and items per CPU-second of it in row[key_cpu]."""
        import gc
        import resource

        def worker_cpu() -> float:
            r = resource.getrusage(resource.RUSAGE_CHILDREN)
            return r.ru_utime + r.ru_stime

        cpu0 = worker_cpu()
        loader = make_loader(dataset, batch_size=8, num_workers=1)
        it = iter(loader)
        total = 0
        first = next(it)  # worker started, first batch decoded
        total += len(first[0])
        t, done = time.perf_counter(), 0
        for batch in it:
            done += len(batch[0]) * per_item
        wall = done / (time.perf_counter() - t)
        total += done
        del it, loader, batch, first
        gc.collect()  # the persistent worker exits and is joined: its CPU time is counted
        row[key + "_per_cpu_s"] = total / max(1e-9, worker_cpu() - cpu0)
        row[key] = wall
        return wall

    g = ImageListDataset(
        train.ground_paths[:m],
        gsize,
        headings=heads,
        panorama=True,
        transform=Normalize(),
        cache=False,
    )
    s = ImageListDataset(
        train.satellite_paths[:m], (ssize, ssize), transform=Normalize(), cache=False
    )
    rate(g, 1, "embed_ground_img_s")
    rate(s, 1, "embed_tile_img_s")
    g.transform = s.transform = None
    pairs = PairDataset(
        g,
        s,
        torch.arange(m).numpy(),
        torch.arange(m).numpy(),
        pair_transform=PairTransform(gsize, (ssize, ssize), policy=paper.photometric),
    )
    rate(pairs, 1, "train_pairs_s")
    # Draft mode: the same files decoded for a model input of half the size.
    half = ImageListDataset(
        train.ground_paths[:m],
        (gsize[0] // 2, gsize[1] // 2),
        headings=heads,
        panorama=True,
        cache=False,
    )
    t = time.perf_counter()
    for i in range(min(m, 64)):
        half.decode(i)
    row["draft_half_ground_img_s"] = min(m, 64) / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(min(m, 64)):
        g.decode(i)
    row["full_ground_img_s_main"] = min(m, 64) / (time.perf_counter() - t)

    flops = flops_per_image(paper)
    row["convnext_b_gflops_ground"] = flops["ground"] / 1e9
    row["convnext_b_gflops_tile"] = flops["satellite"] / 1e9
    gpu = GPU_PEAK_FLOPS * GPU_UTILISATION
    train_pairs_gpu = gpu / (3 * (flops["ground"] + flops["satellite"]))
    embed_pairs_gpu = gpu / (flops["ground"] + flops["satellite"])
    row["gpu_train_pairs_s"] = train_pairs_gpu
    row["gpu_embed_pairs_s"] = embed_pairs_gpu
    # Workers needed, from each worker's rate per CPU-second (a worker owning a core; the
    # wall rates on this shared machine are lower).
    row["workers_for_training"] = train_pairs_gpu / row["train_pairs_s_per_cpu_s"]
    embed_pair_s = 1 / (
        1 / row["embed_ground_img_s_per_cpu_s"] + 1 / row["embed_tile_img_s_per_cpu_s"]
    )
    row["workers_for_embedding"] = embed_pairs_gpu / embed_pair_s
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", default="runs/memory_world/paper")
    parser.add_argument("--sizes", default="2000,8000")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--backbone", default="test_convnext")
    parser.add_argument("--input", default="96x192", help="model input HxW (tiles H)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per stage")
    parser.add_argument("--data-images", type=int, default=96)
    parser.add_argument("--loader-workers", type=int, default=1, help="DataLoader workers")
    parser.add_argument(
        "--cache-mb",
        type=float,
        default=None,
        help="image cache budget; default: the 1024 MB default scaled by the model input's "
        "pixels over paper-base's, so the cache holds as many images as at paper size",
    )
    parser.add_argument("--make-world", type=str, default=None, metavar="TRAIN,VAL")
    parser.add_argument(
        "--scenes", default="runs/memory_world/small", help="a rendered CVACT world to copy"
    )
    parser.add_argument("--name", default="memory")
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=(*STAGES, "data"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import os

        os.environ["UCVGL_NUM_WORKERS"] = str(args.loader_workers)
        os.environ["UCVGL_IMAGE_CACHE_MB"] = str(args.cache_mb)
        row = data_worker(args) if args.worker == "data" else stage_worker(args)
        print(json.dumps(row), flush=True)
        return
    started = time.perf_counter()
    if args.cache_mb is None:
        h, w = (int(v) for v in args.input.split("x"))
        args.cache_mb = 1024.0 * (h * w) / (384 * 768)
    world = Path(args.world)
    gen = None
    if args.make_world:
        n_train, n_val = (int(v) for v in args.make_world.split(","))
        scenes = ensure_scenes(Path(args.scenes))
        gen = replicate_world(scenes, world, n_train, n_val, pano_size=(384, 768), sat_size=384)
        print(f"world: {gen}", flush=True)
    common = [
        "--world", str(world), "--backbone", args.backbone, "--input", args.input,
        "--batch", str(args.batch), "--steps", str(args.steps), "--threads", str(args.threads),
        "--data-images", str(args.data_images), "--loader-workers", str(args.loader_workers),
        "--cache-mb", str(args.cache_mb),
    ]  # fmt: skip
    rows = []
    sizes = [int(v) for v in args.sizes.split(",")]
    for n in sizes:
        for stage in args.stages.split(","):
            print(f"running {stage} at N={n} ...", flush=True)
            row = run_worker(Path(__file__), ["--worker", stage, "--n", str(n), *common])
            row.setdefault("n", n)
            row.setdefault("stage", stage)
            print(json.dumps(row), flush=True)
            rows.append(row)
    data = run_worker(Path(__file__), ["--worker", "data", "--n", str(sizes[0]), *common])
    print(json.dumps(data), flush=True)
    growth = []
    for stage in args.stages.split(","):
        by_n = {r["n"]: r for r in rows if r["stage"] == stage and "peak_rss_mb" in r}
        if len(by_n) >= 2:
            lo, hi = by_n[min(by_n)], by_n[max(by_n)]
            growth.append(
                {
                    "stage": stage,
                    "rss_growth_pct": 100 * (hi["peak_rss_mb"] / lo["peak_rss_mb"] - 1),
                    "pss_growth_pct": 100 * (hi["peak_tree_pss_mb"] / lo["peak_tree_pss_mb"] - 1),
                }
            )
    table = print_table(
        rows,
        [
            "n",
            "stage",
            "seconds",
            "steps",
            "peak_rss_mb",
            "peak_tree_pss_mb",
            "peak_worker_rss_mb",
            "processes",
            "note",
        ],
    )
    print_table(growth, ["stage", "rss_growth_pct", "pss_growth_pct"])
    print_table(
        [data],
        [
            "embed_ground_img_s",
            "embed_ground_img_s_per_cpu_s",
            "embed_tile_img_s_per_cpu_s",
            "train_pairs_s",
            "train_pairs_s_per_cpu_s",
            "draft_half_ground_img_s",
            "full_ground_img_s_main",
            "gpu_train_pairs_s",
            "workers_for_training",
            "workers_for_embedding",
        ],
    )
    total = time.perf_counter() - started
    print(f"total {total:.0f} s", flush=True)
    write_json(
        args.name,
        {
            "args": {k: v for k, v in vars(args).items() if k not in ("worker", "n")},
            "world_generation": gen,
            "rows": rows,
            "growth": growth,
            "data_path": data,
            "gpu_assumption": {
                "peak_flops": GPU_PEAK_FLOPS,
                "utilisation": GPU_UTILISATION,
                "basis": "H100 SXM dense bf16 989 TFLOP/s (NVIDIA datasheet), 40% assumed",
            },
            "total_seconds": total,
            "table": table,
        },
    )


if __name__ == "__main__":
    main()
