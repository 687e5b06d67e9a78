"""A worker SIGKILLed in the middle of a training job: the job is failed with the reason by
the reaper (not left RUNNING), and a retry resumes from the run folder's checkpoints: the
stages finished before the kill are not trained again and round 1's labels stay intact."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import torch
from fastapi.testclient import TestClient
from processes import start_worker, stop_process, wait_for
from service_fixtures import API_TOKEN, TERMINAL_STATES, poll_job, start_tiny_pipeline

from ucvgl.api.main import create_app
from ucvgl.shared.db import upgrade_database

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
FINISHED_BEFORE_KILL = (
    "cyclegan/cyclegan_last.pt",
    "stages/cold_start_intra/model.pt",
    "stages/cold_start_cross/model.pt",
    "stages/amm_round_001/checkpoint.pt",
    "stages/amm_round_001/model.pt",
    "labels/round_001.csv",
)


def fingerprint(path: Path) -> tuple[int, str]:
    """(mtime in ns, sha256) of a file: equal only when it was not written again."""
    return path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def test_killed_worker_job_is_failed_then_resumed_from_checkpoints(settings, tmp_path):
    from ucvgl.services.synth import generate_world

    service = settings.model_copy(
        update={
            "api_token": API_TOKEN,
            "device": "cpu",
            "job_stale_seconds": 3.0,
            "reaper_interval_seconds": 0.5,
        }
    )
    upgrade_database(service.resolved_database_url)
    generate_world(
        service.data_roots[0] / "world", "cvusa", 16, 8, seed=0, pano_size=(32, 64), sat_size=32
    )
    marker = tmp_path / "paused"
    timing = {"UCVGL_JOB_STALE_SECONDS": "3", "UCVGL_REAPER_INTERVAL_SECONDS": "0.5"}
    worker, hostname = start_worker(
        service,
        tmp_path / "worker1.log",
        PAUSE_AT_STAGE="AMM round 2",
        PAUSE_MARKER=str(marker),
        **timing,
    )
    second = None
    try:
        with TestClient(create_app(service)) as client:
            dataset_id, job_id = start_tiny_pipeline(client, AUTH, "cvusa")

            wait_for(marker.exists, 120, "the job to reach AMM round 2")
            running = client.get(f"/api/v1/jobs/{job_id}").json()
            assert running["state"] == "RUNNING" and running["worker_hostname"] == hostname
            run_dir = Path(running["run_dir"])
            before = {name: fingerprint(run_dir / name) for name in FINISHED_BEFORE_KILL}
            epoch_1 = torch.load(
                run_dir / "stages/amm_round_001/checkpoint.pt",
                map_location="cpu",
                weights_only=False,
            )["epoch"]
            assert not (run_dir / "stages/amm_round_002/model.pt").exists()

            os.kill(worker.pid, signal.SIGKILL)  # mid-job: no shutdown handler runs
            worker.wait()
            # A replacement worker starts while the reaper waits out the stale limit.
            # It holds the retry at AMM round 2 until `release` exists, so the retry is surely
            # active when the second retry is sent.
            held, release = tmp_path / "held", tmp_path / "release"
            second, _ = start_worker(
                service,
                tmp_path / "worker2.log",
                PAUSE_AT_STAGE="AMM round 2",
                PAUSE_MARKER=str(held),
                PAUSE_RELEASE=str(release),
                **timing,
            )
            failed = poll_job(client, job_id, TERMINAL_STATES, 30)
            assert failed["state"] == "FAILED", failed
            assert failed["error"].startswith(f"worker {hostname} lost (no heartbeat since ")
            assert f"/api/v1/jobs/{job_id}/retry" in failed["error"]
            retried = client.post(f"/api/v1/jobs/{job_id}/retry", headers=AUTH)
            assert retried.status_code == 202, retried.text
            new_id = retried.json()["id"]
            assert new_id != job_id and retried.json()["run_dir"] == str(run_dir)
            # A second retry while the first is active would interleave: refused.
            wait_for(held.exists, 120, "the retry to reach AMM round 2")
            assert client.get(f"/api/v1/jobs/{new_id}").json()["state"] == "RUNNING"
            again = client.post(f"/api/v1/jobs/{job_id}/retry", headers=AUTH)
            assert again.status_code == 409, again.text
            assert again.json()["conflicting_job_id"] == new_id
            release.write_text("go\n")
            done = poll_job(client, new_id, TERMINAL_STATES, 120)
            assert done["state"] == "SUCCEEDED", (done, (tmp_path / "worker2.log").read_text())

            # Resumed, not restarted: every file finished before the kill is untouched.
            after = {name: fingerprint(run_dir / name) for name in FINISHED_BEFORE_KILL}
            assert after == before
            checkpoint = torch.load(
                run_dir / "stages/amm_round_001/checkpoint.pt",
                map_location="cpu",
                weights_only=False,
            )
            assert checkpoint["epoch"] == epoch_1
            assert (run_dir / "stages/amm_round_002/model.pt").exists()
            rounds = client.get(f"/api/v1/datasets/{dataset_id}/rounds").json()["items"]
            assert [r["round"] for r in rounds] == [1, 2]
            record = json.loads((run_dir / "stages/amm_round_001/record.json").read_text())
            rows = len((run_dir / "labels/round_001.csv").read_text().splitlines()) - 1
            kept = rows - record["known_labels"]  # the CSV lists the prior's anchors first
            assert rounds[0]["labels"] == kept and rounds[0]["job_id"] == new_id
            assert client.get(f"/api/v1/jobs/{job_id}").json()["state"] == "FAILED"
    finally:
        if worker.poll() is None:
            worker.kill()
        if second is not None:
            stop_process(second)
