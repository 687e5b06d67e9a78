"""Held-out quality: recall of every mode on several REPORT worlds, with mean and spread.

    .venv/bin/python benchmarks/quality.py --out runs/quality \\
        --worlds report-1,report-2,report-4,othergen-cvact:7 --train 1000 --val 500 --jobs 2

Worlds are named entries of ``ucvgl.services.synth.family`` (``report-*``: presets were
never tuned on them; ``tune-*`` worlds are refused unless ``--allow-tuning-worlds``) or
``othergen-<cvact|cvusa>[:seed]``: a world of the independent generator in
``benchmarks/worlds/othergen.py``, which shares no code with ``ucvgl synth``. Images are
written at ``--pano``/``--tile`` and resized by the pipeline, as real imagery would be.

For every world and mode (each run resumable: the same command continues):
- ``raw``: no learning, the BEV projection's 24x24 thumbnails against the tiles' by cosine
  similarity, in colour (``raw``) and standardised per image and channel (``raw_std``,
  the projection prior's descriptor);
- ``unsupervised``, ``semi`` (``--gt-ratio`` known pairs) and ``supervised``: the pipeline
  with ``--preset``.
``--selection-diagnostics`` sets the preset's ``selection_diagnostics`` (issue 13 part 3):
each unsupervised / semi run also measures every selection candidate's val recall, and the
summary prints the Spearman correlation of the label-free criterion with R@1 per world.
Tasks run in ``--jobs`` processes of one torch thread each. Prints one table per world and
the summary (mean and sample standard deviation over worlds), and writes
``OUT/<world>/quality.json`` and ``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_set_option, selection_summary  # noqa: E402

MODES = ("raw", "unsupervised", "semi", "supervised")
RECALL_KEYS = ("r1", "r5", "r10", "r1p")


# --------------------------------------------------------------------------- worlds
def world_format(name: str) -> str:
    """The dataset layout of a world spec."""
    if name.startswith("othergen-"):
        return name.split("-", 1)[1].split(":")[0]
    from ucvgl.services.synth.family import get_world

    return get_world(name).format


def make_world(name: str, out: Path, args: argparse.Namespace) -> Path:
    """Generate (or reuse) world ``name`` in ``out`` and return its folder."""
    pano = tuple(int(v) for v in args.pano.split("x"))
    if name.startswith("othergen-"):
        layout, _, seed = name.split("-", 1)[1].partition(":")
        if (out / "done.json").exists():
            return out
        from worlds.othergen import generate

        generate(out, layout, args.train, args.val, int(seed or 0), pano_hw=pano, tile=args.tile)
        (out / "done.json").write_text(json.dumps({"world": name}))
        return out
    from ucvgl.commands._progress import TqdmProgress
    from ucvgl.services.synth.family import generate_named_world

    return generate_named_world(
        name, out, args.train, args.val, pano_size=pano, sat_size=args.tile, progress=TqdmProgress()
    )


# --------------------------------------------------------------------------- one task
def raw_pixel_baseline(dataset, split_name: str, out_dir: Path, thumb: int = 24) -> dict:
    """Recall of thumbnails of each panorama's BEV against each tile (no learning)."""
    from ucvgl.services.evaluation import recall_at_k
    from ucvgl.services.pixel_prior import thumbnail_descriptors
    from ucvgl.services.projection import bev_params_for_dataset, project_dataset

    began = time.perf_counter()
    split = dataset.split(split_name)
    params = bev_params_for_dataset(dataset, out_size=128)
    bevs = project_dataset(dataset, out_dir / "bev", params, splits=[split_name])
    out = {}
    for name, standardise in (("colour", False), ("standardised", True)):
        g = thumbnail_descriptors(bevs, thumb, standardise=standardise)
        s = thumbnail_descriptors(split.satellite_paths, thumb, standardise=standardise)
        r = recall_at_k(torch.from_numpy(g), torch.from_numpy(s), split.positives, device="cpu")
        out[name] = {k: r[k] for k in RECALL_KEYS}
    out["seconds"] = round(time.perf_counter() - began, 1)
    return out


