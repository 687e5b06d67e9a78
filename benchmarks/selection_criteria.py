"""Label-free selection criteria against true recall, per candidate of finished runs.

    .venv/bin/python benchmarks/selection_criteria.py runs/adaptation/runs/unsupervised \\
        runs/quality_report/report-2/unsupervised --out runs/selection_criteria.json

For every AMM selection candidate of each run (the start model and each round's model;
the run must have been made with ``selection_diagnostics`` on, so each candidate's true
val R@1 is in its report), computes on the UNLABELLED training pool:
- ``confident``: the pipeline's criterion (mutual matches with margin >= T; its score
  adds the mean margin), recomputed here;
- ``mutual``: every mutual nearest-neighbour pair, whatever its margin;
- ``decoy_pairs``: mutual matches kept at an estimated false share <= 0.2 when the tiles
  compete with decoys (the same tiles turned 180 degrees), the stage checks' count;
- ``decoy_share``: mutual matches with decoys / with real tiles (lower is better; its
  negative is correlated);
and the Spearman correlation of each with the candidates' true R@1, per run. Nothing here
changes a run. Embeddings come from the run's own cache where AMM or the checks made them.
Prints a table and writes ``--out`` and ``benchmarks/results/selection_criteria.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, print_table  # noqa: E402

CRITERIA = ("confident", "mutual", "decoy_pairs", "neg_decoy_share")
DECOY_MAX_FDR = 0.2


def candidate_criteria(run, candidate: dict, threshold_T: float) -> dict:
    """The label-free numbers of one candidate model on the run's training pool."""
    from ucvgl.services.health import DECOY_DIR, pool_and_decoys
    from ucvgl.services.pixel_prior import target_decoy_pairs
    from ucvgl.services.training.amm import label_free_criterion
    from ucvgl.services.training.trainer import load_weights_into

    load_weights_into(run.model, Path(candidate["path"]))
    pool, d = pool_and_decoys(
        run.model,
        run.train_split,
        run.preset,
        label="criteria",
        decoy_dir=run.run_dir / DECOY_DIR,
        device=run.device,
        cache_dir=run.embedding_cache_dir,
        fake_paths=run.amm_queries(),
    )
    td = target_decoy_pairs(
        pool.ground, pool.satellite, d, max_fdr=DECOY_MAX_FDR, device=run.device
    )
    crit = label_free_criterion(pool.matches, threshold_T)
    return {
        "confident": int(crit["confident"]),
        "mutual": int(pool.matches.num_pairs),
        "decoy_pairs": int(td.num_pairs),
        "neg_decoy_share": -float(td.mutual_decoys) / max(1, int(td.mutual_targets)),
        "mutual_targets": int(td.mutual_targets),
        "mutual_decoys": int(td.mutual_decoys),
    }


def measure_run(run_dir: Path) -> dict:
    """Every candidate's criteria and true recall, and the Spearman of each criterion."""
    from ucvgl.commands.pipeline import _open_run
    from ucvgl.services.progress import NullProgress
    from ucvgl.services.selection_diagnostics import spearman

    report = json.loads((run_dir / "report.json").read_text())
    selection = report.get("selection") or {}
    candidates = selection.get("candidates") or []
    if not candidates or any("r1" not in c for c in candidates):
        raise SystemExit(
            f"{run_dir}: no candidate recall in report.json; run it with "
            "--set selection_diagnostics=true"
        )
    run = _open_run(run_dir, NullProgress(), device="cpu")
    threshold_T = run.preset.threshold_for(run.dataset.format)
    rows = []
    for c in candidates:
        began = time.perf_counter()
        rows.append(
            {
                "run": run_dir.name if run_dir.name != "unsupervised" else str(run_dir),
                "candidate": c["name"],
                "r1": c["r1"],
                **candidate_criteria(run, c, threshold_T),
                "confident_in_report": (c.get("criterion") or {}).get("confident"),
                "chosen": c["name"] == selection.get("chosen"),
                "seconds": round(time.perf_counter() - began, 1),
            }
        )
    r1 = [r["r1"] for r in rows]
    correlations = {k: spearman([r[k] for r in rows], r1) for k in CRITERIA}
    return {"run_dir": str(run_dir), "candidates": rows, "spearman_r1": correlations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="finished run folders")
    parser.add_argument("--out", type=Path, default=Path("runs/selection_criteria.json"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    results = [measure_run(r) for r in args.runs]
    for res in results:
        print(f"\n{res['run_dir']}")
        print_table(
            res["candidates"], ["candidate", "r1", *CRITERIA, "confident_in_report", "chosen"]
        )
    rows = [
        {"run": res["run_dir"], **{k: res["spearman_r1"][k] for k in CRITERIA}} for res in results
    ]
    print("\nSpearman(criterion, true val R@1) over each run's candidates:")
    table = print_table(rows, ["run", *CRITERIA])
    out = {"decoy_max_fdr": DECOY_MAX_FDR, "runs": results, "table": table}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "selection_criteria.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
