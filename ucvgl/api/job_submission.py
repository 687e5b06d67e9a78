"""Creating job rows and enqueueing them, with the one-active-job-per-run-folder rule.

Every job writes to a run folder: ``<work_dir>/runs/dataset-<id>/<run_name>`` (run_name
from ``params['run_name']``, default ``default``), the model's own run folder for
``evaluate``/``index``, the dataset folder being generated for ``synthetic`` or read for
``register``. A second job whose run folder already has an active (PENDING/QUEUED/RUNNING)
job is refused with 409: the API locks the dataset row, checks, and inserts in one
transaction, and a partial unique index on ``jobs.run_dir`` over active states backs the
check in the database.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ucvgl.api.job_queue import JobQueue
from ucvgl.api.problems import ApiProblem, field_problem
from ucvgl.shared.config import Settings
from ucvgl.shared.enums import JobState, JobType
from ucvgl.shared.models import Dataset, Job, Model, utcnow
from ucvgl.shared.schemas import NAME_PATTERN

RETRY_AFTER_S = 2
DATASET_ROUTES = {
    JobType.SYNTHETIC: "POST /api/v1/datasets/synthetic",
    JobType.REGISTER: "POST /api/v1/datasets",
}
"""Where the jobs that create a dataset are started (not ``POST /jobs``)."""


SERVICE_PARAMS = frozenset({"run_name", "gpus"})
"""Parameters the service reads itself (run folder, processes to launch), not the runner."""


def run_dir_for(settings: Settings, dataset: Dataset, params: dict[str, Any]) -> Path:
    """The run folder of a training/projection job on ``dataset``."""
    run_name = str(params.get("run_name", "default"))
    if not re.match(NAME_PATTERN, run_name):
        raise field_problem(
            "body.params.run_name", f"{run_name!r} is not a valid name (letters, digits, . _ -)"
        )
    return (settings.work_dir / "runs" / f"dataset-{dataset.id}" / run_name).resolve()


def validate_params(job_type: JobType, params: dict[str, Any]) -> dict[str, Any]:
    """Check ``params`` with the pipeline's own validator (422 naming the field).

    ``run_name`` and ``gpus`` (a positive integer: how many of the worker's GPUs the job
    runs on, one process each; default all) are the service's own and checked here.

    A job type that creates a dataset is refused (422 on ``body.type``): its request body is
    validated by its own route, see :data:`DATASET_ROUTES`.
    """
    if job_type.creates_dataset:
        raise field_problem(
            "body.type", f"use {DATASET_ROUTES[job_type]} to start a {job_type.value!r} job"
        )
    from ucvgl.services.pipeline import validate_job_params
    from ucvgl.shared.errors import ConfigError

    gpus = params.get("gpus")
    if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1):
        raise field_problem(
            "body.params.gpus",
            f"must be a positive integer (the worker's GPUs for this job; leave it out for "
            f"all of them), got {gpus!r}",
        )
    runner_params = {k: v for k, v in params.items() if k not in SERVICE_PARAMS}
    try:
        validate_job_params(job_type.value, runner_params)
    except ConfigError as exc:
        field = str(exc).split(":", 1)[0] if str(exc).startswith("params.") else "params"
        raise field_problem(f"body.{field}", str(exc)) from exc
    return params


def _conflict(run_dir: str, other: Job, job_type: JobType) -> ApiProblem:
    advice = "wait for it, cancel it, or choose another params.run_name"
    if job_type.creates_dataset:  # a dataset folder has no run_name to change
        advice = "wait for it or cancel it"
    return ApiProblem(
        409,
        f"job {other.id} ({other.type}, {other.state}) is still active on run folder {run_dir}; "
        f"{advice}",
        extra={"conflicting_job_id": other.id},
    )


def create_job(
    session: Session,
    queue: JobQueue,
    *,
    job_type: JobType,
    params: dict[str, Any],
    run_dir: Path,
    dataset_id: int | None = None,
    model_id: int | None = None,
) -> Job:
    """Insert a PENDING job (409 when its run folder is busy), enqueue it, mark it QUEUED.

    Raises:
        ApiProblem: 409 for a busy run folder, 503 when the broker cannot be reached.
    """
    run_dir_text = str(run_dir)
    try:
        if dataset_id is not None:
            # Lock the dataset row (a row lock on PostgreSQL, the write lock on SQLite) so two
            # concurrent submissions on one dataset serialise through this check.
            session.execute(
                sa.update(Dataset).where(Dataset.id == dataset_id).values(id=Dataset.id)
            )
        other = session.scalars(
            sa.select(Job).where(Job.run_dir == run_dir_text, Job.state.in_(JobState.active()))
        ).first()
        if other is not None:
            raise _conflict(run_dir_text, other, job_type)
        job = Job(
            type=job_type.value,
            parameters=params,
            state=JobState.PENDING,
            run_dir=run_dir_text,
            dataset_id=dataset_id,
            model_id=model_id,
            celery_task_id=str(uuid.uuid4()),
            stage="queued",
        )
        session.add(job)
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ApiProblem(
            409, f"another job is already active on run folder {run_dir_text}"
        ) from None
    except BaseException:
        session.rollback()
        raise
    try:
        queue.enqueue(job.id, job.type, str(job.celery_task_id))
    except Exception as exc:
        session.execute(
            sa.update(Job)
            .where(Job.id == job.id)
            .values(
                state=JobState.FAILED,
                finished_at=utcnow(),
                error=f"could not reach the task broker: {exc}",
            )
        )
        session.commit()
        raise ApiProblem(
            503, f"could not reach the task broker ({exc}); job {job.id} marked FAILED"
        ) from exc
    session.execute(
        sa.update(Job)
        .where(Job.id == job.id, Job.state == JobState.PENDING)
        .values(state=JobState.QUEUED)
    )
    session.commit()
    session.refresh(job)
    return job


RUN_PARAMS = (
    "mode",
    "preset",
    "overrides",
    "seed",
    "gt_ratio",
    "device",
    "init_from",
    "init_model_id",
)
"""Parameters a model's run folder was created with; later jobs on it must repeat them."""