def run_task(world: str, mode: str, args: argparse.Namespace) -> dict:
    """One (world, mode): its result dict (also written to OUT/<world>/<mode>.json)."""
    from ucvgl.commands._progress import TqdmProgress
    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.health import StageFailed
    from ucvgl.services.pipeline import run_pipeline
    from ucvgl.services.presets import get_preset

    torch.set_num_threads(args.threads)
    wdir = args.out / world
    data = make_world(world, wdir / "world", args)
    fmt = world_format(world)
    began = time.perf_counter()
    if mode == "raw":
        dataset = load_dataset(data, fmt)
        result: dict = {"raw": raw_pixel_baseline(dataset, "val", wdir / "raw")}
    else:
        preset = get_preset(args.preset)
        try:
            report = run_pipeline(
                data,
                fmt,
                mode,
                preset,
                wdir / mode,
                gt_ratio=args.gt_ratio,
                device=args.device,
                progress=TqdmProgress(),
                seed=args.seed,
                overrides=task_overrides(args),
            )
        except StageFailed as exc:  # a stage check stopped it: no recall to report
            print(f"{world} {mode}: STAGE FAILED: {exc}", file=sys.stderr)
            report = json.loads((wdir / mode / "report.json").read_text())
        result = {
            "status": report.get("status", "ok"),
            "failure": report.get("failure"),
            "recall": report["recall"],
            "prior": report.get("prior"),
            "rounds": [
                {
                    k: r.get(k)
                    for k in ("round", "threshold", "mutual", "labels", "correct", "known_labels")
                }
                for r in report["rounds"]
            ],
            "amm_stop_reason": report.get("amm_stop_reason"),
            "budgets": {
                k: {kk: v.get(kk) for kk in ("epochs_run", "max_epochs", "stop_reason")}
                for k, v in (report.get("budgets") or {}).items()
            },
            "selected": ((report.get("selection") or {}).get("selected") or {}).get("name"),
            "selection": selection_summary(report.get("selection")),
            "stages": report["stages"],
            "total_seconds": round(sum(s["seconds"] for s in report["stages"]), 1),
        }
    result["wall_seconds_this_call"] = round(time.perf_counter() - began, 1)
    (wdir / f"{mode}.json").write_text(json.dumps(result, indent=2))
    return result


# --------------------------------------------------------------------------- summary
def selection_spearman(result: dict | None) -> float | None:
    """Spearman(criterion, R@1) over a run's selection candidates (None when not measured)."""
    sel = (result or {}).get("selection")
    return None if not sel else sel.get("spearman_r1")


def load_world(world: str, out: Path) -> dict:
    """Every finished mode of ``world`` (read from OUT/<world>/<mode>.json)."""
    found = {}
    for mode in MODES:
        path = out / world / f"{mode}.json"
        if path.exists():
            found[mode] = json.loads(path.read_text())
    return found


def r1_of(world_result: dict, mode: str) -> float | None:
    """R@1 of a mode (raw: the colour baseline; raw_std: the standardised one)."""
    if mode in ("raw", "raw_std"):
        raw = world_result.get("raw", {}).get("raw")
        return None if raw is None else raw["colour" if mode == "raw" else "standardised"]["r1"]
    r = world_result.get(mode)
    if r is None or r.get("status", "ok") != "ok" or not r.get("recall"):
        return None
    return float(r["recall"]["r1"])


def first_round_precision(result: dict | None) -> float | None:
    """Share of correct model pseudo-labels in AMM round 1 (None without labels)."""
    if not result or not result.get("rounds"):
        return None
    rd = result["rounds"][0]
    if not rd["labels"] or rd["correct"] is None:
        return None
    return rd["correct"] / rd["labels"]


def summarise(worlds: list[str], out: Path) -> dict:
    """Mean and spread over worlds, per setting, plus the acceptance ratios."""
    per_world = {w: load_world(w, out) for w in worlds}
    settings = ("raw", "raw_std", "unsupervised", "semi", "supervised")
    table: dict = {}
    for s in settings:
        values = {w: r1_of(per_world[w], s) for w in worlds}
        got = [v for v in values.values() if v is not None]
        table[s] = {
            "r1": values,
            "mean": statistics.fmean(got) if got else None,
            "std": statistics.stdev(got) if len(got) > 1 else None,
            "worlds": len(got),
        }
    ratio = {}
    for w in worlds:
        u, s = r1_of(per_world[w], "unsupervised"), r1_of(per_world[w], "supervised")
        ratio[w] = None if u is None or not s else u / s
    precision = {w: first_round_precision(per_world[w].get("unsupervised")) for w in worlds}
    status = {
        w: {m: per_world[w][m].get("status", "ok") for m in per_world[w] if m != "raw"}
        for w in worlds
    }
    spearman = {
        m: {w: selection_spearman(per_world[w].get(m)) for w in worlds}
        for m in ("unsupervised", "semi")
        if any((per_world[w].get(m) or {}).get("selection") for w in worlds)
    }
    return {
        "worlds": worlds,
        "r1": table,
        "unsupervised_over_supervised": ratio,
        "first_round_label_precision": precision,
        "selection_spearman_r1": spearman,
        "status": status,
    }


