"""The broker (a private redis-server with an append-only file, as in docker-compose.yml)
killed and restarted while a job runs and others are queued: the API keeps answering
reads, submissions during the outage get a clear 503, queued jobs still run afterwards, and
every job ends in the right state."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from processes import RedisServer, start_worker, stop_process, wait_for
from service_fixtures import (
    API_TOKEN,
    TERMINAL_STATES,
    assert_problem,
    make_folder_dataset,
    poll_job,
    register_tiny_dataset,
)

from ucvgl.api.main import create_app
from ucvgl.shared.db import upgrade_database

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
OUTAGE_S = 4.0


@pytest.mark.slow
@pytest.mark.redis
def test_queued_jobs_survive_a_broker_restart(settings, tmp_path):
    if not RedisServer.available():
        pytest.skip(f"{RedisServer.BINARY} is not installed")
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    service = settings.model_copy(update={"api_token": API_TOKEN, "broker_url": redis.url})
    upgrade_database(service.resolved_database_url)
    make_folder_dataset(service.data_roots[0] / "tiny")
    worker, _ = start_worker(
        service,
        tmp_path / "worker.log",
        runner="pausing_runner:timed_fake_run_job",
        FAKE_STEPS="25",
        FAKE_SLEEP="0.2",
    )
    try:
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            dataset_id = register_tiny_dataset(client, AUTH)["id"]

            def start(run_name: str):
                job = {"type": "cold_start", "dataset_id": dataset_id}
                return client.post(
                    "/api/v1/jobs", json={**job, "params": {"run_name": run_name}}, headers=AUTH
                )

            ids = [start(name).json()["id"] for name in ("a", "b", "c")]
            poll_job(client, ids[0], {"RUNNING"}, 30)
            assert client.get(f"/api/v1/jobs/{ids[1]}").json()["state"] == "QUEUED"

            redis.kill()
            began = time.monotonic()
            listed = client.get("/api/v1/jobs")  # reads need only the database
            assert listed.status_code == 200 and listed.json()["total"] == 4  # + register
            assert client.get(f"/api/v1/jobs/{ids[1]}").status_code == 200
            ready = assert_problem(client.get("/readyz"), 503, "broker")
            assert not ready["checks"]["broker"]["ok"] and ready["checks"]["database"]["ok"]
            refused = assert_problem(start("during"), 503, "broker")
            assert "marked FAILED" in refused["detail"]
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - began)))
            outage_s = time.monotonic() - began

            redis.start()  # same port, same append-only file
            wait_for(lambda: client.get("/readyz").status_code == 200, 60, "/readyz to pass")
            after = start("after")
            assert after.status_code == 202, after.text
            ids.append(after.json()["id"])
            final = {i: poll_job(client, i, TERMINAL_STATES, 90) for i in ids}
            assert all(job["state"] == "SUCCEEDED" for job in final.values()), (
                final,
                (tmp_path / "worker.log").read_text()[-4000:],
            )
            failed = client.get("/api/v1/jobs", params={"state": "FAILED"}).json()
            assert failed["total"] == 1 and "broker" in failed["items"][0]["error"]
            print(f"broker down for {outage_s:.1f} s; all {len(ids)} jobs SUCCEEDED")
            log = (tmp_path / "worker.log").read_text()
            assert "Connection to broker lost" in log or "Cannot connect" in log, log[-3000:]
    finally:
        stop_process(worker)
        redis.stop()
