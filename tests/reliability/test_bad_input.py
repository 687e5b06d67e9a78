"""Bad input the API tests of tests/api do not cover yet: every answer is a 4xx
problem+json naming the field and what to do (a dataset that only its registration job can
read ends that job FAILED, naming the file), and nothing stored is lost (row counts and the
stored rows are the same before and after). Ends with a bounded property-based fuzz of the
JSON endpoints (hypothesis)."""

from __future__ import annotations

import io
import shutil

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from PIL import Image
from service_fixtures import assert_problem, make_folder_dataset, register_dataset

from ucvgl.shared.db import Database
from ucvgl.shared.models import Base, Model, RetrievalIndex


def snapshot(database: Database) -> dict[str, list[tuple]]:
    """Every row of every service table (what 'nothing stored is lost' compares)."""
    with database.engine.connect() as conn:
        return {
            table.name: sorted(
                (tuple(map(str, row)) for row in conn.execute(sa.select(table))), key=str
            )
            for table in Base.metadata.sorted_tables
            if table.name != "worker_heartbeats"
        }


@pytest.fixture
def stored(client, auth, tiny_dataset, service_settings):
    """A dataset, a queued job, a model and an index; yields a check that none changed."""
    job = client.post(
        "/api/v1/jobs", json={"type": "project", "dataset_id": tiny_dataset["id"]}, headers=auth
    )
    assert job.status_code == 202, job.text
    database = Database.from_settings(service_settings)
    with database.session() as session:
        model = Model(
            dataset_id=tiny_dataset["id"], run_dir="/r", checkpoint_path="/r/m.pt", mode="semi"
        )
        session.add(model)
        session.flush()
        session.add(RetrievalIndex(model_id=model.id, path="/r/index", kind="flat", size=3))
    before = snapshot(database)
    assert before["datasets"] and before["jobs"] and before["indexes"]

    def unchanged(*, new_jobs: bool = False) -> None:
        """Every stored row is as it was (with ``new_jobs``, jobs may have been added)."""
        after = snapshot(database)
        if new_jobs:
            assert set(before["jobs"]) <= set(after["jobs"])
            after["jobs"] = before["jobs"]
        assert after == before

    yield unchanged
    database.dispose()


def jpeg(size=(64, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 120, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_bad_datasets_are_refused_naming_the_problem(client, auth, service_settings, stored):
    from ucvgl.services.synth import generate_world

    root = service_settings.data_roots[0]
    (root / "empty").mkdir()
    generate_world(root / "cvusa", "cvusa", 4, 2, seed=0, pano_size=(32, 64), sat_size=32)
    shutil.copytree(root / "cvusa", root / "malformed")
    split = root / "malformed" / "splits" / "train-19zl.csv"
    split.write_text(split.read_text() + "only-one-column\n")
    make_folder_dataset(root / "folder")

    def register(name: str, path: str, fmt: str) -> dict:
        """The finished registration job (run in this process)."""
        body = {"name": name, "path": path, "format": fmt}
        job = register_dataset(client, auth, body, settings=service_settings)
        assert job["state"] == "FAILED" and "Traceback" not in job["error"], job
        return job

    def refused(path: str):
        body = {"name": "w", "path": path, "format": "folder"}
        return client.post("/api/v1/datasets", json=body, headers=auth)

    empty = register("e", "empty", "folder")["error"]
    assert "empty" in empty and "folder layout" in empty
    malformed = register("m", "malformed", "cvusa")["error"]
    assert "train-19zl.csv" in malformed
    assert "only-one-column" in malformed or ":5" in malformed, malformed
    assert "vigor layout" in register("w", "cvusa", "vigor")["error"]
    assert "cvact layout" in register("w", "folder", "cvact")["error"]
    assert_problem(refused("folder/../../.."), 422, "body.path")
    assert_problem(refused("/etc"), 422, "outside the allowed data roots")
    stored(new_jobs=True)  # the FAILED registration jobs, and no dataset


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"gt_ratio": 1.5}, "body.params.gt_ratio"),
        ({"gt_ratio": -0.1}, "body.params.gt_ratio"),
        ({"gt_ratio": 0}, "body.params.gt_ratio"),
        ({"round": 0}, "body.params.round"),
        ({"round": "two"}, "body.params.round"),
        ({"mode": "magic"}, "body.params.mode"),
        ({"preset": "huge"}, "body.params"),
        ({"threshold": -1.0}, "body.params.threshold"),
        ({"seed": True}, "body.params.seed"),
    ],
)
def test_invalid_job_parameters_name_the_field(client, auth, tiny_dataset, stored, params, field):
    job_type = "amm_round" if "round" in params else "pipeline"
    body = {"type": job_type, "dataset_id": tiny_dataset["id"], "params": params}
    problem = assert_problem(client.post("/api/v1/jobs", json=body, headers=auth), 422, field)
    assert problem["errors"][0]["field"].startswith(field)
    stored()


