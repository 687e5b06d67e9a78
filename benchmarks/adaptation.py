"""Adaptation to a new region without labels (issue 13 part 1): zero-shot, adapted, scratch.

    .venv/bin/python benchmarks/adaptation.py --out runs/adaptation \\
        --source-world report-4 --target-world report-1 --train 300 --val 150 --jobs 2

A source model is trained with all its pairs (``supervised``) on the source world (a CVUSA
layout by default). On the target world (another layout, camera and look) the val recall
of:
- ``zero_shot``: the source model as it is;
- ``adapted``: ``ucvgl pipeline --mode unsupervised --init-from SOURCE`` (no target pair;
  the preset's ``init_cold_start`` "auto": a label-free source check decides whether the
  cold start runs first, from the source's weights, or AMM starts from the source);
- ``adapted_skip``: the same with ``init_cold_start`` "skip" (AMM from the source as it is,
  never a cold start);
- ``unsupervised``: the unsupervised pipeline from scratch on the target;
- ``supervised``: every target training pair.
Each run is a pipeline run folder under ``OUT`` (resumable: the same command continues).
The adapted runs start with a copy of the scratch run's label-free target inputs (BEVs,
projection prior, CycleGAN, fakes: the same preset, seed and data make the same ones), so
their minutes leave them out; they wait for them (and for the source model).
Runs go in ``--jobs`` processes of one torch thread each. ``--fixed-budget`` turns off the
preset's convergence budgets (``max_epoch_factor=1``, ``amm_max_rounds=None``) to bound the
time. ``--selection-diagnostics`` makes the AMM runs measure every selection candidate's
true val recall and the criterion's rank correlation with it (issue 13 part 3; measurement
only). ``--set KEY=VALUE`` (repeatable) overrides a preset setting in every run. Prints the
table and writes ``OUT/adaptation.json`` and ``benchmarks/results/<--results>``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, add_set_option, print_table, selection_summary  # noqa: E402

RECALL_KEYS = ("r1", "r5", "r10", "r1p")
TARGET_RUNS = ("unsupervised", "adapted", "supervised", "adapted_skip")
ADAPTED_RUNS = ("adapted", "adapted_skip")
TASK_MODES = {"source": "supervised", "adapted": "unsupervised", "adapted_skip": "unsupervised"}
"""The pipeline mode of each task that is not named after its mode."""
RUN_NAMES = {
    "adapted": "adapted (--init-from, source check 'auto')",
    "adapted_skip": "adapted, no cold start ('skip')",
    "unsupervised": "unsupervised from scratch",
    "supervised": "supervised (all target pairs)",
}
"""Each target run's row name in the table."""


def preset_of(args: argparse.Namespace, task: str = "source"):
    """The preset of ``task`` (the same encoder in every run, so the source fits)."""
    from ucvgl.services.presets import get_preset

    preset = get_preset(args.preset)
    if args.fixed_budget:
        preset = preset.replace(
            name=f"{preset.name}-fixed", max_epoch_factor=1.0, amm_max_rounds=None
        )
    if args.selection_diagnostics:  # measurement only: never changes the run's choices
        preset = preset.replace(selection_diagnostics=True)
    if task == "adapted_skip":
        preset = preset.replace(init_cold_start="skip")
    if args.set:
        from ucvgl.services.preset_overrides import apply_overrides, parse_set_options

        preset = apply_overrides(preset, parse_set_options(args.set))
    return preset


def world_dir(out: Path, name: str) -> Path:
    return out / "worlds" / name


def make_world(name: str, out: Path, args: argparse.Namespace) -> Path:
    from ucvgl.services.synth.family import generate_named_world

    meta = world_dir(out, name) / "synth_meta.json"
    if meta.is_file() and json.loads(meta.read_text()).get("complete"):  # made already
        return world_dir(out, name)
    pano = tuple(int(v) for v in args.pano.split("x"))
    return generate_named_world(
        name, world_dir(out, name), args.train, args.val, pano_size=pano, sat_size=args.tile
    )


def world_format(name: str) -> str:
    from ucvgl.services.synth.family import get_world

    return get_world(name).format


def run_one(task: str, args: argparse.Namespace) -> dict:
    """One pipeline run (in this process): 'source', or a target run of TARGET_RUNS."""
    import torch

    from ucvgl.services.pipeline import run_pipeline

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    world = args.source_world if task == "source" else args.target_world
    mode = TASK_MODES.get(task, task)
    began = time.perf_counter()
    report = run_pipeline(
        world_dir(out, world),
        world_format(world),
        mode,
        preset_of(args, task),
        out / "runs" / task,
        device="cpu",
        seed=args.seed,
        init_from=out / "runs" / "source" if task in ADAPTED_RUNS else None,
    )
    report["wall_minutes"] = (time.perf_counter() - began) / 60.0
    (out / "runs" / task / "bench.json").write_text(json.dumps(report, indent=1))
    return report


