"""SQLAlchemy 2 ORM tables of the service: datasets, jobs, models, rounds, labels, indexes.

The Job row is the source of truth for a job's state; the Celery worker copies what it
does into it. Schema changes go through an Alembic migration in ``ucvgl/migrations``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ucvgl.shared.enums import JobState

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JsonType = sa.JSON().with_variant(JSONB(), "postgresql")
BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ACTIVE_STATES_SQL = "state IN ('PENDING', 'QUEUED', 'RUNNING')"
"""SQL predicate of a job that may still write to its run folder (see the partial index)."""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite drops the tz)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    """Declarative base with a constraint naming convention (stable Alembic names)."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JsonType, datetime: UTCDateTime()}


class Dataset(Base):
    """A cross-view dataset registered from disk (or generated), with its validation report."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    format: Mapped[str] = mapped_column(sa.String(16))
    root_path: Mapped[str] = mapped_column(sa.Text)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    has_ground_truth: Mapped[bool] = mapped_column(default=False)
    validation_report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    load_options: Mapped[dict[str, Any]] = mapped_column(
        default=dict, server_default=sa.text("'{}'")
    )
    """Keyword options of ``load_dataset`` used at registration (e.g. ``skip_invalid``)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Model(Base):
    """A trained checkpoint of the two-view encoder."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(
        sa.ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    run_dir: Mapped[str] = mapped_column(sa.Text)
    checkpoint_path: Mapped[str] = mapped_column(sa.Text)
    mode: Mapped[str] = mapped_column(sa.String(32))
    preset: Mapped[str | None] = mapped_column(sa.String(64))
    recall: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    dataset: Mapped[Dataset] = relationship()


class Job(Base):
    """A unit of background work run by a Celery worker; its row is the source of truth."""

    __tablename__ = "jobs"
    __table_args__ = (
        # At most one active job per run folder: the API's 409 check is backed by this index.
        sa.Index(
            "uq_jobs_active_run_dir",
            "run_dir",
            unique=True,
            postgresql_where=sa.text(ACTIVE_STATES_SQL),
            sqlite_where=sa.text(ACTIVE_STATES_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(32), index=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[JobState] = mapped_column(
        sa.Enum(JobState, native_enum=False, length=16, validate_strings=True),
        default=JobState.PENDING,
        index=True,
    )
    progress: Mapped[float] = mapped_column(default=0.0)
    stage: Mapped[str] = mapped_column(sa.String(200), default="")
    message: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(sa.Text)
    worker_hostname: Mapped[str | None] = mapped_column(sa.String(255))
    celery_task_id: Mapped[str | None] = mapped_column(sa.String(64))
    result: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    run_dir: Mapped[str | None] = mapped_column(sa.Text)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    dataset_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    model_id: Mapped[int | None] = mapped_column(sa.ForeignKey("models.id", ondelete="SET NULL"))

    dataset: Mapped[Dataset | None] = relationship()
    model: Mapped[Model | None] = relationship()


class PseudoLabelRound(Base):
    """One round of adaptive mutual matching: its threshold, counts and label health."""

    __tablename__ = "pseudo_label_rounds"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(
        sa.ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    model_id: Mapped[int | None] = mapped_column(sa.ForeignKey("models.id", ondelete="SET NULL"))
    job_id: Mapped[int | None] = mapped_column(sa.ForeignKey("jobs.id", ondelete="SET NULL"))
    round_number: Mapped[int] = mapped_column()
    threshold: Mapped[float] = mapped_column()
    mutual: Mapped[int] = mapped_column()
    labels: Mapped[int] = mapped_column()
    correct: Mapped[int | None] = mapped_column()
    margin_histogram: Mapped[dict[str, Any]] = mapped_column(default=dict)
    label_health_score: Mapped[float] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PseudoLabel(Base):
    """One mined (ground, satellite) pair of a round; ``is_correct`` only with ground truth."""

    __tablename__ = "pseudo_labels"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    round_id: Mapped[int] = mapped_column(
        sa.ForeignKey("pseudo_label_rounds.id", ondelete="CASCADE"), index=True
    )
    ground_id: Mapped[str] = mapped_column(sa.String(255))
    satellite_id: Mapped[str] = mapped_column(sa.String(255))
    margin: Mapped[float] = mapped_column()
    similarity: Mapped[float] = mapped_column()
    is_correct: Mapped[bool | None] = mapped_column()


class RetrievalIndex(Base):
    """A nearest-neighbour index of satellite embeddings built from one model."""

    __tablename__ = "indexes"
    __table_args__ = (
        # One row per folder of a model: recording a rebuild updates it (migration 0003).
        sa.UniqueConstraint("model_id", "path", name="uq_indexes_model_path"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(
        sa.ForeignKey("models.id", ondelete="CASCADE"), index=True
    )
    path: Mapped[str] = mapped_column(sa.Text)
    kind: Mapped[str] = mapped_column(sa.String(32))
    size: Mapped[int] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    """When the index in ``path`` was last built: rebuilding a folder updates its one row."""

    model: Mapped[Model] = relationship()


class WorkerHeartbeat(Base):
    """A live Celery worker: written on start and every few seconds, removed on shutdown.

    ``/readyz`` reads it when the broker cannot broadcast (the embedded SQLite broker has no
    ``celery control ping``).
    """

    __tablename__ = "worker_heartbeats"

    hostname: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    queues: Mapped[str] = mapped_column(sa.String(255), default="")
    pid: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
