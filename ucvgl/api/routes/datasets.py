"""Datasets: register one already on disk, generate a synthetic one, list, read."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from fastapi import APIRouter, Query, Response, status
from sqlalchemy.exc import IntegrityError

from ucvgl.api.deps import JobQueueDep, ReadAccess, SessionDep, SettingsDep, TokenDep
from ucvgl.api.job_submission import RETRY_AFTER_S, create_job, get_or_404
from ucvgl.api.presenters import API, job_read
from ucvgl.api.problems import ApiProblem, field_problem, problem_responses
from ucvgl.shared.config import Settings
from ucvgl.shared.enums import JobType
from ucvgl.shared.errors import UcvglError
from ucvgl.shared.models import Dataset
from ucvgl.shared.schemas import (
    DatasetRead,
    DatasetRegister,
    JobRead,
    Page,
    SyntheticDatasetCreate,
)
from ucvgl.worker.recording import json_safe

router = APIRouter(
    prefix=f"{API}/datasets", tags=["datasets"], responses=problem_responses(401, 404, 422)
)


def resolve_under_data_roots(settings: Settings, path_text: str, field: str) -> Path:
    """Resolve ``path_text`` (symlinks and ``..``) and require it below a data root.

    A relative path is taken relative to the first data root.
    """
    roots = [root.resolve() for root in settings.data_roots]
    path = Path(path_text).expanduser()
    if not path.is_absolute():
        path = roots[0] / path
    resolved = path.resolve()
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise field_problem(field, f"{resolved} is outside the allowed data roots ({allowed})")
    return resolved


def _check_name_free(session: SessionDep, name: str) -> None:
    if session.scalar(sa.select(Dataset.id).where(Dataset.name == name)) is not None:
        raise ApiProblem(409, f"a dataset named {name!r} already exists; choose another name")


@router.post(
    "",
    response_model=DatasetRead,
    status_code=status.HTTP_201_CREATED,
    dependencies=[ReadAccess],
)
def register_dataset(
    body: DatasetRegister,
    session: SessionDep,
    settings: SettingsDep,
    _: TokenDep,
    response: Response,
) -> Dataset:
    """Register a dataset already on disk, after validating its layout."""
    root = resolve_under_data_roots(settings, body.path, "body.path")
    if not root.is_dir():
        raise field_problem("body.path", f"{root} is not an existing folder")
    _check_name_free(session, body.name)
    from ucvgl.services.datasets import load_dataset

    try:
        dataset = load_dataset(
            root, body.format.value, skip_invalid=body.skip_invalid, name=body.name
        )
    except (UcvglError, ValueError, KeyError, OSError) as exc:
        raise ApiProblem(
            422,
            f"the dataset at {root} does not match the {body.format.value} layout: {exc}",
            title="Invalid dataset",
        ) from exc
    row = Dataset(
        name=body.name,
        format=body.format.value,
        root_path=str(root),
        counts=json_safe(dataset.counts()),
        has_ground_truth=bool(dataset.has_ground_truth),
        validation_report=json_safe(dataset.report.to_dict()),
        load_options={"skip_invalid": body.skip_invalid},
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ApiProblem(409, f"a dataset named {body.name!r} already exists") from None
    response.headers["Location"] = f"{API}/datasets/{row.id}"
    return row


@router.post(
    "/synthetic",
    response_model=JobRead,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[ReadAccess],
)
def create_synthetic_dataset(
    body: SyntheticDatasetCreate,
    session: SessionDep,
    settings: SettingsDep,
    queue: JobQueueDep,
    _: TokenDep,
    response: Response,
) -> JobRead:
    """Generate a synthetic cross-view world under the first data root (a job)."""
    _check_name_free(session, body.name)
    out = resolve_under_data_roots(settings, body.name, "body.name")
    if out.exists():
        raise ApiProblem(409, f"{out} already exists; choose another name or register it")
    job = create_job(
        session,
        queue,
        job_type=JobType.SYNTHETIC,
        params=body.model_dump(mode="json"),
        run_dir=out,
    )
    response.headers["Location"] = f"{API}/jobs/{job.id}"
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return job_read(job)


@router.get("", response_model=Page[DatasetRead], dependencies=[ReadAccess])
def list_datasets(
    session: SessionDep,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> Page[DatasetRead]:
    """List registered datasets, newest first."""
    total = session.scalar(sa.select(sa.func.count()).select_from(Dataset)) or 0
    rows = session.scalars(
        sa.select(Dataset).order_by(Dataset.id.desc()).limit(limit).offset(offset)
    ).all()
    return Page[DatasetRead](
        items=[DatasetRead.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/{dataset_id}", response_model=DatasetRead, dependencies=[ReadAccess])
def get_dataset(dataset_id: int, session: SessionDep) -> Dataset:
    """One dataset with its counts per split and its validation report."""
    return get_or_404(session, Dataset, dataset_id, "dataset")
