"""PostgreSQL unreachable for a while (a TCP proxy between the service and the server is
cut): the API answers 503 problem+json on what needs the database, /readyz says so, a job
running in a real worker carries on, and everything recovers without a restart: with the
fake sleeping runner, and with the real tiny pipeline (slow)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from processes import start_worker, stop_process, wait_for
from service_fixtures import (
    API_TOKEN,
    TERMINAL_STATES,
    assert_problem,
    empty_tables,
    make_folder_dataset,
    poll_job,
    register_tiny_dataset,
    start_tiny_pipeline,
)
from tcp_proxy import TcpProxy

from ucvgl.api.main import create_app
from ucvgl.shared.config import Settings

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
OUTAGE_S = 3.0


def behind_proxy(settings: Settings, schema_url: str | None) -> tuple[TcpProxy, Settings]:
    """Service settings on this session's PostgreSQL schema (emptied) reached through a TCP
    proxy the test can cut (close it at the end); skips the test when PostgreSQL is down."""
    if schema_url is None:
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    empty_tables(schema_url)
    proxy = TcpProxy("127.0.0.1", 5432)
    url = schema_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    service = settings.model_copy(
        update={"database_url": f"{url}&connect_timeout=3", "api_token": API_TOKEN}
    )
    return proxy, service


@pytest.mark.postgres
def test_database_outage_is_503_then_recovers_without_restart(
    settings, postgres_schema_url, tmp_path
):
    proxy, service = behind_proxy(settings, postgres_schema_url)
    make_folder_dataset(service.data_roots[0] / "tiny")
    worker, _ = start_worker(
        service,
        tmp_path / "worker.log",
        runner="pausing_runner:timed_fake_run_job",
        FAKE_STEPS="40",
        FAKE_SLEEP="0.2",
    )
    try:
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            dataset_id = register_tiny_dataset(client, AUTH)["id"]
            job = {"type": "cold_start", "dataset_id": dataset_id}
            job_id = client.post("/api/v1/jobs", json=job, headers=AUTH).json()["id"]
            poll_job(client, job_id, {"RUNNING"}, 30)
            assert client.get("/readyz").status_code == 200

            proxy.cut()
            began = time.monotonic()
            for response in (
                client.get("/api/v1/datasets"),
                client.get(f"/api/v1/jobs/{job_id}"),
                client.post(
                    "/api/v1/jobs", json={**job, "params": {"run_name": "b"}}, headers=AUTH
                ),
            ):
                problem = assert_problem(response, 503, "database is unreachable")
                assert int(response.headers["retry-after"]) > 0
                assert problem["title"] == "Database unavailable"
            ready = assert_problem(client.get("/readyz"), 503, "database")
            assert not ready["checks"]["database"]["ok"]
            assert client.get("/healthz").status_code == 200
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - began)))

            proxy.restore()
            # The very first request after the outage succeeds: pool_pre_ping replaced the
            # dead pooled connections, nothing was restarted.
            listed = client.get("/api/v1/datasets")
            assert listed.status_code == 200 and listed.json()["total"] == 1
            wait_for(lambda: client.get("/readyz").status_code == 200, 20, "/readyz to pass")
            done = poll_job(client, job_id, TERMINAL_STATES, 60)
            assert done["state"] == "SUCCEEDED", (done, (tmp_path / "worker.log").read_text())
            assert done["progress"] == 1.0
            again = client.post(
                "/api/v1/jobs", json={**job, "params": {"run_name": "after"}}, headers=AUTH
            )
            assert again.status_code == 202, again.text
            assert poll_job(client, again.json()["id"], TERMINAL_STATES, 60)["state"] == "SUCCEEDED"
            log = (tmp_path / "worker.log").read_text()
            assert "progress not written (database unreachable)" in log  # it did see the outage
    finally:
        stop_process(worker)
        proxy.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_database_outage_during_a_real_pipeline_job(settings, postgres_schema_url, tmp_path):
    """The real tiny pipeline trains on while PostgreSQL is cut: held at AMM round 1, the
    job is released the moment the database goes away, trains with nowhere to write its
    progress, and ends SUCCEEDED with its rounds, model and index recorded once it is back."""
    from ucvgl.services.synth import generate_world

    proxy, service = behind_proxy(settings, postgres_schema_url)
    generate_world(
        service.data_roots[0] / "world", "cvact", 24, 8, seed=0, pano_size=(32, 64), sat_size=32
    )
    held, release = tmp_path / "held", tmp_path / "release"
    worker, _ = start_worker(
        service,
        tmp_path / "worker.log",
        PAUSE_AT_STAGE="AMM round 1",
        PAUSE_MARKER=str(held),
        PAUSE_RELEASE=str(release),
    )
    try:
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            dataset_id, job_id = start_tiny_pipeline(client, AUTH, "cvact")
            wait_for(held.exists, 180, "the job to reach AMM round 1")
            before = client.get(f"/api/v1/jobs/{job_id}").json()
            assert before["state"] == "RUNNING" and before["stage"].startswith("AMM round 1")

            proxy.cut()
            release.write_text("go\n")  # the job trains on while the database is away
            began = time.monotonic()
            assert_problem(client.get(f"/api/v1/jobs/{job_id}"), 503, "database is unreachable")
            log_path = tmp_path / "worker.log"
            wait_for(
                lambda: "progress not written (database unreachable)" in log_path.read_text(),
                60,
                "the job to meet the outage",
            )
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - began)))
            proxy.restore()

            done = poll_job(client, job_id, TERMINAL_STATES, 300)
            assert done["state"] == "SUCCEEDED", (done, log_path.read_text()[-3000:])
            assert done["progress"] == 1.0 and done["error"] is None
            rounds = client.get(f"/api/v1/datasets/{dataset_id}/rounds").json()["items"]
            assert [r["round"] for r in rounds] == [1, 2]
            assert all(r["job_id"] == job_id and r["correct"] is not None for r in rounds)
            models = client.get("/api/v1/models", params={"dataset_id": dataset_id}).json()
            assert models["total"] == 1
            index = client.get(f"/api/v1/indexes/{done['result']['index_id']}").json()
            assert index["size"] == 32
    finally:
        stop_process(worker)
        proxy.close()
