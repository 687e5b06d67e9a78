"""Datasets: register one already on disk, generate a synthetic one (both jobs), list, read.

Registering only checks the cheap things in the request (the path is a folder below a data
root, the name is free); a worker then loads and validates the whole dataset, which takes
minutes for 100k-1M images, and records the Dataset row when it is valid (the job's
``result.dataset_id``). An invalid dataset ends the job FAILED, its ``error`` naming the file
or field, and records nothing.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from fastapi import APIRouter, Query, Response, status

from ucvgl.api.bodies import DatasetRegister, SyntheticDatasetCreate
from ucvgl.api.bounds import Offset, PathId
from ucvgl.api.deps import JobQueueDep, ReadAccess, SessionDep, SettingsDep, TokenDep
from ucvgl.api.job_submission import create_job, get_or_404
from ucvgl.api.presenters import API, job_read
from ucvgl.api.problems import ApiProblem, field_problem, problem_responses
from ucvgl.api.routes.jobs import accepted
from ucvgl.api.routes.synthetic import synthetic_job_params
from ucvgl.shared.config import Settings
from ucvgl.shared.enums import JobState, JobType
from ucvgl.shared.models import Dataset, Job
from ucvgl.shared.schemas import DatasetRead, JobRead, Page

router = APIRouter(
    prefix=f"{API}/datasets", tags=["datasets"], responses=problem_responses(401, 404, 422)
)


def resolve_under_data_roots(settings: Settings, path_text: str, field: str) -> Path:
    """Resolve ``path_text`` (symlinks and ``..``) and require it below a data root.

    A relative path is taken relative to the first data root.
    """
    roots = [root.resolve() for root in settings.data_roots]
    try:
        path = Path(path_text).expanduser()
    except RuntimeError:  # "~user/..." naming no user of this machine
        raise field_problem(
            field, f"{path_text!r}: no such user's home folder; give a path under a data root"
        ) from None
    if not path.is_absolute():
        path = roots[0] / path
    resolved = path.resolve()
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise field_problem(field, f"{resolved} is outside the allowed data roots ({allowed})")
    return resolved


def _check_name_free(session: SessionDep, name: str) -> None:
    """409 when a dataset has ``name`` or an active job is creating one with it.

    The worker checks again when it inserts the row (the unique name), so two requests that
    pass here at the same time end in one dataset and one FAILED job.
    """
    if session.scalar(sa.select(Dataset.id).where(Dataset.name == name)) is not None:
        raise ApiProblem(409, f"a dataset named {name!r} already exists; choose another name")
    creating = session.scalars(
        sa.select(Job).where(
            Job.type.in_([t.value for t in JobType if t.creates_dataset]),
            Job.state.in_(JobState.active()),
        )
    ).all()
    for job in creating:
        if (job.parameters or {}).get("name") == name:
            raise ApiProblem(
                409,
                f"job {job.id} ({job.type}, {job.state}) is already creating a dataset named "
                f"{name!r}; wait for it or choose another name",
                extra={"conflicting_job_id": job.id},
            )


DATASET_JOB_CONFLICTS = problem_responses(
    409,
    503,
    d409="The name is taken (by a dataset or an active job creating one), or another job is "
    "active on the same folder.",
)


@router.post(
    "",
    response_model=JobRead,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[ReadAccess],
    responses=DATASET_JOB_CONFLICTS,
)
def register_dataset(
    body: DatasetRegister,
    session: SessionDep,
    settings: SettingsDep,
    queue: JobQueueDep,
    _: TokenDep,
    response: Response,
) -> JobRead:
    """Register a dataset already on disk: a job validates it and records it (202 + Location)."""
    root = resolve_under_data_roots(settings, body.path, "body.path")
    if not root.is_dir():
        raise field_problem("body.path", f"{root} is not an existing folder")
    _check_name_free(session, body.name)
    job = create_job(
        session,
        queue,
        job_type=JobType.REGISTER,
        params={**body.model_dump(mode="json"), "path": str(root)},
        run_dir=root,
    )
    accepted(response, job.id)
    return job_read(job)


@router.post(
    "/synthetic",
    response_model=JobRead,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[ReadAccess],
    responses=DATASET_JOB_CONFLICTS,
)
def create_synthetic_dataset(
    body: SyntheticDatasetCreate,
    session: SessionDep,
    settings: SettingsDep,
    queue: JobQueueDep,
    _: TokenDep,
    response: Response,
) -> JobRead:
    """Generate a synthetic cross-view world under the first data root (a job).

    ``world`` picks a named world of the registry (``GET /api/v1/synthetic/worlds``) and
    ``settings`` changes its knobs; the job's parameters record the resolved values.
    """
    params = synthetic_job_params(body)
    _check_name_free(session, body.name)
    out = resolve_under_data_roots(settings, body.name, "body.name")
    if out.exists():
        raise ApiProblem(409, f"{out} already exists; choose another name or register it")
    job = create_job(
        session,
        queue,
        job_type=JobType.SYNTHETIC,
        params=params,
        run_dir=out,
    )
    accepted(response, job.id)
    return job_read(job)


@router.get("", response_model=Page[DatasetRead], dependencies=[ReadAccess])
def list_datasets(
    session: SessionDep,
    limit: int = Query(50, ge=1, le=500),
    offset: Offset = 0,
) -> Page[DatasetRead]:
    """List registered datasets, newest first."""
    total = session.scalar(sa.select(sa.func.count()).select_from(Dataset)) or 0
    rows = session.scalars(
        sa.select(Dataset).order_by(Dataset.id.desc()).limit(limit).offset(offset)
    ).all()
    return Page[DatasetRead](
        items=[DatasetRead.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


# ``:int``: /datasets/synthetic is its own resource (POST only), never dataset "synthetic".
@router.get("/{dataset_id:int}", response_model=DatasetRead, dependencies=[ReadAccess])
def get_dataset(dataset_id: PathId, session: SessionDep) -> Dataset:
    """One dataset with its counts per split and its validation report."""
    return get_or_404(session, Dataset, dataset_id, "dataset")
