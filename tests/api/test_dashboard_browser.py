"""The dashboard in a real headless Chromium against the real app on a loopback port.

The rows are written straight through the ORM (this test is about the page, not the
worker): a dataset, a RUNNING job, a FAILED job, a model with recall and three rounds.
The test moves the running job's progress in the database and waits for the page to show
it, checks the pseudo-label curve has one point per round, that a problem's ``detail``
reaches the user, and that cancelling works with the token.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from ucvgl.shared.config import Settings
from ucvgl.shared.db import Database, upgrade_database
from ucvgl.shared.enums import JobState
from ucvgl.shared.models import Dataset, Job, Model, PseudoLabelRound, utcnow

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "browser-test-token-0123456789"
WAIT_MS = 10_000

LABELS = [120, 260, 410]
CORRECT = [90, 215, 352]
THRESHOLDS = [0.1, 0.2, 0.3]
RECALL_R1 = [5.0, None, 12.5]
"""R@1 shown per round: a model's recall at the last round recorded with it."""
STAGE_FAILED_MESSAGE = "stage cold_start, check model_matches: 2 pairs (floor 10). Try: more"


@dataclass
class Seeded:
    """Ids of the rows the test inserted."""

    dataset_id: int
    running_job_id: int
    failed_job_id: int
    stage_failed_job_id: int
    stage_failed_run: str


@dataclass
class LiveServer:
    """The app served by uvicorn in a thread."""

    url: str
    database: Database
    seeded: Seeded | None


