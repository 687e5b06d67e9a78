"""The task body run in-process: result recording, failure and cancellation paths."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import sqlalchemy as sa
from fake_runner import run_job as fake_run_job
from service_fixtures import make_folder_dataset

from ucvgl.shared.db import Database
from ucvgl.shared.enums import JobState
from ucvgl.shared.models import (
    Dataset,
    Job,
    Model,
    PseudoLabel,
    PseudoLabelRound,
    RetrievalIndex,
)
from ucvgl.worker.recording import record_index
from ucvgl.worker.tasks import execute_job


def _setup(service_settings, params, job_type="pipeline", state=JobState.QUEUED):
    root = make_folder_dataset(service_settings.data_roots[0] / "tiny")
    db = Database.from_settings(service_settings)
    run_dir = service_settings.work_dir / "runs" / "r1"
    with db.session() as s:
        ds = Dataset(name="tiny", format="folder", root_path=str(root))
        s.add(ds)
        s.flush()
        job = Job(
            type=job_type, parameters=params, run_dir=str(run_dir), dataset_id=ds.id, state=state
        )
        s.add(job)
    return db, job.id, run_dir


def _run(db, service_settings, job_id, runner=fake_run_job):
    return execute_job(
        job_id, database=db, settings=service_settings, runner=runner, hostname="test@host"
    )


def test_success_records_model_rounds_labels_and_index(service_settings):
    db, job_id, run_dir = _setup(service_settings, {"steps": 2, "run_name": "r1"})
    seen = {}

    def runner(job_type, dataset, params, run_dir, progress):
        seen["params"] = params
        return fake_run_job(job_type, dataset, params, run_dir, progress)

    assert _run(db, service_settings, job_id, runner) is JobState.SUCCEEDED
    assert "run_name" not in seen["params"]  # service-only parameter stays in the service
    with db.sessions() as s:
        job = s.get(Job, job_id)
        assert job.state is JobState.SUCCEEDED and job.progress == 1.0
        assert job.worker_hostname == "test@host" and job.finished_at >= job.started_at
        model = s.scalars(sa.select(Model)).one()
        assert model.checkpoint_path == str(run_dir / "model" / "selected.pt")
        assert model.recall["r1"] == 50.0 and model.mode == "unsupervised"
        rnd = s.scalars(sa.select(PseudoLabelRound)).one()
        assert (rnd.round_number, rnd.labels, rnd.mutual, rnd.correct) == (1, 3, 4, 2)
        assert rnd.model_id == model.id and 0.0 < rnd.label_health_score <= 1.0
        labels = s.scalars(sa.select(PseudoLabel).order_by(PseudoLabel.id)).all()
        with open(run_dir / "labels" / "round_001.csv") as fh:
            rows = list(csv.DictReader(fh))
        assert [(lb.ground_id, lb.satellite_id) for lb in labels] == [
            (r["ground_id"], r["satellite_id"]) for r in rows
        ]
        assert [lb.is_correct for lb in labels] == [False, True, True]
        index = s.scalars(sa.select(RetrievalIndex)).one()
        assert (index.model_id, index.kind, index.size) == (model.id, "flat", 3)
        assert job.result["model_id"] == model.id and job.result["index_id"] == index.id
    # Running the same run again does not duplicate its rounds or its model.
    with db.session() as s:
        s.execute(sa.update(Job).values(state=JobState.QUEUED))
    assert _run(db, service_settings, job_id) is JobState.SUCCEEDED
    with db.sessions() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(PseudoLabelRound)) == 1
        assert s.scalar(sa.select(sa.func.count()).select_from(Model)) == 1
        assert s.scalar(sa.select(sa.func.count()).select_from(RetrievalIndex)) == 1
    db.dispose()


def test_failure_keeps_the_message_not_the_traceback(service_settings):
    db, job_id, _ = _setup(service_settings, {"fail": "disk on fire"}, job_type="project")
    assert _run(db, service_settings, job_id) is JobState.FAILED
    with db.sessions() as s:
        job = s.get(Job, job_id)
        assert job.error == "fake failure requested: disk on fire"
        assert "Traceback" not in job.error and job.finished_at is not None
    db.dispose()


def test_stage_check_failure_ends_the_job_failed_with_its_records(service_settings):
    from ucvgl.api.presenters import job_read
    from ucvgl.services.health import StageCheck, StageFailed

    db, job_id, run_dir = _setup(service_settings, {"run_name": "r1"})
    passed = StageCheck(
        "translate", "cyclegan_content", True, "retention", {"retention": 0.9}, 0.2, "ok", "ok"
    )
    failed = StageCheck(
        "cold_start", "model_matches", False, "pairs_at_fdr", {"pairs_at_fdr": 0}, 10.0,
        "stop", "stage cold_start, check model_matches: 0 pairs (floor 10). Try: ...",
    )  # fmt: skip

    def runner(job_type, dataset, params, run_dir, progress):
        raise StageFailed(failed, [passed, failed], Path(run_dir) / "report.json")

    assert _run(db, service_settings, job_id, runner) is JobState.FAILED
    with db.sessions() as s:
        job = s.get(Job, job_id)
        assert job.error == failed.message and "Traceback" not in job.error
        assert job.result["status"] == "failed"
        assert job.result["failure"]["stage"] == "cold_start"
        assert [c["check"] for c in job.result["health"]] == ["cyclegan_content", "model_matches"]
        assert s.scalar(sa.select(sa.func.count()).select_from(Model)) == 0
        read = job_read(job)
        assert read.failure is not None and read.failure.action == "stop"
        assert [c.stage for c in read.health] == ["translate", "cold_start"]
    db.dispose()


def test_cancel_requested_while_running_and_before_start(service_settings):
    db, job_id, _ = _setup(service_settings, {"steps": 5, "sleep": 0.2}, job_type="project")

    def cancelling_runner(job_type, dataset, params, run_dir, progress):
        with db.session() as s:
            s.execute(sa.update(Job).where(Job.id == job_id).values(cancel_requested=True))
        return fake_run_job(job_type, dataset, params, run_dir, progress)

    assert _run(db, service_settings, job_id, cancelling_runner) is JobState.CANCELLED
    with db.sessions() as s:
        assert s.get(Job, job_id).state is JobState.CANCELLED
    # A job cancelled while queued is never run.
    with db.session() as s:
        other = Job(type="project", run_dir="/elsewhere", state=JobState.CANCELLED)
        s.add(other)

    def must_not_run(*args):
        raise AssertionError("a cancelled job was run")

    assert _run(db, service_settings, other.id, must_not_run) is JobState.CANCELLED
    db.dispose()


def test_missing_dataset_folder_fails_clearly(service_settings):
    db, job_id, _ = _setup(service_settings, {}, job_type="project")
    with db.session() as s:
        s.execute(sa.update(Dataset).values(root_path=str(Path("/nonexistent/tiny"))))
    assert _run(db, service_settings, job_id) is JobState.FAILED
    with db.sessions() as s:
        assert "/nonexistent/tiny" in s.get(Job, job_id).error
    db.dispose()


def test_index_rebuilt_for_the_same_model_updates_its_row(service_settings):
    """A pipeline job's index, then an index job for the same model: one row, updated."""
    db, job_id, run_dir = _setup(service_settings, {"run_name": "r1"})
    assert _run(db, service_settings, job_id) is JobState.SUCCEEDED
    with db.sessions() as s:
        first = s.scalars(sa.select(RetrievalIndex)).one()
        first_id, first_built = first.id, first.created_at
        model_id = s.scalars(sa.select(Model.id)).one()
        index_job = Job(
            type="index",
            parameters={},
            run_dir=str(run_dir),
            dataset_id=s.get(Job, job_id).dataset_id,
            model_id=model_id,
            state=JobState.QUEUED,
        )
        s.add(index_job)
        s.commit()
        index_job_id = index_job.id

    def rebuilding_runner(job_type, dataset, params, run_dir, progress):
        result = fake_run_job(job_type, dataset, params, run_dir, progress)
        manifest = {"kind": "ivf", "count": 7}  # the rebuilt folder's new metadata
        (Path(result["index_dir"]) / "manifest.json").write_text(json.dumps(manifest))
        return result

    assert _run(db, service_settings, index_job_id, rebuilding_runner) is JobState.SUCCEEDED
    with db.sessions() as s:
        index = s.scalars(sa.select(RetrievalIndex)).one()
        assert index.id == first_id and index.path == str(run_dir / "index")
        assert (index.model_id, index.kind, index.size) == (model_id, "ivf", 7)
        assert index.created_at > first_built
        assert s.get(Job, index_job_id).result["index_id"] == first_id
    db.dispose()