def test_invalid_synthetic_and_index_requests(client, auth, stored):
    for body, field in (
        ({"name": "w", "n_train": 0}, "body.n_train"),
        ({"name": "w", "n_val": -3}, "body.n_val"),
        ({"name": "w", "pano_width": 10**9}, "body.pano_width"),
        ({"name": "../escape"}, "body.name"),
        ({"name": "w", "format": "kml"}, "body.format"),
        ({"name": "w", "extra": 1}, "body.extra"),
    ):
        response = client.post("/api/v1/datasets/synthetic", json=body, headers=auth)
        assert_problem(response, 422, field)
    assert_problem(client.post("/api/v1/indexes", json={"model_id": "x"}, headers=auth), 422)
    assert_problem(client.post("/api/v1/jobs", content=b"{not json", headers=auth), 422)
    stored()


def test_bad_uploads(client, auth, stored, service_settings):
    client.app.state.settings = service_settings.model_copy(update={"max_upload_bytes": 50_000})
    truncated = jpeg()[:200]
    for files, data, status, needle in (
        ([("files", ("cut.jpg", truncated, "image/jpeg"))], {}, 422, "cut.jpg"),
        ([("files", ("a.jpg", jpeg(), "image/jpeg"))], {"k": "0"}, 422, "k"),
        ([("files", ("a.jpg", jpeg(), "image/jpeg"))], {"k": "-2"}, 422, "k"),
        ([("files", ("a.jpg", jpeg(), "image/jpeg"))], {"index_id": "abc"}, 422, "index_id"),
        ([("files", ("a.txt", b"hello", "text/plain"))], {}, 422, "a.txt"),
    ):
        assert_problem(client.post("/api/v1/query", files=files, data=data), status, needle)
    stored()


def test_oversized_body_is_413_before_it_is_read(client, auth, stored):
    limit = client.app.state.settings.max_upload_bytes + 1024 * 1024
    huge = b"x" * (limit + 1)
    response = client.post(
        "/api/v1/query", content=huge, headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert_problem(response, 413, "exceeds", "UCVGL_MAX_UPLOAD_BYTES")

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(limit // 65536 + 2):
            yield b"y" * 65536

    response = client.post(
        "/api/v1/jobs", content=chunks(), headers={**auth, "content-type": "application/json"}
    )
    assert_problem(response, 413, "exceeds")
    stored()


def test_unknown_ids_are_404_naming_them(client, auth, stored):
    for method, path, needle in (
        ("get", "/api/v1/datasets/4040", "dataset 4040"),
        ("get", "/api/v1/jobs/4040", "job 4040"),
        ("post", "/api/v1/jobs/4040/cancel", "job 4040"),
        ("post", "/api/v1/jobs/4040/retry", "job 4040"),
        ("get", "/api/v1/models/4040", "model 4040"),
        ("get", "/api/v1/indexes/4040", "index 4040"),
        ("get", "/api/v1/rounds/4040", "round 4040"),
        ("get", "/api/v1/rounds/4040/labels", "round 4040"),
        ("get", "/api/v1/rounds/4040/labels.csv", "round 4040"),
        ("get", "/api/v1/datasets/4040/rounds", "dataset 4040"),
    ):
        assert_problem(getattr(client, method)(path, headers=auth), 404, needle)
    assert_problem(client.get("/api/v1/jobs/-1"), 422, "path.job_id")
    assert_problem(client.get("/api/v1/jobs/abc"), 422, "path.job_id")
    stored()


def test_retry_of_an_active_or_finished_job_is_409(client, auth, stored):
    queued = client.get("/api/v1/jobs").json()["items"][0]
    assert_problem(client.post(f"/api/v1/jobs/{queued['id']}/retry", headers=auth), 409, "QUEUED")
    stored()


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
JOB_BODIES = (
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["pipeline", "amm_round", "index", "dance", ""]) | JSON,
            "dataset_id": st.integers(-5, 5) | JSON,
            "model_id": st.integers(-5, 5) | JSON,
            "params": st.dictionaries(
                st.sampled_from(["gt_ratio", "round", "mode", "preset", "seed", "run_name", "k"]),
                JSON,
            )
            | JSON,
        },
    )
    | JSON
)
DATASET_BODIES = (
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.text(max_size=20) | JSON,
            "path": st.sampled_from(["..", "/", "tiny/..", "../../etc", "tiny", "~"]) | JSON,
            "format": st.sampled_from(["cvusa", "cvact", "vigor", "folder", "x"]) | JSON,
            "skip_invalid": JSON,
        },
    )
    | JSON
)


@hypothesis_settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    endpoint=st.sampled_from(["/api/v1/jobs", "/api/v1/datasets", "/api/v1/indexes"]),
    job=JOB_BODIES,
    dataset=DATASET_BODIES,
)
def test_fuzzed_json_bodies_never_500_and_never_lose_rows(
    client, auth, stored, service_settings, endpoint, job, dataset
):
    body = dataset if endpoint == "/api/v1/datasets" else job
    database = client.app.state.database
    before = snapshot(database)
    response = client.post(endpoint, json=body, headers=auth)
    assert response.status_code < 500, (body, response.text)
    after = snapshot(database)
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["detail"]
        assert after == before, body
    else:  # a valid body (a new job): it only added rows
        for table, rows in before.items():
            assert set(rows) <= set(after[table]), (table, body)
