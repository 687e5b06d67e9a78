"""Jobs: start one (202 + Location), read its state and progress, list, cancel."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from fastapi import APIRouter, Query, Response, status

from ucvgl.api.bodies import JobCreate
from ucvgl.api.bounds import FilterId, Offset, PathId
from ucvgl.api.deps import JobQueueDep, ReadAccess, SessionDep, SettingsDep, TokenDep
from ucvgl.api.job_submission import (
    RETRY_AFTER_S,
    check_eval_split,
    create_job,
    get_or_404,
    model_of_dataset,
    params_for_model,
    resolve_init_model,
    run_dir_for,
    validate_params,
)
from ucvgl.api.presenters import API, job_read
from ucvgl.api.problems import ApiProblem, field_problem, problem_responses
from ucvgl.shared.enums import JobState, JobType
from ucvgl.shared.models import Dataset, Job, utcnow
from ucvgl.shared.schemas import JobRead, Page

router = APIRouter(
    prefix=f"{API}/jobs",
    tags=["jobs"],
    dependencies=[ReadAccess],
    responses=problem_responses(401, 404, 422),
)


def accepted(response: Response, job_id: int) -> None:
    """Set the 202 headers pointing at the job."""
    response.headers["Location"] = f"{API}/jobs/{job_id}"
    response.headers["Retry-After"] = str(RETRY_AFTER_S)


@router.post(
    "",
    response_model=JobRead,
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(
        401,
        404,
        409,
        503,
        d409="Another job is still active on the same run folder (same dataset and "
        "params.run_name, or the same model); wait, cancel it, or pick another run_name.",
    ),
)
def start_job(
    body: JobCreate,
    session: SessionDep,
    settings: SettingsDep,
    queue: JobQueueDep,
    _: TokenDep,
    response: Response,
) -> JobRead:
    """Start a job on a dataset; poll the Location it answers with."""
    job_type = body.job_type
    dataset = get_or_404(session, Dataset, body.dataset_id, "dataset")
    model = None
    if body.model_id is not None:
        model = model_of_dataset(session, body.model_id, dataset.id)
    elif job_type.needs_model:
        raise field_problem("body.model_id", f"a '{job_type.value}' job needs a trained model")
    params = resolve_init_model(session, dict(body.params))
    run_dir = run_dir_for(settings, dataset, params)
    if model is not None and job_type.needs_model:
        run_dir = Path(model.run_dir)
        params = params_for_model(session, model, params)
    validate_params(job_type, params)
    check_eval_split(dataset, params)
    job = create_job(
        session,
        queue,
        job_type=job_type,
        params=params,
        run_dir=run_dir,
        dataset_id=dataset.id,
        model_id=model.id if model is not None else None,
    )
    accepted(response, job.id)
    return job_read(job)


@router.get("", response_model=Page[JobRead])
def list_jobs(
    session: SessionDep,
    state: JobState | None = None,
    type: JobType | None = None,  # noqa: A002 - the public filter name
    dataset_id: FilterId = None,
    limit: int = Query(50, ge=1, le=500),
    offset: Offset = 0,
) -> Page[JobRead]:
    """List jobs, newest first, filtered by state, type and dataset."""
    query = sa.select(Job)
    if state is not None:
        query = query.where(Job.state == state)
    if type is not None:
        query = query.where(Job.type == type.value)
    if dataset_id is not None:
        query = query.where(Job.dataset_id == dataset_id)
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Job.id.desc()).limit(limit).offset(offset)).all()
    return Page[JobRead](items=[job_read(j) for j in rows], total=total, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=JobRead)
def get_job(job_id: PathId, session: SessionDep) -> JobRead:
    """A job's state, progress, stage, ETA, error and result."""
    return job_read(get_or_404(session, Job, job_id, "job"))


@router.post(
    "/{job_id}/cancel",
    response_model=JobRead,
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(409, d409="The job already ended; nothing to cancel."),
)
def cancel_job(
    job_id: PathId, session: SessionDep, queue: JobQueueDep, _: TokenDep, response: Response
) -> JobRead:
    """Cancel a job: a queued one at once, a running one at its next check."""
    job = get_or_404(session, Job, job_id, "job")
    if job.state.is_terminal():
        raise ApiProblem(409, f"job {job_id} already ended ({job.state}); nothing to cancel")
    active = Job.state.in_(JobState.active())
    session.execute(sa.update(Job).where(Job.id == job_id, active).values(cancel_requested=True))
    queued = Job.state.in_((JobState.PENDING, JobState.QUEUED))
    stopped = session.execute(
        sa.update(Job)
        .where(Job.id == job_id, queued)
        .values(state=JobState.CANCELLED, finished_at=utcnow(), stage="cancelled")
    ).rowcount
    session.commit()
    if stopped and job.celery_task_id:
        queue.revoke(job.celery_task_id)
    session.refresh(job)
    accepted(response, job.id)
    return job_read(job)


RETRYABLE = (JobState.FAILED, JobState.CANCELLED)


@router.post(
    "/{job_id}/retry",
    response_model=JobRead,
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(
        409,
        503,
        d409="The job did not fail and was not cancelled, or another job is active on its "
        "run folder.",
    ),
)
def retry_job(
    job_id: PathId, session: SessionDep, queue: JobQueueDep, _: TokenDep, response: Response
) -> JobRead:
    """Start a FAILED or CANCELLED job again as a new job on the same run folder.

    The run folder keeps the stages and checkpoints the first attempt finished, so the new
    job continues after the last finished epoch instead of starting from zero.
    """
    old = get_or_404(session, Job, job_id, "job")
    if old.state not in RETRYABLE:
        raise ApiProblem(
            409,
            f"job {job_id} is {old.state}; only FAILED or CANCELLED jobs can be retried",
        )
    job = create_job(
        session,
        queue,
        job_type=JobType(old.type),
        params=dict(old.parameters),
        run_dir=Path(str(old.run_dir)),
        dataset_id=old.dataset_id,
        model_id=old.model_id,
    )
    session.execute(sa.update(Job).where(Job.id == job.id).values(message=f"retry of job {job_id}"))
    session.commit()
    session.refresh(job)
    accepted(response, job.id)
    return job_read(job)