def test_index_rows_of_one_folder_under_two_paths_are_both_updated(service_settings):
    """A folder recorded under a link and under its real path keeps both rows, no third."""
    db, job_id, run_dir = _setup(service_settings, {})
    index_dir = run_dir / "index"
    index_dir.mkdir(parents=True)
    (index_dir / "manifest.json").write_text(json.dumps({"kind": "flat", "count": 5}))
    link = run_dir / "latest"
    link.symlink_to(index_dir, target_is_directory=True)
    with db.session() as s:
        dataset_id = s.get(Job, job_id).dataset_id
        model = Model(dataset_id=dataset_id, run_dir=str(run_dir), checkpoint_path="m", mode="semi")
        s.add(model)
        s.flush()
        for path in (link, index_dir.resolve()):
            s.add(RetrievalIndex(model_id=model.id, path=str(path), kind="old", size=1))
    with db.session() as s:
        kept = record_index(s, model.id, link)
        kept_id = kept.id
    with db.sessions() as s:
        rows = s.scalars(sa.select(RetrievalIndex).order_by(RetrievalIndex.id)).all()
        assert [r.id for r in rows][0] == kept_id and len(rows) == 2
        assert {(r.kind, r.size) for r in rows} == {("flat", 5)}
        other = Model(dataset_id=dataset_id, run_dir=str(run_dir), checkpoint_path="n", mode="semi")
        s.add(other)
        s.flush()
        # the same folder indexed by another model is another index
        assert record_index(s, other.id, index_dir).id not in {r.id for r in rows}
    db.dispose()


def test_register_job_outside_the_workers_data_roots_fails(service_settings, tmp_path):
    outside = make_folder_dataset(tmp_path / "elsewhere")
    db = Database.from_settings(service_settings)
    params = {"name": "x", "path": str(outside), "format": "folder", "skip_invalid": False}
    with db.session() as s:
        job = Job(type="register", parameters=params, run_dir=str(outside), state=JobState.QUEUED)
        s.add(job)
    assert _run(db, service_settings, job.id) is JobState.FAILED
    with db.sessions() as s:
        assert "outside this worker's data roots" in s.get(Job, job.id).error
        assert s.scalar(sa.select(sa.func.count()).select_from(Dataset)) == 0
    db.dispose()