def seed(database: Database, run_dir: Path) -> Seeded:
    """Insert a dataset, a running and a failed job, a model with recall and three rounds."""
    with database.session() as session:
        dataset = Dataset(
            name="synth-browser",
            format="cvusa",
            root_path=str(run_dir.parent / "data"),
            counts={"train": {"ground": 32, "satellite": 32}},
            has_ground_truth=True,
            validation_report={},
        )
        session.add(dataset)
        session.flush()
        running = Job(
            type="pipeline",
            parameters={"mode": "unsupervised"},
            state=JobState.RUNNING,
            progress=0.2,
            stage="amm round 2",
            started_at=utcnow() - timedelta(seconds=60),
            run_dir=str(run_dir),
            dataset_id=dataset.id,
        )
        stop = {
            "stage": "cold_start",
            "check": "model_matches",
            "passed": False,
            "metric": "pairs_at_fdr",
            "numbers": {"pairs_at_fdr": 2, "mutual_targets": 15, "mutual_decoys": 14},
            "floor": 10.0,
            "action": "stop",
            "message": STAGE_FAILED_MESSAGE,
        }
        fallback = {
            **stop,
            "stage": "translate",
            "check": "cyclegan_content",
            "metric": "retention",
            "numbers": {"retention": 0.04},
            "floor": 0.2,
            "action": "fallback",
            "message": "the fakes lose the BEVs' content",
        }
        # A pipeline stopped by a stage check (an earlier run: it is not the newest one).
        stage_failed = Job(
            type="pipeline",
            parameters={"mode": "unsupervised"},
            state=JobState.FAILED,
            progress=0.5,
            stage="cold start",
            error=STAGE_FAILED_MESSAGE,
            result={"status": "failed", "health": [fallback, stop], "failure": stop},
            started_at=utcnow() - timedelta(seconds=900),
            finished_at=utcnow() - timedelta(seconds=800),
            run_dir=str(run_dir.parent / "shuffled"),
            dataset_id=dataset.id,
        )
        session.add(stage_failed)
        session.flush()
        failed = Job(
            type="project",
            parameters={},
            state=JobState.FAILED,
            progress=0.4,
            stage="project",
            error="DatasetError: ground/0001.jpg is unreadable",
            started_at=utcnow() - timedelta(seconds=300),
            finished_at=utcnow() - timedelta(seconds=200),
            run_dir=str(run_dir.parent / "other"),
            dataset_id=dataset.id,
        )
        session.add_all([running, failed])
        session.flush()
        # Round 1 trained model `early`; rounds 2 and 3 were recorded with the final model
        # (as a pipeline job does), so its recall belongs to round 3 only.
        early, final = (
            Model(
                dataset_id=dataset.id,
                run_dir=str(run_dir),
                checkpoint_path=str(run_dir / f"{name}.pt"),
                mode="unsupervised",
                preset="tiny",
                recall={"r1": r1, "r5": r1 + 20, "r10": r1 + 30, "r1p": r1 + 50},
            )
            for name, r1 in (("early", RECALL_R1[0]), ("final", RECALL_R1[2]))
        )
        session.add_all([early, final])
        session.flush()
        for number, (labels, correct, threshold) in enumerate(
            zip(LABELS, CORRECT, THRESHOLDS, strict=True), start=1
        ):
            session.add(
                PseudoLabelRound(
                    dataset_id=dataset.id,
                    model_id=early.id if number == 1 else final.id,
                    job_id=running.id,
                    round_number=number,
                    threshold=threshold,
                    mutual=labels + 40,
                    labels=labels,
                    correct=correct,
                    margin_histogram={"edges": [0.0, 0.5, 1.0], "counts": [labels // 2, labels]},
                    label_health_score=0.7,
                )
            )
        return Seeded(dataset.id, running.id, failed.id, stage_failed.id, str(stage_failed.run_dir))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Debian Chromium for the module (skips when it or playwright is absent)."""
    if not CHROMIUM.exists():
        pytest.skip(f"Debian chromium is not installed at {CHROMIUM} (scripts/ensure_chromium.sh)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed"
    )
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def start_server(app: Any, name: str) -> tuple[Any, threading.Thread, str]:
    """Serve ``app`` with uvicorn on a free loopback port in a daemon thread ``name``.

    Returns (server, thread, base URL) once it listens; stop it with
    ``server.should_exit = True`` and a join. RuntimeError if it has not started in 15 s.
    """
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 15 s")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture
def serve(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start the real app on 127.0.0.1 (a free port) over a migrated temporary SQLite file.

    ``serve(with_rows, public_reads=True)`` seeds the rows first when ``with_rows``; the
    server stops after the test.
    """
    from ucvgl.api.main import create_app

    started: list[tuple[Any, threading.Thread, Database]] = []

    def start(with_rows: bool, public_reads: bool = True) -> LiveServer:
        url = f"sqlite:///{tmp_path / 'dashboard.sqlite'}"
        upgrade_database(url)
        app_settings = settings.model_copy(
            update={"database_url": url, "api_token": TOKEN, "public_reads": public_reads}
        )
        database = Database.from_url(url)
        run_dir = tmp_path / "work" / "runs" / "dataset-1" / "default"
        seeded = seed(database, run_dir) if with_rows else None
        server, thread, base = start_server(create_app(app_settings), "dashboard-uvicorn")
        started.append((server, thread, database))
        return LiveServer(base, database, seeded)

    yield start
    for server, thread, database in started:
        server.should_exit = True
        thread.join(timeout=10)
        database.dispose()


def open_page(browser: Browser, url: str) -> tuple[Page, list[str]]:
    """A new page at ``url`` and the list its console errors and page errors go to."""
    errors: list[str] = []
    page = browser.new_page()
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.goto(url, wait_until="domcontentloaded")
    return page, errors


def set_progress(database: Database, job_id: int, progress: float, stage: str) -> None:
    """Move a job's progress as the worker would."""
    with database.session() as session:
        session.execute(
            sa.update(Job).where(Job.id == job_id).values(progress=progress, stage=stage)
        )


def polyline_points(page: Page, selector: str) -> int:
    """Total SVG points of the polylines matching ``selector``."""
    return page.eval_on_selector_all(
        selector, "lines => lines.reduce((n, line) => n + line.points.numberOfItems, 0)"
    )


def test_dashboard_shows_live_progress_curves_and_errors(
    browser: Browser, serve: Callable[..., LiveServer]
) -> None:
    from playwright.sync_api import expect

    live_server = serve(True)
    seeded = live_server.seeded
    assert seeded is not None
    page, console_errors = open_page(browser, live_server.url + "/")
    expect(page).to_have_title("ucvgl dashboard")

    # The running job with its progress, stage and an ETA; the failed one's error.
    row = page.locator(f'tr[data-job-id="{seeded.running_job_id}"]')
    percent = row.locator('[data-role="percent"]')
    expect(percent).to_have_text("20%", timeout=WAIT_MS)
    expect(row.locator('[data-field="state"]')).to_have_text("running")
    expect(row.locator('[data-field="dataset"]')).to_have_text("synth-browser")
    expect(row.locator('[data-field="eta"]')).to_contain_text("min")
    failed = page.locator(f'tr[data-job-id="{seeded.failed_job_id}"]')
    expect(failed.locator('[data-field="error"]')).to_contain_text("is unreadable")
    expect(failed.locator("button.cancel")).to_be_hidden()

    # The progress moves when the job row moves.
    set_progress(live_server.database, seeded.running_job_id, 0.6, "amm round 3")
    expect(percent).to_have_text("60%", timeout=WAIT_MS)
    expect(row.locator('[data-field="stage"]')).to_have_text("amm round 3")
    assert row.locator("progress").evaluate("bar => bar.value") == 60

    # The pseudo-label curve: one point per round for labels and correct labels,
    # the threshold per round, and each model's recall at its last round (1 and 3).
    labels_line = '#labels-chart [data-series="labels"] polyline'
    page.wait_for_selector(labels_line, state="attached", timeout=WAIT_MS)
    assert polyline_points(page, labels_line) == len(LABELS)
    correct_line = '#labels-chart [data-series="correct"] polyline'
    assert polyline_points(page, correct_line) == len(CORRECT)
    threshold_line = '#threshold-chart [data-series="threshold"] polyline'
    assert polyline_points(page, threshold_line) == len(THRESHOLDS)
    assert polyline_points(page, '#recall-chart [data-series="r1"] polyline') == 2
    # More labels sit higher on the chart (smaller SVG y).
    ys = page.eval_on_selector(labels_line, "line => Array.from(line.points).map(p => p.y)")
    assert ys[0] > ys[1] > ys[2]
    expect(page.locator("#rounds-body tr")).to_have_count(len(LABELS))
    shown_r1 = page.locator("#rounds-body td:nth-child(9)").all_text_contents()
    assert shown_r1 == ["—" if v is None else f"{v:.2f}" for v in RECALL_R1]
    expect(page.locator("#health-empty")).to_be_visible()  # this run recorded no check

    # The run a stage check stopped: its message, and its checks as a table.
    stopped = page.locator(f'tr[data-job-id="{seeded.stage_failed_job_id}"]')
    expect(stopped.locator('[data-field="error"]')).to_contain_text("stage cold_start")
    page.select_option("#run-select", seeded.stage_failed_run)
    expect(page.locator("#health-failure")).to_contain_text(STAGE_FAILED_MESSAGE)
    expect(page.locator("#health-body tr")).to_have_count(2)
    expect(page.locator('#health-body tr[data-stage="cold_start"]')).to_contain_text("failed: stop")
    expect(page.locator('#health-body tr[data-stage="translate"]')).to_contain_text("0.040")
    expect(page.locator("#rounds-empty")).to_be_visible()
    assert console_errors == []

    # A wrong token: the problem document's detail is shown to the user.
    page.fill("#token-input", "wrong-token")
    page.click("#token-form button[type=submit]")
    page.click("#start-submit")
    expect(page.locator("#alert")).to_contain_text("the bearer token is wrong", timeout=WAIT_MS)

    # The right token: cancel the running job (two clicks: ask, confirm).
    page.fill("#token-input", TOKEN)
    page.click("#token-form button[type=submit]")
    cancel = row.locator("button.cancel")
    cancel.click()
    expect(cancel).to_have_text("Confirm cancel")
    cancel.click()
    expect(cancel).to_have_text("Cancelling…", timeout=WAIT_MS)
    expect(page.locator("#status")).to_contain_text("Cancel requested")
    with live_server.database.sessions() as session:
        assert session.get(Job, seeded.running_job_id).cancel_requested is True
    if os.environ.get("UCVGL_SCREENSHOT_DIR"):
        page.screenshot(
            path=str(Path(os.environ["UCVGL_SCREENSHOT_DIR"]) / "dashboard.png"),
            full_page=True,
        )
    page.close()
    # Only the deliberate 401 may have been logged (Chromium logs failed fetches).
    unexpected = [m for m in console_errors if "401" not in m]
    assert unexpected == []


def test_dashboard_with_nothing_recorded_says_so_without_errors(
    browser: Browser, serve: Callable[..., LiveServer]
) -> None:
    from playwright.sync_api import expect

    live_server = serve(False)
    page, console_errors = open_page(browser, live_server.url + "/dashboard")
    expect(page.locator("#jobs-empty")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#dataset-info")).to_have_text("No dataset registered yet.")
    expect(page.locator("#labels-chart")).to_contain_text("No rounds yet.")
    expect(page.locator("#start-submit")).to_be_disabled()
    expect(page.locator("#jobs-updated")).to_contain_text("updated")
    page.wait_for_timeout(2000)  # a few more polls of the empty lists
    assert page.locator("#jobs-body tr").count() == 0
    expect(page.locator("#alert")).to_be_hidden()
    page.close()
    assert console_errors == []


def test_dashboard_asks_for_the_token_when_reads_are_private(
    browser: Browser, serve: Callable[..., LiveServer]
) -> None:
    from playwright.sync_api import expect

    live_server = serve(True, public_reads=False)
    seeded = live_server.seeded
    assert seeded is not None
    page, console_errors = open_page(browser, live_server.url + "/")
    expect(page.locator("#alert")).to_contain_text("needs the API token", timeout=WAIT_MS)
    assert page.locator("#jobs-body tr").count() == 0
    page.fill("#token-input", TOKEN)
    page.click("#token-form button[type=submit]")
    row = page.locator(f'tr[data-job-id="{seeded.running_job_id}"]')
    expect(row.locator('[data-role="percent"]')).to_have_text("20%", timeout=WAIT_MS)
    expect(page.locator("#alert")).to_be_hidden()
    page.close()
    assert console_errors == []  # no request was sent without the token