SELECTED_MODEL_FILE = Path("model") / "selected.pt"


def resolve_init_model(session: Session, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with ``init_from`` set from ``init_model_id`` (a Model row's run folder).

    A client never names a folder on the workers itself: ``params.init_from`` is refused.

    Raises:
        ApiProblem: 422 naming ``body.params.init_from`` or ``body.params.init_model_id``
            (not an integer, no such model, or its run has no selected model yet).
    """
    if "init_from" in params:
        raise field_problem(
            "body.params.init_from",
            "give params.init_model_id (a model id) instead; the service resolves its run folder",
        )
    if params.get("init_model_id") is None:
        return {k: v for k, v in params.items() if k != "init_model_id"}
    model_id = params["init_model_id"]
    if not isinstance(model_id, int) or isinstance(model_id, bool):
        raise field_problem("body.params.init_model_id", f"expected a model id, got {model_id!r}")
    model = session.get(Model, model_id)
    if model is None:
        raise field_problem("body.params.init_model_id", f"model {model_id} does not exist")
    selected = Path(model.run_dir) / SELECTED_MODEL_FILE
    if not selected.is_file():
        raise field_problem(
            "body.params.init_model_id",
            f"model {model_id}'s run {model.run_dir} has no selected model ({selected}); "
            "finish its pipeline first",
        )
    return {**params, "init_from": str(Path(model.run_dir))}


def check_eval_split(dataset: Dataset, params: dict[str, Any]) -> None:
    """422 on ``body.params.eval_split`` when a name is not a split of the dataset's format."""
    from ucvgl.services.eval_splits import check_eval_splits, parse_eval_splits
    from ucvgl.shared.errors import ConfigError

    if params.get("eval_split") is None:
        return
    try:
        names = parse_eval_splits(params["eval_split"])
        if names:
            check_eval_splits(dataset.format, names)
    except ConfigError as exc:
        raise field_problem("body.params.eval_split", str(exc)) from exc


def params_for_model(session: Session, model: Model, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` completed with the run parameters of the job that trained ``model``."""
    trained_by = session.scalars(
        sa.select(Job)
        .where(Job.run_dir == model.run_dir, Job.state == JobState.SUCCEEDED)
        .order_by(Job.id.desc())
    ).first()
    inherited: dict[str, Any] = {"mode": model.mode}
    if model.preset:
        inherited["preset"] = model.preset
    if trained_by is not None:
        inherited.update(
            {k: trained_by.parameters[k] for k in RUN_PARAMS if k in trained_by.parameters}
        )
    return {**inherited, **params}


def get_or_404(session: Session, table: type, item_id: int, what: str) -> Any:
    """The row ``item_id`` of ``table`` or a 404 problem naming it."""
    row = session.get(table, item_id)
    if row is None:
        raise ApiProblem(404, f"{what} {item_id} does not exist")
    return row


def model_of_dataset(session: Session, model_id: int, dataset_id: int | None) -> Model:
    """Model ``model_id``; 404 when unknown, 422 when it belongs to another dataset."""
    model = get_or_404(session, Model, model_id, "model")
    if dataset_id is not None and model.dataset_id != dataset_id:
        raise field_problem(
            "body.model_id", f"model {model_id} was trained on dataset {model.dataset_id}"
        )
    return model
