"""params.init_model_id (start from a model's run) and params.eval_split on POST /jobs."""

from __future__ import annotations

from service_fixtures import assert_problem

from ucvgl.shared.db import Database
from ucvgl.shared.models import Model


def _start(client, auth, dataset_id, job_type="pipeline", **params):
    body = {"type": job_type, "dataset_id": dataset_id, "params": params}
    return client.post("/api/v1/jobs", json=body, headers=auth)


def _model(service_settings, dataset_id, run_dir) -> int:
    db = Database.from_settings(service_settings)
    with db.session() as s:
        model = Model(
            dataset_id=dataset_id,
            run_dir=str(run_dir),
            checkpoint_path=str(run_dir / "model" / "selected.pt"),
            mode="supervised",
        )
        s.add(model)
        s.flush()
        model_id = model.id
    db.dispose()
    return model_id


def test_init_model_id_resolves_to_the_models_run_folder(
    client, auth, tiny_dataset, service_settings, tmp_path
):
    finished = tmp_path / "src"
    (finished / "model").mkdir(parents=True)
    (finished / "model" / "selected.pt").write_bytes(b"weights")
    model_id = _model(service_settings, tiny_dataset["id"], finished)
    response = _start(client, auth, tiny_dataset["id"], mode="unsupervised", init_model_id=model_id)
    assert response.status_code == 202, response.text
    params = response.json()["parameters"]
    assert params["init_model_id"] == model_id and params["init_from"] == str(finished)
    # jobs on the adapted run's model inherit the source (run.json must match)
    db = Database.from_settings(service_settings)
    with db.session() as s:
        adapted = Model(
            dataset_id=tiny_dataset["id"],
            run_dir=response.json()["run_dir"],
            checkpoint_path="x.pt",
            mode="unsupervised",
        )
        s.add(adapted)
        s.flush()
        adapted_id = adapted.id
    db.dispose()
    body = {"type": "evaluate", "dataset_id": tiny_dataset["id"], "model_id": adapted_id}
    client.post(f"/api/v1/jobs/{response.json()['id']}/cancel", headers=auth)
    evaluate = client.post("/api/v1/jobs", json=body, headers=auth)
    assert evaluate.status_code == 202, evaluate.text


def test_init_model_id_and_init_from_are_checked(
    client, auth, tiny_dataset, service_settings, tmp_path
):
    ds = tiny_dataset["id"]
    assert_problem(
        _start(client, auth, ds, init_from="/etc"), 422, "body.params.init_from", "init_model_id"
    )
    assert_problem(
        _start(client, auth, ds, init_model_id=4242), 422, "params.init_model_id", "4242"
    )
    assert_problem(_start(client, auth, ds, init_model_id="3"), 422, "params.init_model_id")
    unfinished = _model(service_settings, ds, tmp_path / "unfinished")
    assert_problem(_start(client, auth, ds, init_model_id=unfinished), 422, "no selected model")


def test_eval_split_is_checked_against_the_dataset_format(client, auth, tiny_dataset):
    ds = tiny_dataset["id"]  # a folder dataset: val and test
    assert_problem(_start(client, auth, ds, eval_split="cross_area"), 422, "body.params.eval_split")
    assert_problem(_start(client, auth, ds, eval_split=3), 422, "params.eval_split")
    ok = _start(client, auth, ds, eval_split=["val", "test"], run_name="splits")
    assert ok.status_code == 202, ok.text
    assert ok.json()["parameters"]["eval_split"] == ["val", "test"]
