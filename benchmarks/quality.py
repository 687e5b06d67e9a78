"""Issue 3's quality table: recall of every mode on a synthetic world, plus a raw-pixel
baseline, with the time each run took.

    .venv/bin/python benchmarks/quality.py --out runs/quality --train 1000 --val 500

Runs (each resumable: run the same command again to continue): the unsupervised pipeline,
semi-supervised with 10% of the pairs, the supervised baseline, and the raw-pixel baseline
(24x24 colour thumbnails of the BEV projection vs the satellite tile, cosine similarity,
no learning). Prints a table and writes ``OUT/quality.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def raw_pixel_baseline(dataset, split_name: str, out_dir: Path, thumb: int = 24) -> dict:
    """Recall of 24x24 colour thumbnails: BEV of each panorama vs each satellite tile."""
    from PIL import Image

    from ucvgl.services.evaluation import recall_at_k
    from ucvgl.services.projection import bev_params_for_dataset, project_dataset

    began = time.perf_counter()
    split = dataset.split(split_name)
    params = bev_params_for_dataset(dataset, out_size=128)
    bevs = project_dataset(dataset, out_dir / "bev", params, splits=[split_name])

    def thumbs(paths) -> np.ndarray:
        rows = []
        for p in paths:
            img = Image.open(p).convert("RGB").resize((thumb, thumb), Image.BILINEAR)
            rows.append(np.asarray(img, dtype=np.float32).reshape(-1) / 255.0)
        return np.stack(rows)

    g, s = thumbs(bevs), thumbs(split.satellite_paths)
    out = {}
    for name, (a, b) in {
        "cosine": (g, s),
        "centred_cosine": (g - g.mean(1, keepdims=True), s - s.mean(1, keepdims=True)),
    }.items():
        r = recall_at_k(torch.from_numpy(a), torch.from_numpy(b), split.positives, device="cpu")
        out[name] = {k: r[k] for k in ("r1", "r5", "r10", "r1p")}
    out["seconds"] = round(time.perf_counter() - began, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/quality"))
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--modes", default="raw,unsupervised,supervised,semi")
    parser.add_argument("--gt-ratio", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    from ucvgl.commands._progress import TqdmProgress
    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.health import StageFailed
    from ucvgl.services.pipeline import run_pipeline
    from ucvgl.services.presets import get_preset
    from ucvgl.services.synth import generate_world

    if args.threads:
        torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)
    world = args.out / "world"
    t0 = time.perf_counter()
    generate_world(
        world,
        "cvact",
        args.train,
        args.val,
        seed=args.seed,
        pano_size=tuple(preset.ground_size),
        sat_size=preset.satellite_size,
        progress=TqdmProgress(),
    )
    dataset = load_dataset(world, "cvact")
    results_path = args.out / "quality.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results["world"] = {
        "train": args.train,
        "val": args.val,
        "seed": args.seed,
        "generate_seconds": round(time.perf_counter() - t0, 1),
    }
    results["preset"] = preset.name
    results["threads"] = torch.get_num_threads()
    for mode in args.modes.split(","):
        began = time.perf_counter()
        if mode == "raw":
            results["raw"] = raw_pixel_baseline(dataset, "val", args.out / "raw")
        else:
            try:
                report = run_pipeline(
                    world,
                    "cvact",
                    mode,
                    preset,
                    args.out / mode,
                    gt_ratio=args.gt_ratio,
                    device=args.device,
                    progress=TqdmProgress(),
                    seed=args.seed,
                )
            except StageFailed as exc:  # a stage check stopped it: no recall to report
                print(f"{mode}: STAGE FAILED: {exc}", file=sys.stderr)
                report = json.loads((args.out / mode / "report.json").read_text())
            results[mode] = {
                "status": report.get("status", "ok"),
                "failure": report.get("failure"),
                "recall": report["recall"],
                "rounds": [
                    {
                        k: r.get(k)
                        for k in (
                            "round",
                            "threshold",
                            "mutual",
                            "labels",
                            "correct",
                            "known_labels",
                        )
                    }
                    | {"criterion": (r.get("criterion_before") or {}).get("score")}
                    for r in report["rounds"]
                ],
                "selected": (report["selection"].get("selected") or {}).get("name"),
                "stages": report["stages"],
                "total_seconds": round(sum(s["seconds"] for s in report["stages"]), 1),
                "wall_seconds_this_call": round(time.perf_counter() - began, 1),
            }
        # Merge with what other processes (other modes run in parallel) wrote meanwhile.
        on_disk = json.loads(results_path.read_text()) if results_path.exists() else {}
        results = {
            **on_disk,
            **{
                k: v
                for k, v in results.items()
                if k not in on_disk or k in (mode, "world", "preset", "threads")
            },
        }
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=2))
    print(format_table(results))
    print(f"written: {results_path}")
    return 0


def format_table(results: dict) -> str:
    """The quality table as text."""
    lines = [
        f"synthetic world: {results['world']['train']} train / {results['world']['val']} val "
        f"locations (chance R@1 = {100 / results['world']['val']:.2f}%), preset "
        f"{results['preset']}, {results['threads']} torch threads",
        f"{'setting':<34} {'R@1':>7} {'R@5':>7} {'R@10':>7} {'R@1%':>7} {'minutes':>8}",
    ]
    raw = results.get("raw")
    if raw:
        for name in ("cosine", "centred_cosine"):
            r = raw[name]
            lines.append(
                f"{'raw pixels 24x24 (' + name + ')':<34} "
                + " ".join(f"{r[k]:>7.2f}" for k in ("r1", "r5", "r10", "r1p"))
                + f" {raw['seconds'] / 60:>8.1f}"
            )
    labels = {
        "unsupervised": "unsupervised (no pairs)",
        "semi": "semi-supervised (10% pairs)",
        "supervised": "supervised (all pairs)",
    }
    for mode, label in labels.items():
        if mode not in results:
            continue
        r = results[mode]["recall"] or {}
        lines.append(
            f"{label:<34} "
            + " ".join(f"{r.get(k, float('nan')):>7.2f}" for k in ("r1", "r5", "r10", "r1p"))
            + f" {results[mode]['total_seconds'] / 60:>8.1f}"
        )
        for rd in results[mode]["rounds"]:
            share = (
                f" ({100 * rd['correct'] / rd['labels']:.0f}%)"
                if rd["labels"] and rd["correct"] is not None
                else ""
            )
            known = f", known pairs {rd['known_labels']}" if rd.get("known_labels") else ""
            lines.append(
                f"    round {rd['round']}: tau {rd['threshold']:.4f}, mutual {rd['mutual']}, "
                f"labels {rd['labels']}, correct {rd['correct']}{share}{known}, "
                f"score {rd['criterion']:.2f}"
            )
        if results[mode]["rounds"]:
            lines.append(f"    selected (label-free): {results[mode]['selected']}")
        failure = results[mode].get("failure")
        if failure:
            lines.append(f"    STOPPED by a stage check: {failure['message']}")
        stages = ", ".join(
            f"{st['name']} {st['seconds'] / 60:.1f}" for st in results[mode]["stages"]
        )
        lines.append(f"    minutes per stage: {stages}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
