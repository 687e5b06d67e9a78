"""How many AMM rounds pay: the stop rule's bar and cap replayed on finished runs.

    .venv/bin/python benchmarks/amm_stop_study.py RUN_DIR [RUN_DIR ...] \\
        --bars 0.05,0.03,0.02,0.01,0,-1 --max-rounds 6,8 --json OUT.json

Each RUN_DIR is a pipeline run (unsupervised or semi) made with ``--set amm_min_growth=-1``
(every extra round runs, up to ``amm_max_rounds``) and ``--set selection_diagnostics=true``
(every candidate's val recall measured), e.g. by ``benchmarks/quality.py --set ...``.
With the ``per_round`` AMM schedule, round r's labels and training do not depend on how many
rounds may follow, so a run that ran every round holds the runs of every smaller cap and
every growth bar: the rule (``ucvgl.services.training.amm.run_amm``) runs extra round r
while the confident-match count grew by at least the bar from the model before round r-1 to
the model before round r, and the label-free criterion then picks among the start model and
the rounds that ran. This script replays that rule for each (bar, cap) and prints the
chosen model's val R@1 per run, the rounds it cost, and the mean over runs.

What it measures: the val recall the pipeline would have reported with that bar and cap,
from the candidates' recalls measured in the run (no new training). Use it on ``tune-*``
worlds only: it chooses a setting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any


def load_candidates(run_dir: Path) -> tuple[list[dict[str, Any]], int, int]:
    """The run's candidates in order (``name``, ``criterion`` with ``confident`` and
    ``score``, ``r1``, ``r5``), its regular rounds and the rounds it ran; SystemExit naming
    what is missing."""
    report_file = run_dir / "report.json"
    if not report_file.exists():
        raise SystemExit(f"{report_file}: no report.json; is {run_dir} a finished pipeline run?")
    report = json.loads(report_file.read_text())
    settings = report.get("settings") or {}
    if settings.get("amm_schedule", "per_round") != "per_round":
        raise SystemExit(
            f"{report_file}: amm_schedule {settings['amm_schedule']!r}; the replay holds for "
            "'per_round' only (a continuous cosine spans every round that may run)"
        )
    stop = report.get("amm_stop") or {}
    candidates = (report.get("selection") or {}).get("candidates") or []
    if not candidates or any("r1" not in c for c in candidates):
        raise SystemExit(
            f"{report_file}: candidates without val recall; run the pipeline with "
            "--set selection_diagnostics=true"
        )
    if stop.get("reason") == "converged":
        raise SystemExit(
            f"{report_file}: its rounds stopped early ({stop.get('detail')}); run it with "
            "--set amm_min_growth=-1 so every extra round runs"
        )
    rows = [
        {
            "name": c["name"],
            "criterion": {
                "confident": int(c["criterion"]["confident"]),
                "score": float(c["criterion"]["score"]),
            },
            "r1": float(c["r1"]),
            "r5": float(c["r5"]),
        }
        for c in candidates
    ]
    return rows, int(stop["regular_rounds"]), len(rows) - 1


def replay(
    rows: list[dict[str, Any]], regular: int, ran: int, bar: float, cap: int
) -> dict[str, Any] | None:
    """The rounds run and the model chosen under (bar, cap), with ``run_amm``'s own growth
    and selection functions; None when the run did not run far enough to tell (it stopped
    below ``cap`` and the rule would go on)."""
    from ucvgl.services.training.amm import confident_growth, select_by_criterion

    rounds = regular
    while rounds < cap:
        r = rounds + 1  # extra round r runs if the count grew over round r-1
        if r - 1 > ran:
            return None
        before, now = (rows[i]["criterion"]["confident"] for i in (r - 2, r - 1))
        if confident_growth(before, now) < bar:
            break
        if r > ran:
            return None
        rounds = r
    pool = rows[: rounds + 1]
    chosen = select_by_criterion(pool)
    return {
        "rounds": rounds,
        "chosen": chosen["name"],
        "r1": chosen["r1"],
        "r5": chosen["r5"],
        "best_r1": max(p["r1"] for p in pool),
    }


def run_labels(run_dirs: list[str]) -> dict[str, str]:
    """Short column names: the fewest trailing path parts that tell the runs apart."""
    for k in range(1, max(len(Path(d).parts) for d in run_dirs) + 1):
        labels = {d: "/".join(Path(d).parts[-k:]) for d in run_dirs}
        if len(set(labels.values())) == len(labels):
            return labels
    return {d: d for d in run_dirs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="pipeline run folders")
    parser.add_argument("--bars", default="0.05,0.03,0.02,0.01,0,-1")
    parser.add_argument("--max-rounds", default="6,8")
    parser.add_argument("--json", type=Path, default=None, help="write the table's data here")
    args = parser.parse_args(argv)
    bars = [float(b) for b in args.bars.split(",") if b]
    caps = [int(c) for c in args.max_rounds.split(",") if c]
    runs = {str(d): load_candidates(d) for d in args.runs}
    results = []
    for cap in caps:
        for bar in bars:
            per_run = {name: replay(*loaded, bar, cap) for name, loaded in runs.items()}
            known = [v["r1"] for v in per_run.values() if v is not None]
            results.append(
                {
                    "bar": bar,
                    "max_rounds": cap,
                    "runs": per_run,
                    "mean_r1": statistics.fmean(known) if len(known) == len(per_run) else None,
                    "mean_rounds": statistics.fmean(
                        v["rounds"] for v in per_run.values() if v is not None
                    )
                    if known
                    else None,
                }
            )
    names = list(runs)
    labels = run_labels(names)
    width = max(24, 2 + max(len(v) for v in labels.values()))
    head = f"{'bar':>6} {'cap':>4} " + "".join(f"{labels[n]:>{width}}" for n in names)
    print(head + f"{'mean R@1':>10}{'rounds':>8}")
    for row in results:
        cells = "".join(
            f"{'(ran too few)':>{width}}"
            if row["runs"][n] is None
            else f"{row['runs'][n]['r1']:>8.1f} ({row['runs'][n]['chosen']}, "
            f"{row['runs'][n]['rounds']} r)".rjust(width)
            for n in names
        )
        mean = "" if row["mean_r1"] is None else f"{row['mean_r1']:.1f}"
        rounds = "" if row["mean_rounds"] is None else f"{row['mean_rounds']:.1f}"
        print(f"{row['bar']:>6g} {row['max_rounds']:>4} {cells}{mean:>10}{rounds:>8}")
    print("\nper run, every candidate (confident mutual matches / val R@1):")
    for name, (rows, regular, ran) in runs.items():
        print(
            f"  {name} ({regular} regular rounds, {ran} run): "
            + ", ".join(f"{r['name']} {r['criterion']['confident']}/{r['r1']:.1f}" for r in rows)
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "candidates": {n: rows for n, (rows, _, _) in runs.items()},
            "results": results,
        }
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
