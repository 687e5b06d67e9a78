"""The command line's progress: the run's percent and ETA as the job API gives them, and
each stage in its own units (steps, images) with its rate and ETA."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from rich.console import Console

from ucvgl.commands._progress import CliProgress, format_duration, percent
from ucvgl.services.pipeline import STAGE_WEIGHTS, STAGES
from ucvgl.services.progress import (
    NullProgress,
    ScaledProgress,
    StageCount,
    eta_seconds,
    report_count,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Tee:
    """Hands every report to a counting progress (the CLI's) and a plain one (a job's)."""

    def __init__(self, counting, plain) -> None:
        self.counting, self.plain = counting, plain

    def update(self, stage, fraction, message=""):
        self.counting.update(stage, fraction, message)
        self.plain.update(stage, fraction, message)

    def update_count(self, stage, fraction, count: StageCount, message=""):
        self.counting.update_count(stage, fraction, count, message)
        self.plain.update(stage, fraction, message)

    def check_cancelled(self):
        self.plain.check_cancelled()


def fake_run(progress, clock: Clock, train_steps: int) -> None:
    """The unsupervised stages with the pipeline's weights: projection counts panoramas
    (1 s each of 50), the prior reports fractions only, the CycleGAN trains 100 steps
    (0.5 s each), the cold start trains ``train_steps`` of 400 steps (0.5 s each)."""
    stages = STAGES["unsupervised"]
    total = sum(STAGE_WEIGHTS[s] for s in stages)
    done = 0.0
    for name in stages[:5]:
        w = STAGE_WEIGHTS[name]
        sub = ScaledProgress(progress, done / total, (done + w) / total)
        if name == "project":
            for i in range(1, 51):
                clock.now += 1.0
                report_count(sub, "project", i, 50, "panoramas")
        elif name == "prior":
            clock.now += 2.0
            sub.update("prior", 1.0, "40 pairs")
        elif name == "cold_start":
            for i in range(1, train_steps + 1):
                clock.now += 0.5
                report_count(sub, "cold start: ground-fake", i, 400, "steps", f"loss {2 - i / 400}")
            return
        else:
            for i in range(1, 101):
                clock.now += 0.5
                report_count(sub, name, i, 100, "steps" if name == "cyclegan" else "images")
        done += w


def run_line(progress: CliProgress) -> str:
    return next(line for line in progress.snapshot().splitlines() if line.startswith("pipeline"))


def test_the_run_line_shows_the_job_api_percent_and_eta_and_stages_their_own_units(tmp_path):
    from ucvgl.api.presenters import eta_seconds as api_eta
    from ucvgl.shared.db import Database, upgrade_database
    from ucvgl.shared.enums import JobState
    from ucvgl.shared.models import Job, utcnow
    from ucvgl.worker.job_progress import JobProgress

    url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    upgrade_database(url)
    database = Database.from_url(url)
    clock = Clock()
    began = clock.now
    with database.session() as session:
        job = Job(type="pipeline", run_dir="/r", state=JobState.RUNNING, started_at=utcnow())
        session.add(job)
    cli = CliProgress("pipeline", clock=clock, disable=True)
    fake_run(Tee(cli, JobProgress(database, job.id, interval_s=0.0, clock=clock)), clock, 120)

    with database.sessions() as session:
        row = session.get(Job, job.id)
    elapsed = clock.now - began
    row.started_at = utcnow() - timedelta(seconds=elapsed)  # the job began when the run did
    api_seconds = api_eta(row, now=row.started_at + timedelta(seconds=elapsed))
    database.dispose()

    # The run: the job row's progress, stage and ETA.
    assert cli.fraction == pytest.approx(row.progress)
    assert cli.eta() == pytest.approx(api_seconds)
    line = run_line(cli)
    weights = [STAGE_WEIGHTS[s] for s in STAGES["unsupervised"]]
    assert row.progress == pytest.approx((sum(weights[:4]) + weights[4] * 120 / 400) / sum(weights))
    assert f"{percent(row.progress)}%" in line
    assert f"ETA {format_duration(api_seconds)}" in line
    assert f"stage: {row.stage}" in line and row.stage == "cold start: ground-fake"

    # The stages: their own units, rates and ETAs (2 steps/s, 280 steps left: 140 s).
    text = cli.snapshot()
    assert "‰" not in text
    stage = next(line for line in text.splitlines() if line.startswith("cold start"))
    assert "120/400 steps" in stage and "2 steps/s" in stage
    assert "ETA 2 min 20 s" in stage and "loss 1.7" in stage
    project = next(line for line in text.splitlines() if line.startswith("project"))
    assert "50/50 panoramas" in project and "1 panoramas/s" in project
    assert "took 49 s" in project  # from its first report (1 s in) to its last (50 s)
    assert "100/100 steps" in next(ln for ln in text.splitlines() if ln.startswith("cyclegan "))
    assert "40 pairs" in next(ln for ln in text.splitlines() if ln.startswith("prior"))


def test_eta_is_the_job_api_formula():
    assert eta_seconds(0.25, 60.0) == pytest.approx(180.0)
    assert eta_seconds(0.0, 60.0) is None and eta_seconds(1.0, 60.0) == 0.0
    assert [format_duration(s) for s in (None, 12.4, 185, 3720, 200000)] == [
        "—",
        "12 s",
        "3 min 05 s",
        "1 h 02 min",
        "2 d 7 h",
    ]
    assert percent(0.205) == 21 and percent(0.994) == 99 and percent(1.2) == 100


def test_counts_reach_a_plain_progress_as_fractions_and_nest_under_a_renamed_stage():
    seen = []

    class Plain:
        def update(self, stage, fraction, message=""):
            seen.append((stage, round(fraction, 4), message))

        def check_cancelled(self):
            return None

    report_count(
        ScaledProgress(ScaledProgress(Plain(), 0.5, 1.0), 0.0, 0.5, "AMM round 1"),
        "embed",
        30,
        40,
        "images",
        "m",
    )
    assert seen == [("AMM round 1", 0.6875, "m")]
    report_count(NullProgress(), "x", 1, 0, "steps")  # a zero total is no error

    clock = Clock()
    cli = CliProgress("run", clock=clock, disable=True)
    outer = ScaledProgress(cli, 0.5, 1.0, "AMM round 1")
    for i in range(1, 41):
        clock.now += 0.25
        report_count(outer, "embed ground", i, 40, "images")
    stage = [ln for ln in cli.snapshot().splitlines() if ln.startswith("AMM round 1")]
    assert len(stage) == 1 and "AMM round 1 · embed ground" in stage[0]
    assert "40/40 images" in stage[0] and "4 images/s" in stage[0]

    # A stage that first says what it does, then counts, keeps one bar.
    cli.update("synth", 0.0, "map 1/1: building")
    report_count(cli, "synth", 5, 10, "locations", "map 1/1: rendering")
    synth = [ln for ln in cli.snapshot().splitlines() if ln.startswith("synth")]
    assert len(synth) == 1 and "5/10 locations" in synth[0] and "rendering" in synth[0]


def test_without_a_terminal_it_logs_one_line_per_stage_and_ends_at_100_percent():
    clock = Clock()
    out = io.StringIO()
    cli = CliProgress("pipeline", console=Console(file=out, width=100), clock=clock, live=False)
    fake_run(cli, clock, 400)
    cli.finish()
    cli.close()
    lines = out.getvalue().splitlines()
    runs = [ln for ln in lines if ln.startswith("pipeline")]
    percents = [int(re.search(r"(\d+)%", ln).group(1)) for ln in runs]
    assert percents == sorted(percents) and percents[-1] == 100
    assert runs[-1].endswith("stage: done")
    assert any(ln.startswith("cold start: ground-fake") and "400/400 steps" in ln for ln in lines)
    assert all(len(ln) < 200 for ln in lines)  # one line each, never a wrapped table


@pytest.mark.usefixtures("one_torch_thread")
def test_a_tiny_pipeline_run_shows_its_training_in_steps(tmp_path):
    from ucvgl.services.pipeline import run_pipeline
    from ucvgl.services.synth import generate_world

    world = generate_world(
        tmp_path / "world", "cvact", 16, 8, seed=0, pano_size=(32, 64), sat_size=32, workers=1
    )
    cli = CliProgress("pipeline", disable=True, keep_stages=100)
    run_pipeline(world, "cvact", "supervised", "tiny", tmp_path / "run", device="cpu", progress=cli)
    text = cli.snapshot(width=200)
    steps = [ln for ln in text.splitlines() if re.search(r"\d+/\d+ steps", ln)]
    assert steps, text
    for line in steps:  # every training bar reaches its own total
        done, total = map(int, re.search(r"(\d+)/(\d+) steps", line).groups())
        assert done == total > 0
    assert re.search(r"\d+/\d+ images", text)
    assert cli.fraction > 0.9
