"""The reaper alone: which RUNNING jobs count as lost, the reason it records, and that the
API process runs it by itself (no worker needed)."""

from __future__ import annotations

import time
from datetime import timedelta

from fastapi.testclient import TestClient
from processes import wait_for

from ucvgl.api.main import create_app
from ucvgl.shared.db import Database
from ucvgl.shared.enums import JobState
from ucvgl.shared.jobs.reaper import JobHeartbeat, job_heartbeat_interval, reap_stale_jobs
from ucvgl.shared.models import Job, utcnow


def add_job(database: Database, run: str, state: JobState, beat_age_s: float | None) -> int:
    with database.session() as session:
        job = Job(
            type="pipeline",
            state=state,
            run_dir=f"/runs/{run}",
            worker_hostname="w1@host",
            started_at=utcnow() - timedelta(seconds=600),
            heartbeat_at=None if beat_age_s is None else utcnow() - timedelta(seconds=beat_age_s),
        )
        session.add(job)
        session.flush()
        return job.id


def test_only_running_jobs_with_an_old_heartbeat_are_failed(db_url):
    database = Database.from_url(db_url)
    lost = add_job(database, "a", JobState.RUNNING, 120)
    alive = add_job(database, "b", JobState.RUNNING, 5)
    never_started = add_job(database, "c", JobState.RUNNING, None)
    queued = add_job(database, "d", JobState.QUEUED, 120)
    done = add_job(database, "e", JobState.SUCCEEDED, 120)
    assert reap_stale_jobs(database, 60) == [lost]
    assert reap_stale_jobs(database, 60) == []  # idempotent
    with database.session() as session:
        rows = {j.id: j for j in session.query(Job)}
    assert rows[lost].state == JobState.FAILED and rows[lost].stage == "lost"
    assert rows[lost].error.startswith("worker w1@host lost (no heartbeat since 20")
    assert f"/api/v1/jobs/{lost}/retry" in rows[lost].error
    assert rows[lost].finished_at is not None
    for job_id, state in (
        (alive, JobState.RUNNING),
        (never_started, JobState.RUNNING),
        (queued, JobState.QUEUED),
        (done, JobState.SUCCEEDED),
    ):
        assert rows[job_id].state == state
    database.dispose()


def test_job_heartbeat_keeps_a_job_alive_and_stops_with_it(db_url):
    database = Database.from_url(db_url)
    job_id = add_job(database, "a", JobState.RUNNING, 0)
    assert job_heartbeat_interval(60) == 5.0 and job_heartbeat_interval(0.1) == 0.2
    with JobHeartbeat(database, job_id, 0.2):
        time.sleep(1.5)
        assert reap_stale_jobs(database, 1.0) == []  # beaten in the meantime
    time.sleep(1.5)
    assert reap_stale_jobs(database, 1.0) == [job_id]
    database.dispose()


def test_the_api_process_reaps_without_any_worker(service_settings):
    service = service_settings.model_copy(
        update={"job_stale_seconds": 1.0, "reaper_interval_seconds": 0.2}
    )
    database = Database.from_settings(service)
    job_id = add_job(database, "a", JobState.RUNNING, 0)
    with TestClient(create_app(service)) as client:
        job = wait_for(
            lambda: (j := client.get(f"/api/v1/jobs/{job_id}").json())["state"] == "FAILED" and j,
            10,
            "the API's reaper",
        )
    assert "worker w1@host lost" in job["error"]
    database.dispose()
