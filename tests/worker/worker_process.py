"""Start and stop a REAL Celery worker process for tests (no eager mode)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from process_stop import stop_process

from ucvgl.shared.config import Settings
from ucvgl.shared.db import Database
from ucvgl.shared.models import WorkerHeartbeat

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment that points a worker at the same database, broker and folders."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCVGL_")}
    env.update(
        UCVGL_WORK_DIR=str(settings.work_dir),
        UCVGL_DATA_ROOTS=":".join(str(p) for p in settings.data_roots),
        UCVGL_DATABASE_URL=settings.resolved_database_url,
        UCVGL_BROKER_URL=settings.resolved_broker_url,
        UCVGL_DEVICE="cpu",
        PYTHONPATH=os.pathsep.join([str(HERE), str(REPO), env.get("PYTHONPATH", "")]),
        **extra,
    )
    return env


def start_worker(
    settings: Settings, log_path: Path, *, fake: bool = True, timeout_s: float = 90.0, **env: str
) -> subprocess.Popen:
    """Start a worker (the fake-runner app, or the real ``ucvgl worker``) and wait until ready."""
    name = f"test-{uuid.uuid4().hex[:8]}@%h"
    if fake:
        command = [sys.executable, "-m", "celery", "-A", "fake_worker_app", "worker"]
        command += ["--pool", "solo", "--queues", "gpu,cpu", "--hostname", name, "-l", "INFO"]
    else:
        command = [sys.executable, "-m", "ucvgl.cli", "worker", "--pool", "solo"]
    log = open(log_path, "w")
    process = subprocess.Popen(
        command, env=worker_env(settings, **env), cwd=log_path.parent, stdout=log, stderr=log
    )
    wait_until_ready(process, settings, log_path, timeout_s)
    return process


def wait_until_ready(
    process: subprocess.Popen,
    settings: Settings,
    log_path: Path,
    timeout_s: float,
    *,
    hostname: str | None = None,
    retry_database_errors: bool = False,
    interval_s: float = 0.3,
) -> None:
    """Wait for the worker's heartbeat row (``hostname``'s, or any worker's).

    Raises:
        RuntimeError: with the worker's log, when it exits or is not ready in ``timeout_s``
            (it is stopped then). A database error is raised at once unless
            ``retry_database_errors`` (fault tests that start a worker behind a proxy).
    """
    database = Database.from_settings(settings)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"worker exited ({process.returncode}):\n{log_path.read_text()}")
            try:
                with database.sessions() as session:
                    if hostname is not None:
                        ready = session.get(WorkerHeartbeat, hostname) is not None
                    else:
                        count = sa.select(sa.func.count()).select_from(WorkerHeartbeat)
                        ready = bool(session.scalar(count))
                if ready:
                    return
            except sa.exc.OperationalError:
                if not retry_database_errors:
                    raise
            time.sleep(interval_s)
        stop_worker(process)
        raise RuntimeError(f"worker not ready in {timeout_s} s:\n{log_path.read_text()}")
    finally:
        database.dispose()


def stop_worker(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    """Warm shutdown (SIGTERM), then SIGKILL after ``grace_s``."""
    stop_process(process, grace_s)
