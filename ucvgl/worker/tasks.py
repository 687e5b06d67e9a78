"""Thin Celery tasks: a job id in, the science called, rows written.

``ucvgl.run_job(job_id)`` loads the job row, marks it RUNNING, runs the job through the
configured runner (``ucvgl.services.pipeline.run_job`` by default) with a
:class:`JobProgress`, records rounds/labels/models/indexes from the result and marks the
job SUCCEEDED, FAILED or CANCELLED. The job row is the source of truth. The jobs that make
a dataset (``synthetic``, ``register``) are run here instead of by the runner; their Dataset
row is written in the same transaction that marks the job SUCCEEDED.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import task_failure
from sqlalchemy.exc import OperationalError

from ucvgl.services.health import StageFailed
from ucvgl.shared.config import Settings
from ucvgl.shared.db import Database
from ucvgl.shared.enums import JobState, JobType
from ucvgl.shared.errors import ConfigError, DatasetError, JobCancelled, UcvglError
from ucvgl.shared.jobs.celery_client import RUN_JOB_TASK
from ucvgl.shared.jobs.reaper import JobHeartbeat, job_heartbeat_interval
from ucvgl.shared.models import Dataset, Job, Model, utcnow
from ucvgl.worker.databases import database_for
from ucvgl.worker.heartbeat import install_heartbeat
from ucvgl.worker.job_progress import JobProgress
from ucvgl.worker.launcher import launch_spec, plan_launch, run_distributed
from ucvgl.worker.recording import (
    RECORD_ONLY_KEYS,
    DatasetNameTaken,
    json_safe,
    record_result,
)

log = logging.getLogger(__name__)

JobRunner = Callable[..., dict[str, Any]]
"""``run_job(job_type, dataset, params, run_dir, progress) -> dict``."""

SERVICE_PARAMS = frozenset({"run_name", "gpus"})
"""Job parameters the service itself reads (the run folder, the processes to launch); not
passed to the runner."""


def load_registered_dataset(row: Dataset):
    """Load a registered dataset the way it was registered (its stored ``load_options``)."""
    from ucvgl.services.datasets import load_dataset

    return load_dataset(Path(row.root_path), row.format, name=row.name, **(row.load_options or {}))


def load_runner(spec: str) -> JobRunner:
    """Import ``module:function``."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _finish(database: Database, job_id: int, state: JobState, **values: Any) -> None:
    """Move a non-terminal job to ``state`` (a terminal job is left as it is)."""
    with database.session() as session:
        session.execute(
            sa.update(Job)
            .where(Job.id == job_id, Job.state.in_(JobState.active()))
            .values(state=state, finished_at=utcnow(), heartbeat_at=utcnow(), **values)
        )


def _start(
    database: Database,
    job_id: int,
    hostname: str,
    task_id: str | None,
    stale_s: float = float("inf"),
) -> tuple[Job, Dataset | None, Model | None] | None:
    """Mark the job RUNNING; None when it is gone, terminal, cancelled while queued, or
    still running on another live worker (a duplicate delivery must not interleave)."""
    with database.session() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            log.error("job %s does not exist; task dropped", job_id)
            return None
        if job.state.is_terminal():
            log.info("job %s is already %s; redelivered task does nothing", job_id, job.state)
            return None
        if (
            job.state == JobState.RUNNING
            and job.worker_hostname not in (None, hostname)
            and job.heartbeat_at is not None
            and (utcnow() - job.heartbeat_at).total_seconds() < stale_s
        ):
            log.warning(
                "job %s is still running on %s; duplicate delivery dropped",
                job_id,
                job.worker_hostname,
            )
            return None
        if job.cancel_requested:
            job.state, job.finished_at = JobState.CANCELLED, utcnow()
            return None
        job.state = JobState.RUNNING
        job.started_at = job.started_at or utcnow()
        job.heartbeat_at = utcnow()
        job.worker_hostname = hostname
        job.celery_task_id = task_id or job.celery_task_id
        job.stage, job.error = "starting", None
        session.flush()
        return job, job.dataset, job.model


