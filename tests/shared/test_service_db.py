"""Database layer: migrations up/down on SQLite and PostgreSQL, pragmas, constraints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from ucvgl.shared.db import (
    Database,
    create_db_engine,
    current_revision,
    downgrade_database,
    upgrade_database,
)
from ucvgl.shared.enums import JobState, JobType, Queue
from ucvgl.shared.models import Base, Dataset, Job

TABLES = {
    "datasets",
    "jobs",
    "models",
    "indexes",
    "pseudo_label_rounds",
    "pseudo_labels",
    "worker_heartbeats",
}


def _tables(url: str) -> set[str]:
    engine = create_db_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_migrations_upgrade_downgrade_and_match_the_models(empty_db_url):
    assert current_revision(empty_db_url) is None
    upgrade_database(empty_db_url)
    assert current_revision(empty_db_url) == "0003"
    assert _tables(empty_db_url) == TABLES
    engine = create_db_engine(empty_db_url)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    engine.dispose()
    assert diff == [], f"the migrations and the ORM models differ: {diff}"
    downgrade_database(empty_db_url, "base")
    assert current_revision(empty_db_url) is None
    assert _tables(empty_db_url) == set()
    upgrade_database(empty_db_url)
    assert _tables(empty_db_url) == TABLES


def test_upgrade_0002_keeps_datasets_and_defaults_their_load_options(empty_db_url):
    upgrade_database(empty_db_url, "0001")
    engine = create_db_engine(empty_db_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO datasets (name, format, root_path, counts, has_ground_truth,"
                " validation_report, created_at) VALUES ('old', 'cvact', '/d', '{}', false,"
                " '{}', CURRENT_TIMESTAMP)"
            )
        )
    upgrade_database(empty_db_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT name, load_options FROM datasets")).all()
    engine.dispose()
    assert [r[0] for r in rows] == ["old"]
    options = rows[0][1]
    assert (json.loads(options) if isinstance(options, str) else options) == {}


def test_sqlite_gets_wal_and_foreign_keys(tmp_path):
    db = Database.from_url(f"sqlite:///{tmp_path / 'sub' / 'x.sqlite'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.dispose()


def test_one_active_job_per_run_dir_and_timestamps_are_utc(db_url):
    db = Database.from_url(db_url)
    with db.session() as s:
        s.add(Dataset(name="d", format="folder", root_path="/x"))
    with db.session() as s:
        ds_id = s.scalar(sa.select(Dataset.id))
        s.add(Job(type="project", run_dir="/runs/a", dataset_id=ds_id, state=JobState.RUNNING))
    with pytest.raises(IntegrityError):
        with db.session() as s:
            s.add(Job(type="cold_start", run_dir="/runs/a", dataset_id=ds_id))
    with db.session() as s:  # a finished job does not block its run folder
        s.execute(sa.update(Job).values(state=JobState.SUCCEEDED))
        s.add(Job(type="cold_start", run_dir="/runs/a", dataset_id=ds_id))
    when = datetime(2024, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with db.session() as s:
        job = s.scalars(sa.select(Job).where(Job.state == JobState.PENDING)).one()
        job.started_at = when
    with db.sessions() as s:
        got = s.scalars(sa.select(Job).where(Job.state == JobState.PENDING)).one().started_at
    assert got.tzinfo is not None and got == when and got.astimezone(UTC).hour == 10
    with pytest.raises(IntegrityError):  # foreign keys are enforced (SQLite too)
        with db.session() as s:
            s.add(Job(type="project", run_dir="/runs/b", dataset_id=999))
    db.dispose()


def test_job_states_and_queues():
    assert {s for s in JobState if s.is_terminal()} == {
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.CANCELLED,
    }
    assert set(JobState.active()) == {JobState.PENDING, JobState.QUEUED, JobState.RUNNING}
    assert JobType.PROJECT.queue is Queue.CPU and JobType.INDEX.queue is Queue.CPU
    assert JobType.REGISTER.queue is Queue.CPU and JobType.SYNTHETIC.queue is Queue.CPU
    assert {t for t in JobType if t.creates_dataset} == {JobType.SYNTHETIC, JobType.REGISTER}
    assert JobType.COLD_START.queue is Queue.GPU and JobType.PIPELINE.queue is Queue.GPU


def test_ucvgl_migrate_works_from_any_folder(tmp_path):
    env = {**os.environ, "UCVGL_WORK_DIR": str(tmp_path / "work")}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run(
        [sys.executable, "-m", "ucvgl.cli", "migrate"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "revision 0003" in out.stdout
    assert (tmp_path / "work" / "ucvgl.sqlite").exists()