def _fmt(v: float | None, spec: str = "6.1f") -> str:
    return f"{v:{spec}}" if v is not None else "     -"


def format_summary(summary: dict, args: argparse.Namespace) -> str:
    """The README table: R@1 per world and mode, mean +- spread."""
    worlds = summary["worlds"]
    head = f"{'val R@1 (%)':<28}" + "".join(f"{w:>16}" for w in worlds) + f"{'mean +- sd':>16}"
    lines = [
        f"held-out worlds, {args.train} train / {args.val} val locations (chance R@1 "
        f"{100 / args.val:.2f}%), preset {args.preset}, images {args.pano} / {args.tile}px",
        head,
    ]
    labels = {
        "raw": "raw pixels, colour",
        "raw_std": "raw pixels, standardised",
        "unsupervised": "unsupervised (no pairs)",
        "semi": f"semi ({args.gt_ratio:.0%} pairs)",
        "supervised": "supervised (all pairs)",
    }
    for s, label in labels.items():
        row = summary["r1"][s]
        if not row["worlds"] and not any(
            summary["status"][w].get(s) for w in worlds if s in summary["status"][w]
        ):
            continue
        cells = "".join(
            f"{_fmt(row['r1'][w]):>16}"
            if row["r1"][w] is not None
            else f"{summary['status'][w].get(s, '-'):>16}"
            for w in worlds
        )
        spread = (
            f"{row['mean']:.1f} +- {row['std']:.1f}"
            if row["std"] is not None
            else _fmt(row["mean"], ".1f")
        )
        lines.append(f"{label:<28}{cells}{spread:>16}")
    ratios = summary["unsupervised_over_supervised"]
    lines.append(
        f"{'unsupervised / supervised':<28}"
        + "".join(f"{_fmt(ratios[w], '6.2f'):>16}" for w in worlds)
    )
    prec = summary["first_round_label_precision"]
    lines.append(
        f"{'round-1 labels correct':<28}"
        + "".join(f"{_fmt(None if prec[w] is None else 100 * prec[w]):>16}" for w in worlds)
    )
    for mode, per_world in (summary.get("selection_spearman_r1") or {}).items():
        lines.append(
            f"{'criterion~R@1 Spearman, ' + mode[:5]:<28}"
            + "".join(f"{_fmt(per_world[w], '6.2f'):>16}" for w in worlds)
        )
    return "\n".join(lines)