def zero_shot(args: argparse.Namespace, match_layout: bool = False) -> dict | None:
    """Val recall of the source model on the target world, as it is.

    ``match_layout``: the target's panoramas cut to the source's elevations, as an adapted
    run reads them (``ucvgl.services.panorama_view``); None when the layouts agree.
    """
    import torch

    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.evaluation import recall_at_k
    from ucvgl.services.models import load_model
    from ucvgl.services.panorama_view import source_view_rows
    from ucvgl.services.training.embed import embed_split

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    model, _ = load_model(out / "runs" / "source" / "model" / "selected.pt")
    model.eval()
    target = load_dataset(world_dir(out, args.target_world), world_format(args.target_world))
    if match_layout:
        source_world = args.source_world
        source = {"format": world_format(source_world), "data": world_dir(out, source_world)}
        _, rows = source_view_rows(source, None, target)
        if rows is None:
            return None
        model.config = model.config.model_copy(update={"ground_rows": rows})
    split = target.split("val")
    g = embed_split(model, split, "ground", batch_size=64)
    s = embed_split(model, split, "satellite", batch_size=64)
    return recall_at_k(g, s, split.positives)


SHARED_INPUTS = ("bev", "prior.json", "prior_pairs.npz", "cyclegan", "fake")
"""Label-free target inputs the adapted runs take from the scratch unsupervised run."""


def inputs_ready(out: Path) -> bool:
    """Whether the scratch unsupervised run has made its fakes (its 'translate' stage)."""
    times = out / "runs" / "unsupervised" / "stage_times.json"
    return times.exists() and "translate" in json.loads(times.read_text())


def share_inputs(out: Path, task: str) -> None:
    """Copy :data:`SHARED_INPUTS` into an adapted run's folder (once)."""
    src, dst = out / "runs" / "unsupervised", out / "runs" / task
    for name in SHARED_INPUTS:
        if (src / name).exists() and not (dst / name).exists():
            dst.mkdir(parents=True, exist_ok=True)
            if (src / name).is_dir():
                shutil.copytree(src / name, dst / name)
            else:
                shutil.copyfile(src / name, dst / name)


def launch(tasks: list[str], args: argparse.Namespace) -> None:
    """Run ``tasks`` in at most ``args.jobs`` child processes of this script.

    A finished task (its ``bench.json`` exists) is skipped; the adapted runs wait for
    ``source`` and for the scratch run's fakes.
    """
    out = Path(args.out)

    def done(task: str) -> bool:
        return (out / "runs" / task / "bench.json").exists()

    todo = [t for t in tasks if not done(t)]
    running: list[tuple[str, subprocess.Popen]] = []
    base = [sys.executable, __file__, *sys.argv[1:]]
    while todo or running:
        ready = [t for t in todo if t not in ADAPTED_RUNS or (done("source") and inputs_ready(out))]
        while ready and len(running) < args.jobs:
            task = ready.pop(0)
            todo.remove(task)
            if task in ADAPTED_RUNS:
                share_inputs(out, task)
            print(f"start {task}", flush=True)
            log = open(out / f"{task}.log", "w")  # noqa: SIM115 - the child writes it
            running.append(
                (task, subprocess.Popen([*base, "--task", task], stdout=log, stderr=log))
            )
        time.sleep(5)
        for item in list(running):
            task, proc = item
            if proc.poll() is not None:
                running.remove(item)
                print(f"done {task} (exit {proc.returncode})", flush=True)
                if proc.returncode:
                    raise SystemExit(f"{task} failed: see {out / (task + '.log')}")


FORMER_NAMES = {"adapted_skip": ("adapted (--init-from, no target pair)",)}
"""Older row names in earlier adaptation JSONs (before the source check, the 'adapted' row
was AMM from the source without a cold start: today's 'skip')."""


def earlier_row(previous: dict | None, task: str) -> dict | None:
    """``task``'s row of an earlier adaptation JSON (``--previous``), marked as such."""
    names = (RUN_NAMES[task], *FORMER_NAMES.get(task, ()))
    for row in (previous or {}).get("rows", []):
        if row["run"] in names:
            return {**row, "run": RUN_NAMES[task], "source check": "", "measured": "earlier run"}
    return None


def source_check_cell(report: dict) -> str:
    """'pairs source/prior -> cold start|skip' of an adapted run's source check, or ''."""
    check = (report.get("init_from") or {}).get("check")
    if not check:
        return ""
    then = "cold start" if check["cold_start"] else "skip"
    if check["source_pairs"] is None:
        return f"{check['setting']} -> {then}"
    return f"{check['source_pairs']}/{check['prior_pairs']} -> {then}"


def run_minutes(run_dir: Path, report: dict) -> float:
    """The run's minutes: the sum of its stage times (kept across a resumed run), else wall."""
    times = run_dir / "stage_times.json"
    if times.is_file():
        return sum(json.loads(times.read_text()).values()) / 60.0
    return report["wall_minutes"]


