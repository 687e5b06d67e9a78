"""Jobs take preset overrides (``params.overrides``); bad ones are a 422 naming the key."""

from __future__ import annotations

from service_fixtures import assert_problem

from ucvgl.services.pipeline import validate_job_params


def _start(client, auth, dataset_id, job_type="pipeline", **params):
    body = {"type": job_type, "dataset_id": dataset_id, "params": params}
    return client.post("/api/v1/jobs", json=body, headers=auth)


def test_overrides_are_accepted_and_kept_with_the_job(client, auth, tiny_dataset):
    overrides = {"batch_size": 8, "ground_size": [32, 64], "weights": "none", "lr": "1e-3"}
    response = _start(
        client,
        auth,
        tiny_dataset["id"],
        preset="paper-small",
        mode="supervised",
        overrides=overrides,
    )
    assert response.status_code == 202, response.text
    assert response.json()["parameters"]["overrides"] == overrides


def test_bad_overrides_are_refused_naming_the_key(client, auth, tiny_dataset):
    problem = assert_problem(
        _start(client, auth, tiny_dataset["id"], overrides={"batchsize": 8}),
        422,
        "body.params.overrides.batchsize",
    )
    assert "batch_size" in str(problem)  # the allowed keys are listed
    assert_problem(
        _start(client, auth, tiny_dataset["id"], overrides={"safa": "maybe"}),
        422,
        "body.params.overrides.safa",
    )
    assert_problem(
        _start(client, auth, tiny_dataset["id"], overrides=["lr=1"]), 422, "body.params.overrides"
    )
    assert_problem(
        _start(client, auth, tiny_dataset["id"], overrides={"photometric": "wild"}),
        422,
        "photometric",
    )


def test_validate_job_params_checks_overrides_against_the_named_preset():
    ok = validate_job_params("cold_start", {"preset": "tiny", "overrides": {"amm_rounds": 3}})
    assert ok["overrides"] == {"amm_rounds": 3}


def test_model_jobs_inherit_the_training_jobs_overrides(
    client, auth, tiny_dataset, service_settings
):
    from ucvgl.shared.db import Database
    from ucvgl.shared.enums import JobState
    from ucvgl.shared.models import Job, Model

    overrides = {"batch_size": 8, "weights": "none"}
    db = Database.from_settings(service_settings)
    with db.session() as s:
        s.add(
            Job(
                type="pipeline",
                parameters={"preset": "paper-small", "overrides": overrides},
                state=JobState.SUCCEEDED,
                run_dir="/runs/o",
                dataset_id=tiny_dataset["id"],
                celery_task_id="done-1",
                stage="done",
            )
        )
        model = Model(
            dataset_id=tiny_dataset["id"],
            run_dir="/runs/o",
            checkpoint_path="/runs/o/x.pt",
            mode="unsupervised",
            preset="paper-small",
        )
        s.add(model)
    body = {"type": "evaluate", "dataset_id": tiny_dataset["id"], "model_id": model.id}
    job = client.post("/api/v1/jobs", json=body, headers=auth)
    assert job.status_code == 202, job.text
    assert job.json()["parameters"]["overrides"] == overrides
    db.dispose()
