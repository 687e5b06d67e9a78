"""Registering datasets: path confinement, layout validation, names, reads."""

from __future__ import annotations

import os

from service_fixtures import assert_problem, make_folder_dataset


def test_register_list_and_get(client, tiny_dataset):
    assert tiny_dataset["counts"]["train"] == {"ground": 3, "satellite": 3, "known_pairs": 3}
    assert tiny_dataset["has_ground_truth"] is True
    assert tiny_dataset["validation_report"]["ok"] is True
    listed = client.get("/api/v1/datasets").json()
    assert listed["total"] == 1 and listed["items"][0]["name"] == "tiny"
    one = client.get(f"/api/v1/datasets/{tiny_dataset['id']}")
    assert one.status_code == 200 and one.json()["root_path"].endswith("tiny")
    assert_problem(client.get("/api/v1/datasets/999"), 404, "dataset 999")


def test_duplicate_name_is_a_conflict(client, auth, tiny_dataset):
    body = {"name": "tiny", "path": "tiny", "format": "folder"}
    assert_problem(client.post("/api/v1/datasets", json=body, headers=auth), 409, "'tiny'")


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


def test_layout_errors_name_the_file(client, auth, service_settings):
    root = make_folder_dataset(service_settings.data_roots[0] / "broken")
    (root / "pairs.csv").write_text("ground,satellite\nmissing_pano,s000\n")
    body = {"name": "broken", "path": "broken", "format": "folder"}
    problem = assert_problem(client.post("/api/v1/datasets", json=body, headers=auth), 422)
    assert "pairs.csv" in problem["detail"], problem
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
    from ucvgl.shared.db import Database
    from ucvgl.shared.models import Dataset
    from ucvgl.worker.tasks import load_registered_dataset

    root = make_folder_dataset(service_settings.data_roots[0] / "holey", n=4)
    (root / "ground" / "g001.png").unlink()
    body = {"name": "holey", "path": "holey", "format": "folder"}
    assert_problem(client.post("/api/v1/datasets", json=body, headers=auth), 422, "g001")
    created = client.post("/api/v1/datasets", json={**body, "skip_invalid": True}, headers=auth)
    assert created.status_code == 201, created.text
    assert created.json()["validation_report"]["skipped"] == 1
    database = Database.from_settings(service_settings)
    try:
        with database.session() as session:
            row = session.get(Dataset, created.json()["id"])
            assert row.load_options == {"skip_invalid": True}
            reloaded = load_registered_dataset(row)
    finally:
        database.dispose()
    assert reloaded.report.skipped == 1
    assert sum(s.num_ground for s in reloaded.splits.values()) == 3
