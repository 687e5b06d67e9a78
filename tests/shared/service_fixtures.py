"""Fixtures for the service tests (API, worker, database), shared by their conftests.

``db_url`` is parametrised over SQLite (a file per test) and PostgreSQL (a fresh schema per
test session, emptied between tests, dropped at the end; skipped when unreachable).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ucvgl.shared.config import Settings
from ucvgl.shared.db import create_db_engine, upgrade_database
from ucvgl.shared.models import Base, Dataset, Model, RetrievalIndex

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
API_TOKEN = "test-token-0123456789"


def postgres_reachable(url: str = POSTGRES_URL) -> bool:
    """True when PostgreSQL answers at ``url`` within 3 s."""
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


def schema_url(schema: str, base: str = POSTGRES_URL) -> str:
    """``base`` with every connection's search_path set to ``schema``."""
    return f"{base}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_db_url(request, tmp_path) -> Iterator[str]:
    """An EMPTY database (no schema yet): a new SQLite file or a new PostgreSQL schema,
    dropped afterwards (migration tests)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite'}"
        return
    if not postgres_reachable():
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")
    schema = f"ucvgl_mig_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_schema_url() -> Iterator[str | None]:
    """A migrated schema of its own for this test session (None when PostgreSQL is down)."""
    if not postgres_reachable():
        yield None
        return
    schema = f"ucvgl_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = schema_url(schema)
    try:
        upgrade_database(url)
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def empty_tables(url: str) -> None:
    """Delete every row of the service tables (keeps the schema and its version)."""
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            names = ", ".join(t.name for t in Base.metadata.sorted_tables)
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: a SQLite file or this session's PostgreSQL schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'service.sqlite'}"
        upgrade_database(url)
        return url
    url = request.getfixturevalue("postgres_schema_url")
    if url is None:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")
    empty_tables(url)
    return url


@pytest.fixture
def service_settings(settings: Settings, db_url: str) -> Settings:
    """Isolated settings (tmp work dir, data root, broker) on ``db_url`` with a test token."""
    return settings.model_copy(update={"database_url": db_url, "api_token": API_TOKEN})


@pytest.fixture
def auth() -> dict[str, str]:
    """Headers carrying the test API token."""
    return {"Authorization": f"Bearer {API_TOKEN}"}


def add_indexed_run(
    session,
    *,
    dataset: dict[str, Any],
    run_dir: Path,
    index_dir: Path,
    size: int,
    checkpoint: str | None = None,
    **model: Any,
) -> RetrievalIndex:
    """Rows of a dataset, a supervised model trained on it (the run ``run_dir``) and an
    index of ``size`` tiles at ``index_dir``; flushed, so their ids are set.

    ``dataset``: ``name``, ``format``, ``root_path``; ``checkpoint`` defaults to the run's
    selected model; ``model``: other ``Model`` columns (``mode``, ``preset``).
    """
    row = Dataset(counts={}, has_ground_truth=True, validation_report={}, **dataset)
    session.add(row)
    session.flush()
    trained = Model(
        dataset_id=row.id,
        run_dir=str(run_dir),
        checkpoint_path=checkpoint or str(run_dir / "model" / "selected.pt"),
        **{"mode": "supervised", **model},
    )
    session.add(trained)
    session.flush()
    index = RetrievalIndex(model_id=trained.id, path=str(index_dir), kind="flat", size=size)
    session.add(index)
    session.flush()
    return index


def make_folder_dataset(root: Path, n: int = 4, seed: int = 0) -> Path:
    """A tiny dataset in the generic folder layout: n panoramas, n tiles, known pairs."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "ground").mkdir(parents=True, exist_ok=True)
    (root / "satellite").mkdir(parents=True, exist_ok=True)
    lines = ["ground,satellite,split"]
    coords = ["name,lat,lon"]
    for i in range(n):
        pano = rng.integers(0, 255, size=(16, 32, 3), dtype=np.uint8)
        tile = rng.integers(0, 255, size=(16, 16, 3), dtype=np.uint8)
        Image.fromarray(pano).save(root / "ground" / f"g{i:03d}.png")
        Image.fromarray(tile).save(root / "satellite" / f"s{i:03d}.png")
        lines.append(f"g{i:03d},s{i:03d},{'train' if i < n - 1 else 'val'}")
        coords.append(f"s{i:03d},{45.0 + i * 1e-4},{7.0 + i * 1e-4}")
    (root / "pairs.csv").write_text("\n".join(lines) + "\n")
    (root / "satellite_coords.csv").write_text("\n".join(coords) + "\n")
    return root


@pytest.fixture
def client(service_settings: Settings) -> Iterator:
    """A TestClient of the app on the test database (errors answered, not raised)."""
    from fastapi.testclient import TestClient

    from ucvgl.api.main import create_app

    with TestClient(create_app(service_settings), raise_server_exceptions=False) as test_client:
        yield test_client


TERMINAL_STATES = {"SUCCEEDED", "FAILED", "CANCELLED"}