def dataset_record(
    dataset: Any, name: str, fmt: str, root: Path, load_options: dict[str, Any]
) -> dict[str, Any]:
    """The columns of the Dataset row of a loaded ``dataset`` (see ``record_dataset``)."""
    return {
        "name": name,
        "format": fmt,
        "root_path": str(root),
        "counts": json_safe(dataset.counts()),
        "has_ground_truth": bool(dataset.has_ground_truth),
        "validation_report": json_safe(dataset.report.to_dict()),
        "load_options": load_options,
    }


def synthetic_output(settings: Settings, job: Job) -> Path:
    """The folder a ``synthetic`` job generates: ``<first data root>/<name>``."""
    return settings.data_roots[0].resolve() / str(job.parameters["name"])


def _run_synthetic(settings: Settings, job: Job, progress: JobProgress) -> dict[str, Any]:
    """Generate a synthetic world under the first data root; its row comes with the result.

    ``world`` (a registry name) generates that world (its format, seed, knobs and JPEG
    quality); ``settings`` (knob -> value) changes knobs on top of the world's or of the
    defaults. Jobs queued before these parameters existed have neither.
    """
    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.synth import generate_world
    from ucvgl.services.synth.family import generate_named_world, get_world
    from ucvgl.services.synth.settings import WorldSettings

    p = job.parameters
    out = synthetic_output(settings, job)
    pano_size = (int(p["pano_height"]), int(p["pano_width"]))
    overrides = dict(p.get("settings") or {})
    workers = 1  # a Celery pool process may not fork rendering processes of its own
    fmt = str(p.get("format") or "cvusa")
    if p.get("world"):
        entry = get_world(str(p["world"]))
        fmt = entry.format
        root = generate_named_world(
            entry.name,
            out,
            int(p["n_train"]),
            int(p["n_val"]),
            pano_size=pano_size,
            sat_size=int(p["sat_size"]),
            workers=workers,
            progress=progress,
            settings=entry.settings.with_updates(overrides) if overrides else None,
        )
    else:
        root = generate_world(
            out,
            fmt,
            int(p["n_train"]),
            int(p["n_val"]),
            seed=int(p["seed"]),
            pano_size=pano_size,
            sat_size=int(p["sat_size"]),
            workers=workers,
            progress=progress,
            jpeg_quality=int(p.get("jpeg_quality") or 90),
            world=WorldSettings.from_dict(overrides),
        )
    root = Path(root).resolve()
    dataset = load_dataset(root, fmt, name=p["name"])
    return {
        "new_dataset": dataset_record(dataset, p["name"], fmt, root, {}),
        "root": str(root),
    }


def _below_data_roots(settings: Settings, path: Path) -> Path:
    """``path`` resolved; it must lie below one of this worker's data roots."""
    roots = [root.resolve() for root in settings.data_roots]
    resolved = path.resolve()
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise ConfigError(
            f"{resolved} is outside this worker's data roots ({allowed}); give the worker "
            "the same UCVGL_DATA_ROOTS as the API"
        )
    return resolved


