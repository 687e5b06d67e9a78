"""``ucvgl pipeline | cyclegan | train | match | evaluate | demo``: the learning pipeline.

``pipeline`` runs every stage of a mode into a run folder; the stage commands work on an
existing run folder (its ``run.json`` names the dataset, mode, preset and resolved
settings) or start one when ``--data``/``--format`` are given. Every command resumes what
a previous one left. ``--set key=value``, ``--config FILE.yaml`` and ``--weights`` change
preset settings (``ucvgl.services.preset_overrides``); on an existing run folder they must
agree with its saved settings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

if TYPE_CHECKING:
    from ucvgl.services.pipeline import PipelineRun
    from ucvgl.services.progress import Progress

T = TypeVar("T")

MODE_HELP = "unsupervised, semi or supervised."
STAGE_FAILED_EXIT = 3
"""Exit status when a label-free stage check stopped the run (1: any other error)."""
PRESET_HELP = "tiny (tests), cpu (demo, ~1,000 locations on 2 cores), paper-small, paper-base."


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_summary(report: dict[str, Any]) -> str:
    """A plain-text summary of a report: recall, AMM rounds and stage times."""
    lines = [f"mode {report['mode']}, preset {report['preset']}, run {report.get('run_dir', '')}"]
    source = report.get("init_from")
    if source:
        lines.append(
            f"started from {source['model_file']} (preset {source.get('preset')}, backbone "
            f"{source.get('backbone')}, sha256 {source['sha256'][:12]})"
        )
    recall = report.get("recall")
    if recall:
        lines.append("")
        lines.append(
            f"{'R@1':>8} {'R@5':>8} {'R@10':>8} {'R@1%':>8}   (percent, "
            f"{report['dataset'].get('eval_split')} split)"
        )
        lines.append(" ".join(f"{_fmt(recall.get(k)):>8}" for k in ("r1", "r5", "r10", "r1p")))
        for name, r in (report.get("recall_per_split") or {}).items():
            if r and name != report["dataset"].get("eval_split"):
                values = " ".join(f"{_fmt(r.get(k)):>8}" for k in ("r1", "r5", "r10", "r1p"))
                lines.append(f"{values}   ({name} split)")
    else:
        lines.append("recall: not evaluated (no evaluation split with ground truth)")
    if report.get("rounds"):
        lines.append("")
        lines.append(
            f"{'round':>5} {'tau':>8} {'mutual':>7} {'labels':>7} {'correct':>8} {'score':>9}"
        )
        for r in report["rounds"]:
            crit = r.get("criterion_before") or {}
            lines.append(
                f"{r['round']:>5} {_fmt(r['threshold'], 4):>8} {r['mutual']:>7} "
                f"{r['labels']:>7} {_fmt(r['correct']):>8} {_fmt(crit.get('score')):>9}"
            )
        sel = (report.get("selection") or {}).get("selected") or {}
        if sel:
            lines.append(f"selected (label-free): {sel.get('name')}")
    if report.get("health"):
        from ucvgl.services.health import format_checks

        lines.append("")
        lines.append("stage checks (label-free):")
        lines.extend(f"  {line}" for line in format_checks(report["health"]))
    if report.get("status") == "failed":
        lines.append(f"STATUS: FAILED at stage {(report.get('failure') or {}).get('stage')}")
    lines.append("")
    lines.append(f"{'stage':<12} {'seconds':>9}")
    for s in report.get("stages", []):
        lines.append(f"{s['name']:<12} {s['seconds']:>9.1f}")
    total = sum(s["seconds"] for s in report.get("stages", []))
    lines.append(f"{'total':<12} {total:>9.1f}")
    return "\n".join(lines)


def cli_overrides(sets: list[str] | None, weights: str | None) -> dict[str, Any]:
    """The ``--set key=value`` options (and ``--weights``, which wins) as one mapping."""
    from ucvgl.services.preset_overrides import parse_set_options

    overrides: dict[str, Any] = parse_set_options(sets)
    if weights is not None:
        overrides["weights"] = weights
    return overrides


def _open_run(
    run: Path,
    progress: Progress,
    *,
    device: str | None,
    data: Path | None = None,
    format: str | None = None,
    mode: str | None = None,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    config: Path | None = None,
    eval_splits: list[str] | None = None,
) -> PipelineRun:
    """A PipelineRun for ``run`` from its run.json, or from the options for a new run.

    An option left None takes the run.json value (then the default: mode unsupervised,
    preset cpu, the run's evaluation splits); gt_ratio, seed, init_from and the VIGOR
    protocol always come from run.json. The preset's settings are
    the saved ones of the run folder (``preset_settings``), then ``config`` and
    ``overrides``; a change to a saved setting is refused (``check_run_settings``).
    """
    import json

    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.pipeline import RUN_FILE, PipelineRun, run_folder_preset
    from ucvgl.shared.errors import ConfigError

    saved: dict[str, Any] = {}
    if (run / RUN_FILE).exists():
        saved = json.loads((run / RUN_FILE).read_text())
    data = data or (Path(saved["data"]) if saved.get("data") else None)
    format = format or saved.get("format")
    if data is None or format is None:
        raise ConfigError(f"{run} is not a run folder yet: give --data and --format to start one")
    options = {"protocol": saved["vigor_protocol"]} if saved.get("vigor_protocol") else {}
    dataset = load_dataset(data, format, **options)
    return PipelineRun(
        dataset,
        run,
        mode=mode or saved.get("mode") or "unsupervised",
        preset=run_folder_preset(run, dataset.format, preset, overrides, config),
        gt_ratio=saved.get("gt_ratio") or 0.1,
        device=device,
        progress=progress,
        seed=saved.get("seed", 0),
        init_from=saved.get("init_from"),
        eval_splits=eval_splits or saved.get("eval_splits") or None,
    )


def _run_on(
    run: Path,
    work: Callable[[PipelineRun, Progress], T],
    *,
    device: str | None,
    data: Path | None = None,
    format: str | None = None,
    mode: str | None = None,
    preset: str | None = None,
    sets: list[str] | None = None,
    config: Path | None = None,
    weights: str | None = None,
    eval_splits: list[str] | None = None,
) -> T:
    """Run ``work(pipeline_run, progress)`` on the run folder ``run`` under :func:`_run_cli`.

    ``device``, the options that can start a new run and the setting overrides (``--set``,
    ``--config``, ``--weights``) go to :func:`_open_run`.
    """

    def go(p: Progress) -> T:
        overrides = cli_overrides(sets, weights)
        r = _open_run(
            run,
            p,
            device=device,
            data=data,
            format=format,
            mode=mode,
            preset=preset,
            overrides=overrides,
            config=config,
            eval_splits=eval_splits,
        )
        return work(r, p)

    return _run_cli(go)


def _run_cli(fn, title: str = "run") -> Any:
    """Run ``fn(progress)`` with progress bars; UcvglErrors become a message and exit 1.

    The bars (:class:`~ucvgl.commands._progress.CliProgress`): one overall line titled
    ``title`` (percent, stage, ETA as the job API gives them) and one per stage.

    A stage check that stopped the run (``StageFailed``) prints its message and the report's
    path and exits with :data:`STAGE_FAILED_EXIT`.
    """
    from ucvgl.commands._progress import CliProgress
    from ucvgl.services.health import StageFailed
    from ucvgl.shared.errors import UcvglError

    progress = CliProgress(title)
    try:
        result = fn(progress)
        progress.finish()
        return result
    except StageFailed as exc:
        progress.close()
        typer.echo(f"STAGE FAILED: {exc}", err=True)
        if exc.report_path is not None:
            typer.echo(f"report (status failed): {exc.report_path}", err=True)
        raise typer.Exit(code=STAGE_FAILED_EXIT) from None
    except UcvglError as exc:
        progress.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    except KeyboardInterrupt:
        progress.close()
        typer.echo("interrupted: run the same command again to continue", err=True)
        raise typer.Exit(code=130) from None
    finally:
        progress.close()


RUN_OPT = typer.Option(..., "--run", help="The run folder.")
DATA_OPT = typer.Option(None, "--data", help="Dataset root (only to start a new run folder).")
FORMAT_OPT = typer.Option(None, "--format", help="cvusa, cvact, vigor or folder (new run).")
MODE_OPT = typer.Option(None, "--mode", help=MODE_HELP + " (new run)")
PRESET_OPT = typer.Option(None, "--preset", help=PRESET_HELP + " (new run)")
DEVICE_OPT = typer.Option(None, "--device", help="cpu, cuda, cuda:N (default: settings).")
EVAL_SPLIT_HELP = (
    "Evaluation split(s), repeatable or comma-separated: cvusa val; cvact val, test "
    "(CVACT_test, ANU_data_test/); vigor same_area or cross_area (also picks the training "
    "pool); folder val, test. Default: val, else test."
)
EVAL_SPLIT_OPT = typer.Option([], "--eval-split", metavar="SPLIT", help=EVAL_SPLIT_HELP)
SET_OPT = typer.Option(
    None,
    "--set",
    help="Change a preset setting, key=value (repeatable), e.g. --set batch_size=64 "
    "--set ground_size=112,224; `ucvgl presets show NAME` lists the settings.",
)
CONFIG_OPT = typer.Option(
    None, "--config", help="YAML file of preset settings (key: value); --set wins over it."
)
WEIGHTS_OPT = typer.Option(
    None,
    "--weights",
    help="Backbone starting weights: none (random init), hub, hub:TAG (timm's pretrained "
    "tag via UCVGL_WEIGHTS_DIR or the Hugging Face hub cache), a weights file, or a folder "
    "(FOLDER or FOLDER:TAG). Default: the preset's (paper-*: hub:fb_in22k_ft_in1k[_384]).",
)


def register(app: typer.Typer) -> None:
    """Add the pipeline commands to ``app``."""

    @app.command("pipeline")
    def pipeline(
        data: Path = typer.Option(..., "--data", help="Dataset root folder."),
        format: str = typer.Option(..., "--format", help="cvusa, cvact, vigor or folder."),
        mode: str = typer.Option("unsupervised", "--mode", help=MODE_HELP),
        gt_ratio: float = typer.Option(0.1, "--gt-ratio", help="Known share of pairs (semi)."),
        preset: str = typer.Option("cpu", "--preset", help=PRESET_HELP),
        out: Path = typer.Option(..., "--out", help="Run folder (resumed when it exists)."),
        device: str = DEVICE_OPT,
        seed: int = typer.Option(0, "--seed", help="Random seed."),
        sets: list[str] = SET_OPT,
        config: Path = CONFIG_OPT,
        weights: str = WEIGHTS_OPT,
        init_from: Path = typer.Option(
            None,
            "--init-from",
            help="Start from this finished run's selected model (RUN_DIR/model/selected.pt) "
            "instead of random weights; unsupervised: no cold start (adaptation).",
        ),
        eval_split: list[str] = EVAL_SPLIT_OPT,
    ) -> None:
        """Run every stage of a mode; running it again continues where it stopped.

        Unsupervised: projection, CycleGAN, cold start, AMM rounds, selection, evaluation,
        index. Semi: warm-up on known pairs, AMM rounds. Supervised: all true pairs.
        With --init-from every mode starts from that run's model (unsupervised: AMM
        rounds on this dataset's unlabelled imagery, without the cold start).
        """
        from ucvgl.services.pipeline import run_pipeline
        from ucvgl.shared.config import get_settings

        get_settings().apply_torch_threads()
        report = _run_cli(
            lambda p: run_pipeline(
                data,
                format,
                mode,
                preset,
                out,
                gt_ratio=gt_ratio,
                device=device,
                progress=p,
                seed=seed,
                overrides=cli_overrides(sets, weights),
                config_file=config,
                init_from=init_from,
                eval_splits=eval_split or None,
            ),
            title=f"pipeline ({mode})",
        )
        typer.echo(format_summary(report))
        typer.echo(f"report: {out / 'report.json'}")

    @app.command("cyclegan")
    def cyclegan(
        run: Path = RUN_OPT,
        data: Path = DATA_OPT,
        format: str = FORMAT_OPT,
        preset: str = PRESET_OPT,
        device: str = DEVICE_OPT,
        sets: list[str] = SET_OPT,
        config: Path = CONFIG_OPT,
        weights: str = WEIGHTS_OPT,
    ) -> None:
        """BEV projection, BEV -> satellite CycleGAN and fake satellites of a run."""

        def work(r, p):
            r._timed("project", r.project, p)
            r._timed("cyclegan", r.cyclegan, p)
            return r._timed("translate", r.translate, p)

        fakes = _run_on(
            run,
            work,
            device=device,
            data=data,
            format=format,
            preset=preset,
            sets=sets,
            config=config,
            weights=weights,
        )
        typer.echo(f"{len(fakes)} fake satellite images in {run / 'fake'}")

    @app.command("train")
    def train(
        run: Path = RUN_OPT,
        stage: str = typer.Option(
            "all",
            "--stage",
            help="cold_start, amm, semi_warmup, supervised, or all (up to the selection).",
        ),
        data: Path = DATA_OPT,
        format: str = FORMAT_OPT,
        mode: str = MODE_OPT,
        preset: str = PRESET_OPT,
        device: str = DEVICE_OPT,
        sets: list[str] = SET_OPT,
        config: Path = CONFIG_OPT,
        weights: str = WEIGHTS_OPT,
    ) -> None:
        """Train a run's encoders (the stages before are run or reused)."""
        names = {"cold_start", "amm", "semi_warmup", "supervised", "all"}
        if stage not in names:
            raise typer.BadParameter(f"--stage must be one of {sorted(names)}")

        def work(r, p):
            from ucvgl.shared.errors import ConfigError

            target = "select" if stage == "all" else stage
            if target not in r.stages():
                raise ConfigError(f"--stage {stage} is not a stage of this run ({r.stages()})")
            r.backbone_weights()  # before any work: missing weights stop here
            return r._timed(target, getattr(r, target), p)

        result = _run_on(
            run,
            work,
            device=device,
            data=data,
            format=format,
            mode=mode,
            preset=preset,
            sets=sets,
            config=config,
            weights=weights,
        )
        typer.echo(f"done: {result if not isinstance(result, dict) else 'AMM rounds finished'}")

    @app.command("match")
    def match(
        run: Path = RUN_OPT,
        round: int = typer.Option(None, "--round", min=1, help="Run rounds up to this one."),
        device: str = DEVICE_OPT,
        sets: list[str] = SET_OPT,
        config: Path = CONFIG_OPT,
    ) -> None:
        """Pseudo-label rounds (AMM) of a run: print mutual matches, labels and precision."""

        def work(r, p):
            return r._timed("amm", lambda pr: r.amm(pr, only_round=round), p)

        result = _run_on(run, work, device=device, sets=sets, config=config)
        typer.echo(
            format_summary(
                {
                    "mode": "",
                    "preset": "",
                    "rounds": result["rounds"],
                    "selection": {"selected": result["selected"]},
                    "recall": None,
                    "dataset": {},
                }
            )
        )

    @app.command("evaluate")
    def evaluate(
        run: Path = RUN_OPT,
        device: str = DEVICE_OPT,
        sets: list[str] = SET_OPT,
        config: Path = CONFIG_OPT,
        eval_split: list[str] = EVAL_SPLIT_OPT,
    ) -> None:
        """Recall@1/5/10/1% of a run's selected model on its evaluation split(s).

        Without --eval-split: the splits the run was started with. Splits evaluated before
        are not evaluated again; report.json's recall_per_split lists them all.
        """

        def work(r, p):
            r._timed("evaluate", r.evaluate, p)
            return r.write_report()

        report = _run_on(
            run, work, device=device, sets=sets, config=config, eval_splits=eval_split or None
        )
        typer.echo(format_summary(report))

    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("runs/demo"), "--out", help="Demo folder."),
        train: int = typer.Option(1000, "--train", min=2, help="Training locations."),
        val: int = typer.Option(500, "--val", min=2, help="Validation locations."),
        preset: str = typer.Option("cpu", "--preset", help=PRESET_HELP),
        device: str = DEVICE_OPT,
        seed: int = typer.Option(0, "--seed", help="Random seed of the world and the run."),
    ) -> None:
        """Generate a synthetic world and learn it without any pair label.

        The world is written in the CVACT layout; the whole unsupervised pipeline runs on
        it and its recall and pseudo-label rounds are printed.
        """
        from ucvgl.services.pipeline import run_pipeline
        from ucvgl.services.presets import get_preset
        from ucvgl.services.synth import generate_world
        from ucvgl.shared.config import get_settings

        get_settings().apply_torch_threads()
        p = get_preset(preset)
        world = out / "world"

        def work(progress):
            progress.begin("demo 1/2: synthetic world")
            generate_world(
                world,
                "cvact",
                train,
                val,
                seed=seed,
                pano_size=tuple(p.ground_size),
                sat_size=p.satellite_size,
                progress=progress,
            )
            progress.begin("demo 2/2: pipeline (unsupervised)")
            return run_pipeline(
                world,
                "cvact",
                "unsupervised",
                p,
                out / "run",
                device=device,
                progress=progress,
                seed=seed,
            )

        report = _run_cli(work)
        typer.echo(format_summary(report))
        typer.echo(f"report: {out / 'run' / 'report.json'}")
