"""A ``synthetic`` job whose name was taken while it ran removes only the world it made."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from fake_runner import run_job as fake_run_job

from ucvgl.shared.db import Database
from ucvgl.shared.enums import JobState
from ucvgl.shared.models import Dataset, Job
from ucvgl.worker.tasks import execute_job, remove_generated_world

WORLD = {
    "format": "folder",
    "n_train": 2,
    "n_val": 1,
    "seed": 0,
    "pano_height": 8,
    "pano_width": 16,
    "sat_size": 8,
}


def _synthetic_job(db: Database, settings, name: str) -> int:
    """A queued synthetic job for ``name`` (as ``POST /datasets/synthetic`` writes it)."""
    out = settings.data_roots[0].resolve() / name
    with db.session() as s:
        job = Job(
            type="synthetic",
            parameters={"name": name, **WORLD},
            run_dir=str(out),
            state=JobState.QUEUED,
        )
        s.add(job)
    return job.id


def _take_name(db: Database, name: str, root_path: str) -> None:
    """Another registration wins ``name`` while the job is queued."""
    with db.session() as s:
        s.add(Dataset(name=name, format="folder", root_path=root_path))


def _run(db: Database, settings, job_id: int) -> JobState:
    return execute_job(
        job_id, database=db, settings=settings, runner=fake_run_job, hostname="test@host"
    )


def _job(db: Database, job_id: int) -> Job:
    with db.sessions() as s:
        return s.get(Job, job_id)


def test_name_taken_removes_the_world_this_job_generated(service_settings, tmp_path):
    db = Database.from_settings(service_settings)
    data_root = service_settings.data_roots[0].resolve()
    neighbour = data_root / "neighbour"
    (neighbour / "keep.txt").parent.mkdir(parents=True)
    (neighbour / "keep.txt").write_text("not ours")
    job_id = _synthetic_job(db, service_settings, "world")
    _take_name(db, "world", str(tmp_path / "elsewhere"))
    assert _run(db, service_settings, job_id) is JobState.FAILED
    job = _job(db, job_id)
    assert "'world' already exists" in job.error and "Traceback" not in job.error
    assert f"the generated folder {data_root / 'world'} was removed" in job.error
    assert not (data_root / "world").exists()
    assert data_root.is_dir() and (neighbour / "keep.txt").read_text() == "not ours"
    with db.sessions() as s:
        assert s.scalars(sa.select(Dataset.name)).all() == ["world"]
    db.dispose()


def test_a_folder_that_existed_before_the_job_is_kept(service_settings):
    db = Database.from_settings(service_settings)
    out = service_settings.data_roots[0].resolve() / "world"
    out.mkdir()  # empty: the generator accepts it, but this job did not create it
    job_id = _synthetic_job(db, service_settings, "world")
    _take_name(db, "world", "/elsewhere")
    assert _run(db, service_settings, job_id) is JobState.FAILED
    job = _job(db, job_id)
    assert "'world' already exists" in job.error and "removed" not in job.error
    assert out.is_dir() and any(out.iterdir())  # the generated files stay with the folder
    db.dispose()


def test_a_folder_another_dataset_points_at_is_kept(service_settings):
    """The name was won by a dataset of the same folder (e.g. a twin synthetic job)."""
    db = Database.from_settings(service_settings)
    out = service_settings.data_roots[0].resolve() / "world"
    job_id = _synthetic_job(db, service_settings, "world")
    _take_name(db, "world", str(out))
    assert _run(db, service_settings, job_id) is JobState.FAILED
    assert "removed" not in _job(db, job_id).error
    assert out.is_dir() and any(out.iterdir())
    db.dispose()


def test_success_keeps_the_world_and_records_it(service_settings):
    db = Database.from_settings(service_settings)
    out = service_settings.data_roots[0].resolve() / "world"
    job_id = _synthetic_job(db, service_settings, "world")
    assert _run(db, service_settings, job_id) is JobState.SUCCEEDED
    assert out.is_dir() and any(out.iterdir())
    with db.sessions() as s:
        dataset = s.scalars(sa.select(Dataset)).one()
        assert Path(dataset.root_path) == out and dataset.name == "world"
    db.dispose()


def test_removal_refuses_anything_but_an_unused_folder_below_a_data_root(
    service_settings, tmp_path
):
    db = Database.from_settings(service_settings)
    data_root = service_settings.data_roots[0].resolve()
    outside = tmp_path / "outside"
    (outside / "f").mkdir(parents=True)
    link = data_root / "link"
    link.symlink_to(outside, target_is_directory=True)
    busy = data_root / "busy"
    (busy / "sub").mkdir(parents=True)
    with db.session() as s:  # another job runs in busy/sub
        s.add(
            Job(type="synthetic", parameters={}, run_dir=str(busy / "sub"), state=JobState.RUNNING)
        )
    free = data_root / "free"
    (free / "deep").mkdir(parents=True)
    for folder in (outside, data_root, link, busy, data_root / "missing"):
        assert not remove_generated_world(db, service_settings, 999, folder), folder
    assert (outside / "f").is_dir() and link.is_symlink() and (busy / "sub").is_dir()
    assert remove_generated_world(db, service_settings, 999, free)
    assert not free.exists() and data_root.is_dir()
    db.dispose()