def _overlaps(a: Path, b: Path) -> bool:
    """Whether one of the two paths is the other or lies below it."""
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def remove_generated_world(
    database: Database, settings: Settings, job_id: int, folder: Path
) -> bool:
    """Remove ``folder``, which synthetic job ``job_id`` created, when nothing else uses it.

    Kept (False) when it is a link or not a folder, is not strictly below a data root (or
    holds one), or overlaps the folder of a recorded dataset or of another active job.

    Returns:
        Whether the folder was removed.
    """
    if folder.is_symlink() or not folder.is_dir():
        return False
    resolved = folder.resolve()
    roots = [root.resolve() for root in settings.data_roots]
    below = any(resolved != root and resolved.is_relative_to(root) for root in roots)
    if not below or any(root.is_relative_to(resolved) for root in roots):
        log.warning("job %s: %s is not below a data root; not removed", job_id, resolved)
        return False
    with database.session() as session:
        in_use = list(session.scalars(sa.select(Dataset.root_path)))
        in_use += session.scalars(
            sa.select(Job.run_dir).where(
                Job.id != job_id, Job.state.in_(JobState.active()), Job.run_dir.is_not(None)
            )
        )
    if any(_overlaps(resolved, Path(path).resolve()) for path in in_use):
        log.warning("job %s: %s is used by a dataset or another job; not removed", job_id, resolved)
        return False
    try:
        shutil.rmtree(resolved)
    except OSError:
        log.exception("job %s: could not remove %s", job_id, resolved)
        return False
    log.info("job %s: removed the generated folder %s", job_id, resolved)
    return True


def _run_register(settings: Settings, job: Job, progress: JobProgress) -> dict[str, Any]:
    """Load and validate a dataset already on disk; its row comes with the result.

    Raises:
        DatasetError: the folder does not match the format, naming the file or field.
    """
    from ucvgl.services.datasets import load_dataset

    p = job.parameters
    fmt, load_options = str(p["format"]), {"skip_invalid": bool(p.get("skip_invalid", False))}
    root = _below_data_roots(settings, Path(p["path"]))
    progress.update("loading dataset", 0.0, str(root))
    try:
        dataset = load_dataset(root, fmt, name=p["name"], progress=progress, **load_options)
    except JobCancelled:
        raise
    except (UcvglError, ValueError, KeyError, OSError) as exc:
        raise DatasetError(f"the dataset at {root} does not match the {fmt} layout: {exc}") from exc
    return {
        "new_dataset": dataset_record(dataset, p["name"], fmt, root, load_options),
        "root": str(root),
    }


def execute_job(
    job_id: int,
    *,
    database: Database,
    settings: Settings,
    runner: JobRunner,
    hostname: str | None = None,
    task_id: str | None = None,
) -> JobState:
    """Run job ``job_id`` to a terminal state and return that state.

    Errors become ``FAILED`` with the exception's message in ``error`` (the traceback goes
    to the log only); a stage check that stopped the run (:class:`StageFailed`) also keeps
    its records in ``result`` (``status``, ``health``, ``failure``); :class:`JobCancelled`
    becomes ``CANCELLED``.
    """
    stale_s = settings.job_stale_seconds
    started = _start(database, job_id, hostname or socket.gethostname(), task_id, stale_s)
    if started is None:
        with database.session() as session:
            job = session.get(Job, job_id)
            return job.state if job is not None else JobState.FAILED
    job, dataset_row, _model = started
    with JobHeartbeat(database, job_id, job_heartbeat_interval(stale_s)):
        return _execute_started(database, settings, runner, job, dataset_row)


