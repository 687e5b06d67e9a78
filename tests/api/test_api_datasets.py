"""Registering datasets (a job): path confinement, layout validation, names, reads."""

from __future__ import annotations

import os

import sqlalchemy as sa
from service_fixtures import (
    TINY_DATASET,
    assert_problem,
    make_folder_dataset,
    register_dataset,
    registered,
    run_job_here,
)

from ucvgl.shared.db import Database
from ucvgl.shared.models import Dataset


def dataset_names(settings) -> list[str]:
    """Names of the Dataset rows in the database, read directly."""
    database = Database.from_settings(settings)
    try:
        with database.sessions() as session:
            return list(session.scalars(sa.select(Dataset.name).order_by(Dataset.id)))
    finally:
        database.dispose()


def test_register_list_and_get(client, tiny_dataset):
    assert tiny_dataset["counts"]["train"] == {"ground": 3, "satellite": 3, "known_pairs": 3}
    assert tiny_dataset["has_ground_truth"] is True
    assert tiny_dataset["validation_report"]["ok"] is True
    listed = client.get("/api/v1/datasets").json()
    assert listed["total"] == 1 and listed["items"][0]["name"] == "tiny"
    one = client.get(f"/api/v1/datasets/{tiny_dataset['id']}")
    assert one.status_code == 200 and one.json()["root_path"].endswith("tiny")
    assert_problem(client.get("/api/v1/datasets/999"), 404, "dataset 999")


def test_registration_is_a_job_that_records_the_dataset(client, auth, service_settings):
    root = make_folder_dataset(service_settings.data_roots[0] / "big")
    body = {"name": "big", "path": "big", "format": "folder"}
    response = client.post("/api/v1/datasets", json=body, headers=auth)
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/api/v1/jobs/{job['id']}"
    assert int(response.headers["retry-after"]) > 0
    assert job["type"] == "register" and job["state"] == "QUEUED" and job["dataset_id"] is None
    assert job["parameters"] == {
        "name": "big",
        "path": str(root.resolve()),
        "format": "folder",
        "skip_invalid": False,
    }
    # Nothing is recorded before the worker has loaded and validated the dataset.
    assert client.get("/api/v1/datasets").json()["total"] == 0
    # The name is taken while the job is active, and so is the folder.
    assert_problem(
        client.post("/api/v1/datasets", json=body, headers=auth), 409, f"job {job['id']}", "'big'"
    )
    other = {**body, "name": "big2"}
    busy = assert_problem(client.post("/api/v1/datasets", json=other, headers=auth), 409, "big")
    assert busy["conflicting_job_id"] == job["id"] and "run_name" not in busy["detail"]
    assert run_job_here(service_settings, job["id"]) == "SUCCEEDED"
    done = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert done["progress"] == 1.0 and done["result"]["root"] == str(root.resolve())
    dataset = registered(client, done)
    assert dataset["name"] == "big" and dataset["counts"]["val"]["ground"] == 1
    assert client.get("/api/v1/datasets").json()["total"] == 1


def test_duplicate_name_is_a_conflict(client, auth, tiny_dataset):
    response = client.post("/api/v1/datasets", json=TINY_DATASET, headers=auth)
    assert_problem(response, 409, "'tiny'")


def test_name_taken_while_the_job_waited_fails_the_job(client, auth, service_settings):
    """The unique name is checked again when the row is inserted: FAILED, nothing written."""
    make_folder_dataset(service_settings.data_roots[0] / "race")
    body = {"name": "race", "path": "race", "format": "folder"}
    response = client.post("/api/v1/datasets", json=body, headers=auth)
    assert response.status_code == 202, response.text
    database = Database.from_settings(service_settings)
    try:
        with database.session() as session:  # another registration won the name meanwhile
            session.add(Dataset(name="race", format="folder", root_path="/elsewhere"))
    finally:
        database.dispose()
    job_id = response.json()["id"]
    assert run_job_here(service_settings, job_id) == "FAILED"
    job = client.get(f"/api/v1/jobs/{job_id}").json()
    assert "'race' already exists" in job["error"] and "Traceback" not in job["error"]
    assert job["dataset_id"] is None and job["result"] is None
    assert dataset_names(service_settings) == ["race"]
    assert client.get("/api/v1/datasets").json()["items"][0]["root_path"] == "/elsewhere"


