"""Worker processes start only on a usable database, die with ``ucvgl serve`` however it
ends, and end a warm shutdown within a bound (real processes, no mocks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from processes import HERE, free_port, wait_for
from service_fixtures import API_TOKEN, poll_job
from worker_process import worker_env

from ucvgl.api.main import create_app
from ucvgl.shared.db import Database, upgrade_database
from ucvgl.shared.models import WorkerHeartbeat

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def descendants(pid: int) -> set[int]:
    """``pid``'s children, grandchildren... from /proc (Linux)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found |= {child} | descendants(child)
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def run_worker_cli(settings, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ucvgl.cli", "worker", "--pool", "solo"]
    return subprocess.run(
        command,
        env={**worker_env(settings), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_line_refusal(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for needle in ("refusing to start", "ucvgl migrate", *needles):
        assert needle in lines[0], lines[0]


def test_worker_refuses_an_unmigrated_database(settings, tmp_path):
    url = f"sqlite:///{tmp_path / 'never-migrated.sqlite'}"
    result = run_worker_cli(settings, tmp_path, UCVGL_DATABASE_URL=url)
    assert_one_line_refusal(result, "not migrated", "never-migrated.sqlite")


def test_worker_refuses_an_unreachable_database(settings, tmp_path):
    url = f"postgresql+psycopg://ucvgl:secret@127.0.0.1:{free_port()}/nowhere"
    result = run_worker_cli(settings, tmp_path, UCVGL_DATABASE_URL=url)
    assert_one_line_refusal(result, "unreachable")
    assert "secret" not in result.stderr


def start_serve(settings, log_path: Path) -> tuple[subprocess.Popen, str]:
    """``ucvgl serve`` with its local worker; waits for the worker's heartbeat row.

    Returns:
        The serve process and the worker's hostname (``ucvgl-<pid>@host``).
    """
    command = [sys.executable, "-m", "ucvgl.cli", "serve", "--port", str(free_port())]
    env = worker_env(settings, UCVGL_API_TOKEN=API_TOKEN, OMP_NUM_THREADS="1")
    log = open(log_path, "w")
    serve = subprocess.Popen(command, env=env, cwd=log_path.parent, stdout=log, stderr=log)
    database = Database.from_settings(settings)

    def worker_hostname() -> str | None:
        if serve.poll() is not None:
            raise AssertionError(f"serve exited ({serve.returncode}):\n{log_path.read_text()}")
        try:
            with database.sessions() as session:
                return session.scalar(sa.select(WorkerHeartbeat.hostname).limit(1))
        except sa.exc.OperationalError:  # serve is still migrating
            return None

    try:
        return serve, wait_for(worker_hostname, 120, "serve's worker heartbeat", 0.5)
    finally:
        database.dispose()


@pytest.mark.parametrize("how", ["sigkill", "sigterm-twice"])
def test_the_local_worker_dies_with_serve(how, settings, tmp_path):
    serve, hostname = start_serve(settings, tmp_path / "serve.log")
    family: set[int] = set()
    try:
        worker_pid = int(hostname.split("@")[0].removeprefix("ucvgl-"))
        assert worker_pid in descendants(serve.pid)
        family = {worker_pid} | descendants(worker_pid)
        if how == "sigkill":
            serve.kill()
        else:  # a second Ctrl-C / SIGTERM while the first is being handled
            serve.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
        wait_for(lambda: not any(alive(pid) for pid in family), 30, f"{family} to exit")
    finally:
        if serve.poll() is None:
            serve.kill()
        for pid in family | descendants(serve.pid):  # no orphan even when the test fails
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_warm_shutdown_turns_cold_after_its_timeout(settings, tmp_path):
    """SIGTERM while a job runs: the worker (prefork pool) stops within twice the bound."""
    from service_fixtures import make_folder_dataset, register_tiny_dataset

    url = f"sqlite:///{tmp_path / 'service.sqlite'}"
    upgrade_database(url)
    service_settings = settings.model_copy(update={"database_url": url, "api_token": API_TOKEN})
    timeout_s = 2.0
    env = worker_env(
        service_settings,
        RELIABILITY_RUNNER="pausing_runner:timed_fake_run_job",
        FAKE_STEPS="600",
        FAKE_SLEEP="1",
        SHUTDOWN_TIMEOUT_S=str(timeout_s),
        OMP_NUM_THREADS="1",
    )
    env["PYTHONPATH"] = f"{HERE}:{env['PYTHONPATH']}"
    hostname = f"bounded-{os.getpid()}@{socket.gethostname()}"
    command = [sys.executable, "-m", "celery", "-A", "bounded_worker_app", "worker"]
    command += ["--pool", "prefork", "--concurrency", "1", "--queues", "gpu,cpu"]
    command += ["--hostname", hostname, "-l", "INFO"]
    log_path = tmp_path / "worker.log"
    worker = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=open(log_path, "w"), stderr=subprocess.STDOUT
    )
    try:
        with TestClient(create_app(service_settings)) as client:
            make_folder_dataset(service_settings.data_roots[0] / "tiny")
            dataset = register_tiny_dataset(client, AUTH, settings=service_settings)
            started = client.post(
                "/api/v1/jobs", json={"type": "project", "dataset_id": dataset["id"]}, headers=AUTH
            )
            assert started.status_code == 202, started.text
            poll_job(client, started.json()["id"], {"RUNNING"}, 120, headers=AUTH)
        pool = descendants(worker.pid)
        assert pool, "the prefork pool has a process"
        sent = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        took = time.monotonic() - sent
        wait_for(lambda: not any(alive(pid) for pid in pool), 10, "the pool to exit")
        log = log_path.read_text()
        assert "Warm shutdown" in log and "cold shutdown now" in log, log[-4000:]
        assert took < 600, took  # the job alone would run 600 s
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
