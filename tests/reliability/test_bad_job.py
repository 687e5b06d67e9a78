"""A job whose stage raises (an image that cannot be decoded mid-run) ends FAILED with the
file and the reason, and other jobs on the same worker are unaffected; two jobs that would
write the same run folder never run interleaved."""

from __future__ import annotations

import shutil
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from processes import start_worker, stop_process
from service_fixtures import API_TOKEN, TERMINAL_STATES, poll_job, register_dataset, registered

from ucvgl.api.main import create_app
from ucvgl.shared.db import Database, upgrade_database
from ucvgl.shared.enums import JobState
from ucvgl.shared.models import Dataset, Job, utcnow
from ucvgl.worker.tasks import execute_job

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def test_stage_error_fails_only_its_job_and_names_the_file(settings, tmp_path):
    from ucvgl.services.synth import generate_world

    service = settings.model_copy(update={"api_token": API_TOKEN, "device": "cpu"})
    upgrade_database(service.resolved_database_url)
    root = service.data_roots[0]
    generate_world(root / "good", "cvusa", 4, 2, seed=0, pano_size=(32, 64), sat_size=32)
    shutil.copytree(root / "good", root / "bad")
    worker, _ = start_worker(service, tmp_path / "worker.log")
    try:
        with TestClient(create_app(service)) as client:
            ids = {}
            for name in ("good", "bad"):
                body = {"name": name, "path": name, "format": "cvusa"}
                ids[name] = registered(client, register_dataset(client, AUTH, body))["id"]
            # Registered fine; then a panorama is truncated on disk before the job reads it.
            victim = sorted((root / "bad" / "streetview").rglob("*.jpg"))[0]
            victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
            params = {"preset": "tiny", "device": "cpu"}

            def start(dataset: str, run_name: str) -> int:
                body = {
                    "type": "project",
                    "dataset_id": ids[dataset],
                    "params": {**params, "run_name": run_name},
                }
                response = client.post("/api/v1/jobs", json=body, headers=AUTH)
                assert response.status_code == 202, response.text
                return response.json()["id"]

            before, bad, after = start("good", "a"), start("bad", "a"), start("good", "b")
            states = {i: poll_job(client, i, TERMINAL_STATES, 120) for i in (before, bad, after)}
            failed = states[bad]
            assert failed["state"] == "FAILED", failed
            assert victim.name in failed["error"] and "truncated" in failed["error"].lower(), failed
            assert "Traceback" not in failed["error"]
            assert states[before]["state"] == states[after]["state"] == "SUCCEEDED"
            assert worker.poll() is None  # the worker survived the failing job
    finally:
        stop_process(worker)


@pytest.mark.postgres
def test_concurrent_starts_on_one_run_folder_give_one_202_and_409s(client, auth, tiny_dataset):
    if "postgresql" not in str(client.app.state.database.engine.url):
        pytest.skip("concurrent row locking is exercised on PostgreSQL")
    body = {"type": "cold_start", "dataset_id": tiny_dataset["id"]}
    results: list[int] = []
    barrier = threading.Barrier(6)

    def post() -> None:
        barrier.wait()
        results.append(client.post("/api/v1/jobs", json=body, headers=auth).status_code)

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [202] + [409] * 5, results
    jobs = client.get("/api/v1/jobs", params={"type": "cold_start"}).json()
    assert jobs["total"] == 1 and jobs["items"][0]["state"] == "QUEUED"


def test_a_duplicate_delivery_does_not_run_beside_the_live_job(service_settings, tmp_path):
    """Redis redelivers a task whose worker looks gone; the live run must not be joined."""
    database = Database.from_settings(service_settings)
    with database.session() as session:
        dataset = Dataset(name="d", format="folder", root_path=str(tmp_path))
        session.add(dataset)
        session.flush()
        job = Job(
            type="cold_start",
            state=JobState.RUNNING,
            run_dir=str(tmp_path / "run"),
            dataset_id=dataset.id,
            worker_hostname="a@host",
            heartbeat_at=utcnow(),
            started_at=utcnow(),
        )
        session.add(job)
    calls = []

    def runner(*args):
        calls.append(args)
        return {}

    kwargs = dict(database=database, settings=service_settings, runner=runner)
    assert execute_job(job.id, hostname="b@host", **kwargs) == JobState.RUNNING
    assert calls == []
    with database.session() as session:  # its heartbeat is now old: a lost worker's job
        session.execute(
            sa.update(Job)
            .where(Job.id == job.id)
            .values(heartbeat_at=utcnow() - timedelta(seconds=3600))
        )
    assert execute_job(job.id, hostname="b@host", **kwargs) == JobState.FAILED  # no dataset
    with database.session() as session:
        session.execute(sa.update(Job).where(Job.id == job.id).values(state=JobState.FAILED))
    assert execute_job(job.id, hostname="c@host", **kwargs) == JobState.FAILED  # terminal
    assert calls == []
    database.dispose()
