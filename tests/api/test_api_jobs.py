"""Jobs: 202 + Location, one active job per run folder (409), cancel, filters, auth."""

from __future__ import annotations

from datetime import timedelta

from service_fixtures import assert_problem

from ucvgl.shared.db import Database
from ucvgl.shared.enums import JobState
from ucvgl.shared.models import Job, Model, utcnow


def _start(client, auth, dataset_id, job_type="project", **params):
    body = {"type": job_type, "dataset_id": dataset_id, "params": params}
    return client.post("/api/v1/jobs", json=body, headers=auth)


def test_start_job_answers_202_with_location_and_is_queued(client, auth, tiny_dataset):
    response = _start(client, auth, tiny_dataset["id"])
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/api/v1/jobs/{job['id']}"
    assert int(response.headers["retry-after"]) > 0
    assert job["state"] == "QUEUED" and job["progress"] == 0.0 and job["eta_seconds"] is None
    assert job["run_dir"].endswith(f"dataset-{tiny_dataset['id']}/default")
    assert job["links"]["self"] == f"/api/v1/jobs/{job['id']}"
    got = client.get(response.headers["location"]).json()
    assert got["id"] == job["id"] and got["state"] == "QUEUED"


def test_second_job_on_the_same_run_folder_is_a_conflict(client, auth, tiny_dataset):
    first = _start(client, auth, tiny_dataset["id"]).json()
    problem = assert_problem(
        _start(client, auth, tiny_dataset["id"], "cold_start"), 409, f"job {first['id']}"
    )
    assert problem["conflicting_job_id"] == first["id"]
    other = _start(client, auth, tiny_dataset["id"], "cold_start", run_name="second")
    assert other.status_code == 202
    cancelled = client.post(f"/api/v1/jobs/{first['id']}/cancel", headers=auth)
    assert cancelled.status_code == 202 and cancelled.json()["state"] == "CANCELLED"
    assert _start(client, auth, tiny_dataset["id"], "cold_start").status_code == 202
    assert_problem(client.post(f"/api/v1/jobs/{first['id']}/cancel", headers=auth), 409, "ended")


def test_running_job_cancel_sets_the_flag_and_eta_comes_from_progress(
    client, auth, tiny_dataset, service_settings
):
    job = _start(client, auth, tiny_dataset["id"]).json()
    db = Database.from_settings(service_settings)
    with db.session() as s:
        row = s.get(Job, job["id"])
        row.state, row.progress = JobState.RUNNING, 0.25
        row.started_at = utcnow() - timedelta(seconds=30)
    running = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert 80 < running["eta_seconds"] < 100  # 30 s for 25 % -> about 90 s left
    response = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=auth)
    assert response.status_code == 202
    body = response.json()
    assert body["state"] == "RUNNING" and body["cancel_requested"] is True
    db.dispose()


def test_list_filters_and_pagination(client, auth, tiny_dataset):
    ids = [
        _start(client, auth, tiny_dataset["id"], t, run_name=f"r{i}").json()["id"]
        for i, t in enumerate(["project", "cold_start", "project"])
    ]
    page = client.get("/api/v1/jobs", params={"limit": 2, "offset": 0}).json()
    # 4: the dataset's own (SUCCEEDED) register job comes first
    assert page["total"] == 4 and [j["id"] for j in page["items"]] == ids[::-1][:2]
    assert client.get("/api/v1/jobs", params={"type": "project"}).json()["total"] == 2
    assert client.get("/api/v1/jobs", params={"type": "register"}).json()["total"] == 1
    assert client.get("/api/v1/jobs", params={"state": "QUEUED"}).json()["total"] == 3
    assert client.get("/api/v1/jobs", params={"dataset_id": 999}).json()["total"] == 0
    assert_problem(client.get("/api/v1/jobs", params={"state": "DONE"}), 422, "query.state")
    assert_problem(client.get("/api/v1/jobs", params={"limit": 0}), 422, "query.limit")


def test_bad_job_requests(client, auth, tiny_dataset):
    assert_problem(_start(client, auth, 999), 404, "dataset 999")
    assert_problem(_start(client, auth, tiny_dataset["id"], "dance"), 422, "body.type")
    assert_problem(_start(client, auth, tiny_dataset["id"], "index"), 422, "body.model_id")
    assert_problem(
        _start(client, auth, tiny_dataset["id"], "project", epochs=3), 422, "body.params.epochs"
    )
    assert_problem(
        _start(client, auth, tiny_dataset["id"], "project", run_name="../x"), 422, "run_name"
    )
    assert_problem(_start(client, auth, tiny_dataset["id"], "synthetic"), 422, "synthetic")
    assert_problem(client.get("/api/v1/jobs/12345"), 404, "job 12345")


def test_model_jobs_use_the_models_run_folder(client, auth, tiny_dataset, service_settings):
    db = Database.from_settings(service_settings)
    with db.session() as s:
        model = Model(
            dataset_id=tiny_dataset["id"],
            run_dir="/runs/m",
            checkpoint_path="/runs/m/x.pt",
            mode="semi",
        )
        s.add(model)
    job = _start(client, auth, tiny_dataset["id"], "evaluate")
    assert job.status_code == 422
    body = {"type": "evaluate", "dataset_id": tiny_dataset["id"], "model_id": model.id}
    job = client.post("/api/v1/jobs", json=body, headers=auth).json()
    assert job["run_dir"] == "/runs/m" and job["parameters"]["mode"] == "semi"
    index_job = client.post("/api/v1/indexes", json={"model_id": model.id}, headers=auth)
    assert_problem(index_job, 409, "/runs/m")
    assert_problem(client.post("/api/v1/indexes", json={"model_id": 77}, headers=auth), 404)
    db.dispose()


def test_mutations_need_the_token_and_reads_can_be_private(client, tiny_dataset, service_settings):
    body = {"type": "project", "dataset_id": tiny_dataset["id"]}
    problem = assert_problem(client.post("/api/v1/jobs", json=body), 401, "Bearer")
    wrong = {"Authorization": "Bearer nope"}
    assert_problem(client.post("/api/v1/jobs", json=body, headers=wrong), 401, "wrong")
    assert problem["instance"] == "/api/v1/jobs"
    assert client.get("/api/v1/jobs").status_code == 200  # public reads by default
    client.app.state.settings = service_settings.model_copy(update={"public_reads": False})
    assert_problem(client.get("/api/v1/jobs"), 401)
    assert_problem(client.get("/api/v1/datasets"), 401)
    assert client.get("/healthz").status_code == 200


def test_gpus_param_is_a_positive_integer_kept_with_the_job(client, auth, tiny_dataset):
    for bad in (0, -1, "two", True, 1.5):
        problem = assert_problem(
            _start(client, auth, tiny_dataset["id"], "pipeline", gpus=bad), 422, "gpus"
        )
        assert problem["errors"][0]["field"] == "body.params.gpus", problem
    started = _start(client, auth, tiny_dataset["id"], "pipeline", gpus=2)
    assert started.status_code == 202, started.text
    assert started.json()["parameters"]["gpus"] == 2
