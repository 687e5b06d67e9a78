"""Enumerations shared by the database, the API and the worker."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Life cycle of a job row: PENDING -> QUEUED -> RUNNING -> one terminal state."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    def is_terminal(self) -> bool:
        """True for SUCCEEDED, FAILED and CANCELLED: the job will not change any more."""
        return self in TERMINAL_STATES

    @classmethod
    def active(cls) -> tuple[JobState, ...]:
        """The states of a job that may still write to its run folder."""
        return tuple(s for s in cls if not s.is_terminal())


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class JobType(StrEnum):
    """What a job does.

    ``synthetic`` and ``register`` create a dataset (started through ``/datasets``, run by the
    worker itself); the others run ``ucvgl.services.pipeline.run_job`` on a dataset.
    """

    PROJECT = "project"
    CYCLEGAN = "cyclegan"
    COLD_START = "cold_start"
    AMM_ROUND = "amm_round"
    SEMI = "semi"
    SUPERVISED = "supervised"
    EVALUATE = "evaluate"
    INDEX = "index"
    PIPELINE = "pipeline"
    SYNTHETIC = "synthetic"
    REGISTER = "register"

    @property
    def queue(self) -> Queue:
        """The Celery queue this job runs on (training on ``gpu``, the rest on ``cpu``)."""
        return Queue.CPU if self in CPU_JOB_TYPES else Queue.GPU

    @property
    def needs_model(self) -> bool:
        """True when the job reads a trained model (``model_id`` is required)."""
        return self in (JobType.EVALUATE, JobType.INDEX)

    @property
    def creates_dataset(self) -> bool:
        """True for the jobs that make a dataset row (started via ``/datasets``, not ``/jobs``)."""
        return self in (JobType.SYNTHETIC, JobType.REGISTER)


class Queue(StrEnum):
    """Celery queues. A worker on a CPU-only machine consumes both."""

    GPU = "gpu"
    CPU = "cpu"


CPU_JOB_TYPES = frozenset(
    {JobType.PROJECT, JobType.EVALUATE, JobType.INDEX, JobType.SYNTHETIC, JobType.REGISTER}
)


class DatasetFormat(StrEnum):
    """On-disk layouts that ``ucvgl.services.datasets.load_dataset`` reads."""

    CVUSA = "cvusa"
    CVACT = "cvact"
    VIGOR = "vigor"
    FOLDER = "folder"


class TrainingMode(StrEnum):
    """How a model was trained."""

    UNSUPERVISED = "unsupervised"
    SEMI = "semi"
    SUPERVISED = "supervised"
