"""A pipeline job on two gloo processes through the API and a REAL worker (issue 12 part 4).

The worker runs on a CPU with ``UCVGL_DDP_CPU_PROCESSES=2``: ``params.gpus = 2`` launches the
tiny pipeline under torch's launcher. Progress comes from rank 0 while it runs, a cancel
stops both ranks, a retry resumes the run folder and succeeds in a group of two, and a job
asking for more processes than the worker has fails with a message naming both numbers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_fixtures import API_TOKEN, TERMINAL_STATES, make_tiny_world, poll_job
from worker_process import start_worker, stop_worker

from ucvgl.api.main import create_app
from ucvgl.shared.db import upgrade_database

WORKER_STAGES = {"starting", "loading dataset", "queued"}
"""Stages the worker writes itself; any other stage comes from rank 0."""


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("PPid:") and int(line.split()[1]) == pid:
                out.append(int(status.parent.name))
    return out


@pytest.mark.slow
def test_pipeline_job_on_two_gloo_processes(settings, tmp_path):
    service = settings.model_copy(update={"api_token": API_TOKEN, "device": "cpu"})
    upgrade_database(service.resolved_database_url)
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    log = tmp_path / "worker.log"
    worker = start_worker(
        service, log, fake=False, UCVGL_DDP_CPU_PROCESSES="2", UCVGL_TORCH_THREADS="1"
    )
    try:
        with TestClient(create_app(service)) as client:
            dataset_id = make_tiny_world(client, auth)

            too_many = {"type": "pipeline", "dataset_id": dataset_id}
            too_many["params"] = {"preset": "tiny", "gpus": 3, "run_name": "three"}
            job = client.post("/api/v1/jobs", json=too_many, headers=auth).json()
            job = poll_job(client, job["id"], TERMINAL_STATES, 60)
            assert job["state"] == "FAILED" and "3 asked for, this worker has 2" in job["error"]

            body = {"type": "pipeline", "dataset_id": dataset_id}
            body["params"] = {"mode": "unsupervised", "preset": "tiny", "gpus": 2}
            started = client.post("/api/v1/jobs", json=body, headers=auth)
            assert started.status_code == 202, started.text
            job_id = started.json()["id"]
            # Progress from rank 0 reaches the job row while the ranks run; then cancel.
            deadline = time.monotonic() + 120
            while True:
                job = client.get(f"/api/v1/jobs/{job_id}").json()
                if (
                    job["state"] == "RUNNING"
                    and job["stage"] not in WORKER_STAGES
                    and job["progress"] > 0.0
                ):
                    break
                assert job["state"] not in TERMINAL_STATES, (job, log.read_text()[-3000:])
                assert time.monotonic() < deadline, job
                time.sleep(0.1)
            assert job["progress"] < 1.0 and job["heartbeat_at"] is not None
            cancel = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=auth)
            assert cancel.status_code == 202, cancel.text
            job = poll_job(client, job_id, TERMINAL_STATES, 60)
            assert job["state"] == "CANCELLED", (job, log.read_text()[-3000:])
            assert _children(worker.pid) == []  # the launcher and both ranks are gone
            run_dir = Path(job["run_dir"])
            assert (run_dir / ".launch" / "cancel").exists()

            retried = client.post(f"/api/v1/jobs/{job_id}/retry", headers=auth)
            assert retried.status_code == 202, retried.text
            job_id = retried.json()["id"]  # a new job on the same run folder
            stages = set()
            deadline = time.monotonic() + 600
            while (job := client.get(f"/api/v1/jobs/{job_id}").json())["state"] not in (
                TERMINAL_STATES
            ):
                stages.add(job["stage"])
                assert time.monotonic() < deadline, job
                time.sleep(0.2)
            assert job["state"] == "SUCCEEDED", (job, log.read_text()[-3000:])
            assert job["result"]["launch"] == {"world_size": 2, "backend": "gloo"}
            assert len(stages - WORKER_STAGES) >= 2, stages  # rank 0's stages were seen
            report = json.loads((run_dir / "report.json").read_text())
            assert report["status"] == "ok" and report["recall"] is not None
            models = client.get("/api/v1/models", params={"dataset_id": dataset_id}).json()
            assert models["total"] == 1
            assert _children(worker.pid) == []
    finally:
        stop_worker(worker)