def _execute_started(
    database: Database, settings: Settings, runner: JobRunner, job: Job, dataset_row: Dataset | None
) -> JobState:
    """Run a job already marked RUNNING to a terminal state (see :func:`execute_job`)."""
    job_id = job.id
    progress = JobProgress(database, job_id)
    generated: Path | None = None  # the folder this synthetic job creates
    try:
        progress.check_cancelled()
        if job.type == JobType.SYNTHETIC:
            out = synthetic_output(settings, job)
            generated = None if os.path.lexists(out) else out
            result = _run_synthetic(settings, job, progress)
        elif job.type == JobType.REGISTER:
            result = _run_register(settings, job, progress)
        else:
            if dataset_row is None:
                raise ValueError(f"job {job_id} has no dataset")
            progress.update("loading dataset", 0.0)
            run_dir = Path(str(job.run_dir))
            run_dir.mkdir(parents=True, exist_ok=True)
            params = {k: v for k, v in job.parameters.items() if k not in SERVICE_PARAMS}
            plan = plan_launch(settings, job.type, job.parameters)
            if plan.launched:  # every rank runs the runner under torch's launcher
                spec = launch_spec(runner, job.type, params, run_dir, dataset_row)
                result = run_distributed(plan, spec, progress, settings)
            else:
                dataset = load_registered_dataset(dataset_row)
                result = runner(job.type, dataset, params, run_dir, progress)
        progress.flush()
        result = json_safe(result if isinstance(result, dict) else {"value": result})
        with database.session() as session:
            row = session.get(Job, job_id)
            assert row is not None
            if row.state.is_terminal():  # cancelled in the meantime: keep it so
                return row.state
            created = record_result(session, row, result)
            kept = {k: v for k, v in result.items() if k not in RECORD_ONLY_KEYS}
            row.result = {**kept, **created}
            row.state, row.progress, row.finished_at = JobState.SUCCEEDED, 1.0, utcnow()
            row.heartbeat_at, row.stage = utcnow(), "done"
        return JobState.SUCCEEDED
    except JobCancelled as exc:
        log.info("job %s cancelled: %s", job_id, exc)
        progress.flush()
        _finish(database, job_id, JobState.CANCELLED, message=str(exc))
        return JobState.CANCELLED
    except DatasetNameTaken as exc:
        log.warning("job %s (%s) failed: %s", job_id, job.type, exc)
        error = str(exc)
        if generated is not None and remove_generated_world(database, settings, job_id, generated):
            error += f"; the generated folder {generated} was removed"
        _finish(database, job_id, JobState.FAILED, error=error)
        return JobState.FAILED
    except StageFailed as exc:  # a label-free stage check stopped the run: said loudly
        log.warning("job %s (%s) stopped by a stage check: %s", job_id, job.type, exc)
        _finish(database, job_id, JobState.FAILED, error=str(exc), result=json_safe(exc.result()))
        return JobState.FAILED
    except SoftTimeLimitExceeded:
        log.error("job %s hit the soft time limit", job_id)
        _finish(database, job_id, JobState.FAILED, error="the job ran past its time limit")
        return JobState.FAILED
    except Exception as exc:  # every failure ends in the job row, never in the API as a trace
        log.exception("job %s (%s) failed", job_id, job.type)
        _finish(database, job_id, JobState.FAILED, error=str(exc) or type(exc).__name__)
        return JobState.FAILED


def register_tasks(app: Celery) -> None:
    """Register ``ucvgl.run_job`` on ``app``."""

    @app.task(
        name=RUN_JOB_TASK,
        bind=True,
        # A database that is briefly unreachable when the task starts or ends: retry.
        autoretry_for=(OperationalError,),
        retry_backoff=True,
        retry_backoff_max=60,
        max_retries=5,
    )
    def run_job(self: Any, job_id: int, job_type: str | None = None) -> str:
        """Run one job row to a terminal state (``job_type`` only routes the message)."""
        settings = app.conf.ucvgl_settings
        settings.apply_torch_threads()  # 1 is much faster on shared CPUs
        state = execute_job(
            int(job_id),
            database=database_for(settings),
            settings=settings,
            runner=load_runner(app.conf.ucvgl_job_runner),
            hostname=self.request.hostname,
            task_id=self.request.id,
        )
        return state.value

    def on_failure(
        sender: Any = None,
        task_id: str | None = None,
        args: Any = None,
        kwargs: Any = None,
        exception: BaseException | None = None,
        **_: Any,
    ) -> None:
        """A task killed from outside (hard time limit): mark its job FAILED."""
        if getattr(sender, "name", None) != RUN_JOB_TASK or getattr(sender, "app", None) is not app:
            return
        job_id = (kwargs or {}).get("job_id") or (args[0] if args else None)
        if job_id is None:
            return
        settings = app.conf.ucvgl_settings
        _finish(
            database_for(settings),
            int(job_id),
            JobState.FAILED,
            error=f"the worker stopped the job: {exception or 'unknown reason'}",
        )

    task_failure.connect(on_failure, weak=False)
    install_heartbeat(app)
