"""Jobs through the API and a REAL Celery worker process (embedded SQLite broker and Redis)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from service_fixtures import (
    make_folder_dataset,
    poll_job,
    register_dataset,
    register_tiny_dataset,
)
from worker_process import start_worker, stop_worker

from ucvgl.api.main import create_app


def free_redis_db() -> int | None:
    """An empty Redis database number (15 down to 8), or None when Redis is down."""
    import redis

    for number in range(15, 7, -1):
        try:
            if redis.Redis(host="127.0.0.1", port=6379, db=number).dbsize() == 0:
                return number
        except redis.exceptions.ConnectionError:
            return None
    return None


def run_scenario(settings, auth, tmp_path) -> None:
    """Register a dataset (and fail a broken one), run a pipeline job to SUCCEEDED, cancel a
    long job."""
    make_folder_dataset(settings.data_roots[0] / "tiny")
    broken = make_folder_dataset(settings.data_roots[0] / "broken")
    (broken / "satellite" / "s002.png").unlink()
    worker = start_worker(settings, tmp_path / "worker.log", FAKE_RUNNER_SLOW_TYPES="cold_start")
    try:
        with TestClient(create_app(settings)) as client:
            ds_id = register_tiny_dataset(client, auth)["id"]
            bad = {"name": "broken", "path": "broken", "format": "folder"}
            failed = register_dataset(client, auth, bad)
            assert failed["state"] == "FAILED" and "s002" in failed["error"], failed
            assert client.get("/api/v1/datasets").json()["total"] == 1
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            started = client.post(
                "/api/v1/jobs", json={"type": "pipeline", "dataset_id": ds_id}, headers=auth
            )
            assert started.status_code == 202, started.text
            job = poll_job(client, started.json()["id"], {"SUCCEEDED", "FAILED", "CANCELLED"})
            assert job["state"] == "SUCCEEDED", job
            assert job["worker_hostname"].startswith("test-") and job["progress"] == 1.0
            rounds = client.get(f"/api/v1/datasets/{ds_id}/rounds").json()
            assert rounds["total"] == 1 and rounds["items"][0]["correct"] == 2
            assert client.get("/api/v1/indexes").json()["total"] == 1
            slow = client.post(
                "/api/v1/jobs",
                json={"type": "cold_start", "dataset_id": ds_id, "params": {"run_name": "slow"}},
                headers=auth,
            )
            assert slow.status_code == 202, slow.text
            running = poll_job(client, slow.json()["id"], {"RUNNING"})
            assert 0.0 <= running["progress"] < 1.0
            cancel = client.post(f"/api/v1/jobs/{running['id']}/cancel", headers=auth)
            assert cancel.status_code == 202 and cancel.json()["cancel_requested"]
            done = poll_job(client, running["id"], {"CANCELLED", "SUCCEEDED", "FAILED"}, 20)
            assert done["state"] == "CANCELLED", done
    finally:
        stop_worker(worker)


def test_real_worker_with_sqlite_broker(settings, auth, tmp_path):
    from service_fixtures import API_TOKEN

    service = settings.model_copy(update={"api_token": API_TOKEN})
    from ucvgl.shared.db import upgrade_database

    upgrade_database(service.resolved_database_url)
    assert service.resolved_broker_url.startswith("sqla+sqlite:///")
    run_scenario(service, auth, tmp_path)


@pytest.mark.redis
@pytest.mark.postgres
def test_real_worker_with_redis_broker_and_postgres(service_settings, auth, tmp_path, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("the SQLite database is covered with the SQLite broker")
    number = free_redis_db()
    if number is None:
        pytest.skip("Redis is not reachable at 127.0.0.1:6379 (or has no empty database)")
    import redis

    service = service_settings.model_copy(update={"broker_url": f"redis://127.0.0.1:6379/{number}"})
    try:
        run_scenario(service, auth, tmp_path)
    finally:
        redis.Redis(host="127.0.0.1", port=6379, db=number).flushdb()