def format_world(world: str, found: dict) -> str:
    """Per-world details: labels per round, prior, budgets, minutes."""
    lines = [f"== {world}"]
    raw = found.get("raw", {}).get("raw")
    if raw:
        for name in ("colour", "standardised"):
            r = raw[name]
            lines.append(
                f"  raw pixels 24x24 ({name}): " + " ".join(f"{k} {r[k]:.1f}" for k in RECALL_KEYS)
            )
    for mode in ("unsupervised", "semi", "supervised"):
        r = found.get(mode)
        if not r:
            continue
        rec = r.get("recall") or {}
        lines.append(
            f"  {mode}: status {r.get('status', 'ok')}, "
            + " ".join(f"{k} {rec[k]:.1f}" for k in RECALL_KEYS if k in rec)
            + f", {r['total_seconds'] / 60:.1f} min"
        )
        if r.get("failure"):
            lines.append(f"    STOPPED by a stage check: {r['failure'].get('message')}")
        if r.get("prior"):
            p = r["prior"]
            lines.append(
                f"    projection prior: {p['pairs']} pairs, correct {p.get('correct')}, "
                f"estimated false share {p['estimated_fdr']:.2f}"
            )
        for rd in r.get("rounds", []):
            share = (
                f" ({100 * rd['correct'] / rd['labels']:.0f}%)"
                if rd["labels"] and rd["correct"] is not None
                else ""
            )
            lines.append(
                f"    round {rd['round']}: tau {rd['threshold']:.4f}, mutual {rd['mutual']}, "
                f"labels {rd['labels']}, correct {rd['correct']}{share}, "
                f"anchors {rd.get('known_labels')}"
            )
        if r.get("budgets"):
            lines.append(
                "    budgets: "
                + ", ".join(
                    f"{k} {b['epochs_run']}/{b['max_epochs'] or b['epochs_run']} "
                    f"({b['stop_reason']})"
                    for k, b in r["budgets"].items()
                )
            )
        sel = r.get("selection")
        if sel:
            lines.append(
                f"    selection: chosen {sel['chosen']}, best by R@1 {sel['best_by_recall']}, "
                f"Spearman(criterion, R@1) {_fmt(sel['spearman_r1'], '.2f').strip()}: "
                + ", ".join(
                    f"{c['name']} {_fmt(c['criterion'], '.2f').strip()}/{c['r1']:.1f}"
                    for c in sel["candidates"]
                )
                + " (criterion / R@1)"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- driver
def task_overrides(args: argparse.Namespace) -> dict[str, str | bool] | None:
    """The preset overrides of every pipeline task: ``--set`` and --selection-diagnostics."""
    from ucvgl.services.preset_overrides import parse_set_options

    overrides: dict[str, str | bool] = dict(parse_set_options(args.set))
    if args.selection_diagnostics:
        overrides["selection_diagnostics"] = True
    return overrides or None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/quality"))
    parser.add_argument("--worlds", default="report-1,report-2,report-4,othergen-cvact:7")
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--pano", default="256x512", help="written panorama HxW")
    parser.add_argument("--tile", type=int, default=256, help="written tile side (px)")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--modes", default="raw,unsupervised,supervised,semi")
    parser.add_argument("--gt-ratio", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per task")
    parser.add_argument("--jobs", type=int, default=1, help="tasks run at once")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--allow-tuning-worlds", action="store_true")
    parser.add_argument(
        "--selection-diagnostics",
        action="store_true",
        help="measure every selection candidate's val recall (preset selection_diagnostics)",
    )
    add_set_option(parser, "every pipeline task")
    parser.add_argument("--task", default=None, help=argparse.SUPPRESS)  # WORLD/MODE (child)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    worlds = [w for w in args.worlds.split(",") if w]
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            raise SystemExit(f"--modes: unknown mode {m!r}; choose from {MODES}")
    for w in worlds:
        if w.startswith("tune-") and not args.allow_tuning_worlds:
            raise SystemExit(
                f"--worlds: {w} is a tuning world; quality is reported on report-* and "
                "othergen-* worlds only (--allow-tuning-worlds to measure it anyway)"
            )
    if args.task:
        world, mode = args.task.split("/")
        run_task(world, mode, args)
        return 0
    # Worlds first (one process each, rendering uses its own workers), then the tasks.
    for w in worlds:
        make_world(w, args.out / w / "world", args)
    # Mode-major: every world's first modes finish before any world's later ones.
    tasks = [(w, m) for m in modes for w in worlds if not (args.out / w / f"{m}.json").exists()]
    running: list[tuple[subprocess.Popen, str]] = []
    base = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])]
    failed = []
    while tasks or running:
        while tasks and len(running) < max(1, args.jobs):
            w, m = tasks.pop(0)
            log = (args.out / w / f"{m}.log").open("w")
            proc = subprocess.Popen([*base, "--task", f"{w}/{m}"], stdout=log, stderr=log)
            running.append((proc, f"{w}/{m}"))
            print(f"started {w}/{m} (log {args.out / w / f'{m}.log'})", flush=True)
        time.sleep(2)
        for proc, name in list(running):
            if proc.poll() is not None:
                running.remove((proc, name))
                print(f"finished {name}: exit {proc.returncode}", flush=True)
                if proc.returncode:
                    failed.append(name)
    for w in worlds:
        print(format_world(w, load_world(w, args.out)))
    summary = summarise(worlds, args.out)
    summary["settings"] = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "task"
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(format_summary(summary, args))
    print(f"written: {args.out / 'summary.json'}")
    if failed:
        print(f"tasks that crashed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
