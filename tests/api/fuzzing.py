"""Schemathesis against a real ``ucvgl serve --no-worker``: seed its database, start it, fuzz it.

Used by ``test_openapi_fuzz.py``; the README shows how to run the same fuzzing longer.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
from process_stop import stop_process

from ucvgl.shared.config import Settings
from ucvgl.shared.db import Database
from ucvgl.shared.models import Job, Model, PseudoLabel, PseudoLabelRound, RetrievalIndex

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BASELINE = HERE / "schemathesis_baseline.json"
"""Failures accepted on purpose; each entry's ``reason`` says why."""
FUZZ_SEED = 20261206


def seed_pipeline_rows(settings: Settings, dataset_id: int, n_labels: int = 40) -> dict[str, int]:
    """A finished pipeline job on ``dataset_id`` with two pseudo-label rounds, its model and
    an index, as a worker records them (the files they point at are not there).

    Returns:
        The ids: ``job``, ``failed_job``, ``model``, ``round``, ``index``.
    """
    database = Database.from_settings(settings)
    run_dir = str(settings.work_dir / "runs" / f"dataset-{dataset_id}" / "default")
    try:
        with database.session() as session:
            job = Job(
                type="pipeline",
                run_dir=run_dir,
                dataset_id=dataset_id,
                state="SUCCEEDED",
                progress=1.0,
                stage="done",
                parameters={"mode": "unsupervised", "preset": "tiny"},
            )
            failed = Job(
                type="project",
                run_dir=run_dir + "-failed",
                dataset_id=dataset_id,
                state="FAILED",
                error="seeded failure (retry me)",
            )
            session.add_all([job, failed])
            session.flush()
            model = Model(
                dataset_id=dataset_id,
                run_dir=run_dir,
                checkpoint_path=f"{run_dir}/model.pt",
                mode="unsupervised",
                preset="tiny",
                recall={"r1": 25.0, "r5": 75.0},
            )
            session.add(model)
            session.flush()
            rounds = []
            for number in (1, 2):
                rnd = PseudoLabelRound(
                    dataset_id=dataset_id,
                    model_id=model.id,
                    job_id=job.id,
                    round_number=number,
                    threshold=0.05 * number,
                    mutual=2 * n_labels,
                    labels=n_labels,
                    correct=n_labels // 2,
                    margin_histogram={"edges": [0.0, 0.1, 0.2], "counts": [n_labels // 2] * 2},
                    label_health_score=0.5,
                )
                session.add(rnd)
                session.flush()
                rounds.append(rnd)
                session.execute(
                    sa.insert(PseudoLabel),
                    [
                        dict(
                            round_id=rnd.id,
                            ground_id=f"g{i}",
                            satellite_id=f"s{i}",
                            margin=0.01 * (i % 20),
                            similarity=0.5,
                            is_correct=i % 2 == 0,
                        )
                        for i in range(n_labels)
                    ],
                )
            index = RetrievalIndex(model_id=model.id, path=f"{run_dir}/index", kind="flat", size=4)
            session.add(index)
            session.flush()
            ids = {
                "job": job.id,
                "failed_job": failed.id,
                "model": model.id,
                "round": rounds[-1].id,
                "index": index.id,
            }
    finally:
        database.dispose()
    return ids


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(settings: Settings, token: str) -> dict[str, str]:
    """The environment of a ``ucvgl serve`` on ``settings``' database, broker and folders."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCVGL_")}
    env.update(
        UCVGL_WORK_DIR=str(settings.work_dir),
        UCVGL_DATA_ROOTS=":".join(str(p) for p in settings.data_roots),
        UCVGL_DATABASE_URL=settings.resolved_database_url,
        UCVGL_BROKER_URL=settings.resolved_broker_url,
        UCVGL_API_TOKEN=token,
        UCVGL_DEVICE="cpu",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
    )
    return env


def start_server(
    settings: Settings, token: str, log_path: Path, timeout_s: float = 60.0
) -> tuple[subprocess.Popen, str]:
    """``ucvgl serve --no-worker`` on a free port; waits until ``/healthz`` answers.

    Returns:
        The process and the base URL.
    """
    port = free_port()
    command = [sys.executable, "-m", "ucvgl.cli", "serve", "--no-worker", "--port", str(port)]
    log = open(log_path, "w")
    process = subprocess.Popen(
        command, env=server_env(settings, token), stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited ({process.returncode}):\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_server(process)
    raise RuntimeError(f"serve did not answer in {timeout_s} s:\n{log_path.read_text()}")


def stop_server(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM, SIGKILL after ``grace_s``."""
    stop_process(process, grace_s)


def schemathesis_command(
    url: str, token: str, max_time_s: int, report_dir: Path, *, seed: int = FUZZ_SEED
) -> list[str]:
    """``st run`` with every check, a time budget, a fixed seed and the committed baseline."""
    return [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-time",
        str(max_time_s),
        "--seed",
        str(seed),
        "--workers",
        "1",
        "--header",
        f"Authorization: Bearer {token}",
        "--baseline",
        str(BASELINE),
        "--request-timeout",
        "30",
        "--report",
        "json",
        "--report-dir",
        str(report_dir),
        "--suppress-health-check",
        "all",
    ]


def baseline_entries() -> list[dict]:
    """The committed baseline's entries."""
    return json.loads(BASELINE.read_text())["entries"]