def test_a_cancelled_registration_records_nothing(client, auth, service_settings):
    make_folder_dataset(service_settings.data_roots[0] / "later")
    body = {"name": "later", "path": "later", "format": "folder"}
    job = client.post("/api/v1/datasets", json=body, headers=auth).json()
    cancelled = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=auth)
    assert cancelled.status_code == 202 and cancelled.json()["state"] == "CANCELLED"
    assert run_job_here(service_settings, job["id"]) == "CANCELLED"
    assert dataset_names(service_settings) == []
    # The name and the folder are free again.
    assert registered(client, register_dataset(client, auth, body, settings=service_settings))


def test_register_jobs_are_not_started_through_jobs(client, auth, tiny_dataset):
    body = {"type": "register", "dataset_id": tiny_dataset["id"]}
    assert_problem(
        client.post("/api/v1/jobs", json=body, headers=auth), 422, "POST /api/v1/datasets"
    )


def test_paths_outside_the_data_roots_are_refused(client, auth, service_settings, tmp_path):
    outside = make_folder_dataset(tmp_path / "outside")
    root = service_settings.data_roots[0]
    os.symlink(outside, root / "link")
    for path in (str(outside), "../outside", "link", str(root / "link" / ".." / "..")):
        body = {"name": "x", "path": path, "format": "folder"}
        problem = assert_problem(
            client.post("/api/v1/datasets", json=body, headers=auth), 422, "body.path"
        )
        assert problem["errors"][0]["field"] == "body.path"
        assert "outside the allowed data roots" in problem["detail"]


def test_layout_errors_fail_the_job_naming_the_file(client, auth, service_settings):
    root = make_folder_dataset(service_settings.data_roots[0] / "broken")
    (root / "pairs.csv").write_text("ground,satellite\nmissing_pano,s000\n")
    body = {"name": "broken", "path": "broken", "format": "folder"}
    job = register_dataset(client, auth, body, settings=service_settings)
    assert job["state"] == "FAILED", job
    assert "pairs.csv" in job["error"] and "folder layout" in job["error"], job
    assert "Traceback" not in job["error"] and job["dataset_id"] is None
    assert dataset_names(service_settings) == []
    missing = {"name": "nothing", "path": "nothing", "format": "folder"}
    assert_problem(
        client.post("/api/v1/datasets", json=missing, headers=auth), 422, "not an existing folder"
    )


def test_validation_errors_name_the_field(client, auth):
    body = {"name": "bad name!", "path": "x", "format": "kml"}
    problem = assert_problem(client.post("/api/v1/datasets", json=body, headers=auth), 422)
    fields = {e["field"] for e in problem["errors"]}
    assert {"body.name", "body.format"} <= fields
    assert "body.format" in problem["detail"]


def test_synthetic_dataset_is_a_job_under_the_first_data_root(client, auth, service_settings):
    body = {"name": "world", "n_train": 4, "n_val": 2}
    response = client.post("/api/v1/datasets/synthetic", json=body, headers=auth)
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/api/v1/jobs/{job['id']}"
    assert job["type"] == "synthetic" and job["state"] == "QUEUED"
    assert job["run_dir"] == str((service_settings.data_roots[0] / "world").resolve())
    assert job["parameters"]["format"] == "cvusa" and job["parameters"]["n_train"] == 4
    again = client.post("/api/v1/datasets/synthetic", json=body, headers=auth)
    assert_problem(again, 409, f"job {job['id']}")
    (service_settings.data_roots[0] / "taken").mkdir()
    taken = {"name": "taken"}
    assert_problem(
        client.post("/api/v1/datasets/synthetic", json=taken, headers=auth), 409, "exists"
    )
    assert_problem(client.post("/api/v1/datasets/synthetic", json=body), 401)


def test_skip_invalid_registration_is_remembered_for_workers(client, auth, service_settings):
    """A dataset registered with skip_invalid loads the same way in a worker later."""
    from ucvgl.worker.tasks import load_registered_dataset

    root = make_folder_dataset(service_settings.data_roots[0] / "holey", n=4)
    (root / "ground" / "g001.png").unlink()
    body = {"name": "holey", "path": "holey", "format": "folder"}
    failed = register_dataset(client, auth, body, settings=service_settings)
    assert failed["state"] == "FAILED" and "g001" in failed["error"], failed
    skipping = {**body, "skip_invalid": True}
    created = registered(
        client, register_dataset(client, auth, skipping, settings=service_settings)
    )
    assert created["validation_report"]["skipped"] == 1
    database = Database.from_settings(service_settings)
    try:
        with database.session() as session:
            row = session.get(Dataset, created["id"])
            assert row.load_options == {"skip_invalid": True}
            reloaded = load_registered_dataset(row)
    finally:
        database.dispose()
    assert reloaded.report.skipped == 1
    assert sum(s.num_ground for s in reloaded.splits.values()) == 3