def run_job_here(settings: Settings, job_id: int) -> str:
    """Run a queued ``register``/``synthetic`` job with the worker's task body in this
    process (API tests have no worker; the worker tests start real ones). Returns its state."""
    from ucvgl.shared.db import Database
    from ucvgl.worker.tasks import execute_job

    def no_runner(*args: Any) -> dict:
        raise AssertionError("a job that creates a dataset does not use the pipeline runner")

    database = Database.from_settings(settings)
    try:
        state = execute_job(
            job_id, database=database, settings=settings, runner=no_runner, hostname="test@here"
        )
    finally:
        database.dispose()
    return state.value


def register_dataset(
    client, auth, body: dict, *, settings: Settings | None = None, timeout_s: float = 60.0
) -> dict:
    """``POST /datasets`` (202 + a ``register`` job) and wait for the job to end.

    With ``settings`` the job runs in this process (:func:`run_job_here`); without, a running
    worker must take it. Returns the finished job as ``GET /jobs/{id}`` shows it.
    """
    response = client.post("/api/v1/datasets", json=body, headers=auth)
    assert response.status_code == 202, response.text
    job = response.json()
    # a running worker may have taken the job before the API read it back for the answer
    possible = {"QUEUED"} if settings is not None else {"QUEUED", "RUNNING", *TERMINAL_STATES}
    assert job["type"] == "register" and job["state"] in possible, job
    assert response.headers["location"] == f"/api/v1/jobs/{job['id']}"
    assert int(response.headers["retry-after"]) > 0
    if settings is not None:
        run_job_here(settings, job["id"])
    return poll_job(client, job["id"], TERMINAL_STATES, timeout_s, headers=auth)


def poll_job(
    client,
    job_id: int,
    states: set[str],
    timeout_s: float = 60.0,
    *,
    headers: dict | None = None,
    interval_s: float = 0.2,
) -> dict:
    """GET the job until its state is in ``states`` (a 503 answer without a state counts as
    not yet); AssertionError with the last answer after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}", headers=headers).json()
        if job.get("state") in states:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} not in {sorted(states)} after {timeout_s} s: {job}")
        time.sleep(interval_s)


def start_tiny_pipeline(client, auth, fmt: str, name: str = "world") -> tuple[int, int]:
    """Register the ``fmt`` dataset at ``<first data root>/<name>`` (a running worker takes
    the job) and start an unsupervised ``tiny`` pipeline on it on the CPU (202 asserted).

    Returns (dataset id, pipeline job id).
    """
    body = {"name": name, "path": name, "format": fmt}
    dataset_id = registered(client, register_dataset(client, auth, body))["id"]
    params = {"mode": "unsupervised", "preset": "tiny", "device": "cpu"}
    job = {"type": "pipeline", "dataset_id": dataset_id, "params": params}
    started = client.post("/api/v1/jobs", json=job, headers=auth)
    assert started.status_code == 202, started.text
    return dataset_id, started.json()["id"]


TINY_WORLD = {
    "name": "world",
    "format": "cvact",
    "n_train": 24,
    "n_val": 8,
    "seed": 0,
    "pano_height": 32,
    "pano_width": 64,
    "sat_size": 32,
}
"""``POST /datasets/synthetic`` body of a world the ``tiny`` pipeline trains on in seconds."""


def make_tiny_world(client, auth) -> int:
    """Generate :data:`TINY_WORLD` (a running worker takes the job); its dataset id."""
    made = client.post("/api/v1/datasets/synthetic", json=TINY_WORLD, headers=auth)
    assert made.status_code == 202, made.text
    job = poll_job(client, made.json()["id"], TERMINAL_STATES, 120, interval_s=0.5)
    assert job["state"] == "SUCCEEDED", job
    return job["result"]["dataset_id"]


TINY_DATASET = {"name": "tiny", "path": "tiny", "format": "folder"}
"""Registration body of the folder dataset :func:`make_folder_dataset` writes to
``<first data root>/tiny``."""


def register_tiny_dataset(client, auth, *, settings: Settings | None = None) -> dict:
    """Register :data:`TINY_DATASET` and return the dataset as ``GET /datasets/{id}`` shows
    it (with ``settings`` the job runs here, else a running worker must take it)."""
    return registered(client, register_dataset(client, auth, TINY_DATASET, settings=settings))


def registered(client, job: dict) -> dict:
    """The dataset a SUCCEEDED ``register`` job recorded, as ``GET /datasets/{id}`` shows it."""
    assert job["state"] == "SUCCEEDED", job
    dataset_id = job["result"]["dataset_id"]
    assert job["dataset_id"] == dataset_id and job["links"]["dataset"].endswith(f"/{dataset_id}")
    response = client.get(f"/api/v1/datasets/{dataset_id}")
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def tiny_dataset(client, auth, service_settings) -> dict:
    """A registered tiny folder dataset (4 pairs), as the API returns it."""
    make_folder_dataset(service_settings.data_roots[0] / "tiny")
    return register_tiny_dataset(client, auth, settings=service_settings)


def assert_problem(response, status: int, *needles: str) -> dict:
    """Assert an application/problem+json answer of ``status`` whose detail has ``needles``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert {"type", "title", "status", "detail", "instance"} <= set(body)
    assert body["status"] == status and "Traceback" not in response.text
    for needle in needles:
        assert needle in body["detail"], body
    return body
