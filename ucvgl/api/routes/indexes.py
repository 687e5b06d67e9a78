"""Retrieval indexes: build one from a model (a job), list, read."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from fastapi import APIRouter, Query, Response, status

from ucvgl.api.bodies import IndexCreate
from ucvgl.api.bounds import FilterId, Offset, PathId
from ucvgl.api.deps import JobQueueDep, ReadAccess, SessionDep, TokenDep
from ucvgl.api.job_submission import (
    create_job,
    get_or_404,
    params_for_model,
    resolve_init_model,
    validate_params,
)
from ucvgl.api.presenters import API, job_read
from ucvgl.api.problems import problem_responses
from ucvgl.api.routes.jobs import accepted
from ucvgl.shared.enums import JobType
from ucvgl.shared.models import Model, RetrievalIndex
from ucvgl.shared.schemas import IndexRead, JobRead, Page

router = APIRouter(
    prefix=f"{API}/indexes",
    tags=["indexes"],
    dependencies=[ReadAccess],
    responses=problem_responses(401, 404, 422),
)


@router.post(
    "",
    response_model=JobRead,
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(
        409, 503, d409="Another job is still active on the model's run folder."
    ),
)
def create_index(
    body: IndexCreate, session: SessionDep, queue: JobQueueDep, _: TokenDep, response: Response
) -> JobRead:
    """Build a satellite index with a trained model (a job on the model's run folder)."""
    model = get_or_404(session, Model, body.model_id, "model")
    own = resolve_init_model(session, dict(body.params))  # refuses a client's init_from
    params = validate_params(JobType.INDEX, params_for_model(session, model, own))
    job = create_job(
        session,
        queue,
        job_type=JobType.INDEX,
        params=params,
        run_dir=Path(model.run_dir),
        dataset_id=model.dataset_id,
        model_id=model.id,
    )
    accepted(response, job.id)
    return job_read(job)


@router.get("", response_model=Page[IndexRead])
def list_indexes(
    session: SessionDep,
    model_id: FilterId = None,
    limit: int = Query(50, ge=1, le=500),
    offset: Offset = 0,
) -> Page[IndexRead]:
    """List built indexes, newest first."""
    query = sa.select(RetrievalIndex)
    if model_id is not None:
        query = query.where(RetrievalIndex.model_id == model_id)
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(RetrievalIndex.id.desc()).limit(limit).offset(offset))
    return Page[IndexRead](
        items=[IndexRead.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/{index_id}", response_model=IndexRead)
def get_index(index_id: PathId, session: SessionDep) -> RetrievalIndex:
    """One index."""
    return get_or_404(session, RetrievalIndex, index_id, "index")