def run_view_zero_shot(report: dict | None) -> dict | None:
    """The source as the adapted run read the target (rows cut, tile scale), untrained.

    The adapted run's 'start' candidate when AMM started from the source (no cold start)
    and its selection diagnostics measured it; None otherwise.
    """
    check = ((report or {}).get("init_from") or {}).get("check") or {}
    candidates = ((report or {}).get("selection") or {}).get("candidates") or []
    if check.get("cold_start") is not False or not candidates or "r1" not in candidates[0]:
        return None
    view = (report["init_from"].get("ground_view") or {}).get("rows")
    scale = check.get("satellite_scale")
    return {
        "run": f"zero_shot, the adapted run's view (rows {'cut' if view else 'whole'}, "
        f"tile scale {scale or 1:g})",
        "r1": candidates[0]["r1"],
        "r5": candidates[0].get("r5"),
        "measured": "this run",
    }


def first_round(report: dict) -> str:
    rounds = report.get("rounds") or []
    if not rounds or rounds[0].get("correct") is None:
        return ""
    r = rounds[0]
    return f"{r['correct']}/{r['labels']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/adaptation"))
    parser.add_argument("--source-world", default="report-4")
    parser.add_argument("--target-world", default="report-1")
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--val", type=int, default=150)
    parser.add_argument("--pano", default="128x256", help="written panorama HxW")
    parser.add_argument("--tile", type=int, default=128, help="written tile side")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--fixed-budget", action="store_true")
    parser.add_argument(
        "--selection-diagnostics",
        action="store_true",
        help="measure every AMM candidate's val recall (preset selection_diagnostics)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--tasks",
        default="source,unsupervised,adapted,supervised,adapted_skip",
        help="the runs to make (source and unsupervised always: the others need them)",
    )
    parser.add_argument(
        "--previous",
        type=Path,
        default=None,
        help="an earlier adaptation JSON of the same worlds and sizes: without 'supervised' "
        "in --tasks, its supervised row is used, marked 'earlier run'",
    )
    add_set_option(parser, "every run")
    parser.add_argument(
        "--results", default="adaptation.json", help="file name in benchmarks/results/"
    )
    parser.add_argument("--task", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.task:
        run_one(args.task, args)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.previous.read_text()) if args.previous else None
    if previous is not None:
        same = ("source_world", "target_world", "train", "val", "pano", "tile", "preset", "seed")
        differ = [k for k in same if previous["args"].get(k) != str(getattr(args, k))]
        if differ:
            raise SystemExit(f"--previous {args.previous}: other settings ({', '.join(differ)})")
    began = time.perf_counter()
    for name in (args.source_world, args.target_world):
        make_world(name, args.out, args)
    print(f"worlds: {(time.perf_counter() - began) / 60:.1f} min", flush=True)
    # the source first (the adapted run needs it), beside the longest target run
    wanted = {"source", "unsupervised", *(t for t in args.tasks.split(",") if t)}
    unknown = wanted - {"source", *TARGET_RUNS}
    if unknown:
        raise SystemExit(f"--tasks: unknown {sorted(unknown)}; choose from {TARGET_RUNS}")
    launch([t for t in ("source", *TARGET_RUNS) if t in wanted], args)
    reports = {
        t: json.loads((args.out / "runs" / t / "bench.json").read_text())
        for t in ("source", *TARGET_RUNS)
        if t in wanted
    }
    rows = [{"run": "zero_shot (source model as it is)", **zero_shot(args)}]
    matched = zero_shot(args, match_layout=True)
    if matched is not None:
        rows.append({"run": "zero_shot, target cut to the source's layout", **matched})
    viewed = run_view_zero_shot(reports.get("adapted"))
    if viewed is not None:
        rows.append(viewed)
    for t in ("adapted", "adapted_skip", "unsupervised", "supervised"):
        if t not in reports:
            # only the supervised row carries over: the others depend on the method
            row = earlier_row(previous, t) if t == "supervised" else None
            if row is not None:
                rows.append(row)
            continue
        r = reports[t]
        rows.append(
            {
                "run": RUN_NAMES[t],
                **{k: (r["recall"] or {}).get(k) for k in RECALL_KEYS},
                "round 1 correct": first_round(r),
                "source check": source_check_cell(r),
                "minutes": run_minutes(args.out / "runs" / t, r),
                "measured": "this run",
            }
        )
    src = reports["source"]
    print(
        f"\nsource: {args.source_world} ({world_format(args.source_world)}), supervised, val "
        f"R@1 {src['recall']['r1']:.1f} on its own world, {src['wall_minutes']:.1f} min"
    )
    print(
        f"target: {args.target_world} ({world_format(args.target_world)}), "
        f"{args.train}/{args.val} locations, val R@1 (chance {100 / args.val:.2f}%):\n"
    )
    columns = ["run", *RECALL_KEYS, "round 1 correct", "source check", "minutes", "measured"]
    table = print_table(rows, columns)
    diagnostics = {
        t: selection_summary(reports[t].get("selection"))
        for t in ("adapted", "adapted_skip", "unsupervised")
        if t in reports
    }
    result = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "source": {"world": args.source_world, "recall": src["recall"]},
        "rows": rows,
        "table": table,
        "selection_diagnostics": diagnostics,
        "total_minutes": (time.perf_counter() - began) / 60.0,
    }
    (args.out / "adaptation.json").write_text(json.dumps(result, indent=1))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / args.results).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
