"""Run more AMM rounds on a finished unsupervised run, in a copy of its folder.

    .venv/bin/python benchmarks/extend_amm_run.py RUN_DIR COPY_DIR --world WORLD_DIR \\
        --format cvact --max-rounds 12 [--init-from SOURCE_RUN]

For the AMM stop study (``benchmarks/amm_stop_study.py``): RUN_DIR must have been made with
``amm_min_growth=-1`` (every extra round run) and the ``per_round`` schedule, where round r
does not depend on how many rounds may follow. The copy (hard links: nothing in RUN_DIR is
written) keeps the finished stages and rounds; its selection, evaluation and index are
removed, its saved ``amm_max_rounds`` is raised, and the pipeline resumes: rounds past the
old cap run, then the label-free selection (with selection diagnostics), evaluation and
index, as a run made with the higher cap from the start would. Prints the new val R@1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

REMOVED = ("model", "index", "evaluation.json", "report.json", "amm.json", "bench.json")
"""What the copy drops so that the pipeline selects, evaluates and indexes again."""


def make_copy(run_dir: Path, copy_dir: Path, max_rounds: int) -> None:
    """Hard-link ``run_dir`` to ``copy_dir`` and raise its saved ``amm_max_rounds``."""
    saved = json.loads((run_dir / "run.json").read_text())
    settings = saved.get("preset_settings") or {}
    if settings.get("amm_min_growth") != -1 or settings.get("amm_schedule") != "per_round":
        raise SystemExit(
            f"{run_dir}/run.json: needs amm_min_growth -1 and amm_schedule 'per_round' "
            f"(got {settings.get('amm_min_growth')!r}, {settings.get('amm_schedule')!r})"
        )
    if max_rounds < int(settings.get("amm_max_rounds") or 0):
        raise SystemExit(f"--max-rounds {max_rounds} is below the run's own cap")
    copy_dir.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(run_dir), str(copy_dir)], check=True)
    for name in REMOVED:
        path = copy_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    settings["amm_max_rounds"] = max_rounds
    run_file = copy_dir / "run.json"
    run_file.unlink()  # a new file: the hard-linked one is RUN_DIR's
    run_file.write_text(json.dumps(saved, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("copy_dir", type=Path)
    parser.add_argument("--world", type=Path, required=True, help="the run's dataset folder")
    parser.add_argument("--format", required=True, help="the dataset layout")
    parser.add_argument("--max-rounds", type=int, required=True)
    parser.add_argument("--init-from", type=Path, default=None, help="the run's source model")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if not args.copy_dir.exists():
        make_copy(args.run_dir, args.copy_dir, args.max_rounds)
    import torch

    from ucvgl.commands._progress import TqdmProgress
    from ucvgl.services.pipeline import run_pipeline
    from ucvgl.services.presets import get_preset

    torch.set_num_threads(args.threads)
    report = run_pipeline(
        args.world,
        args.format,
        "unsupervised",
        get_preset(args.preset),
        args.copy_dir,
        device="cpu",
        seed=0,
        init_from=args.init_from,
        progress=TqdmProgress(),
        overrides={
            "amm_min_growth": -1,
            "amm_max_rounds": args.max_rounds,
            "selection_diagnostics": True,
        },
    )
    print(f"val R@1 {report['recall']['r1']:.1f} with up to {args.max_rounds} rounds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
