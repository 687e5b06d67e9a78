"""Trained models (checkpoints) and their recall."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Query

from ucvgl.api.bounds import FilterId, Offset, PathId
from ucvgl.api.deps import ReadAccess, SessionDep
from ucvgl.api.job_submission import get_or_404
from ucvgl.api.presenters import API
from ucvgl.api.problems import problem_responses
from ucvgl.shared.models import Model
from ucvgl.shared.schemas import ModelRead, Page

router = APIRouter(
    prefix=f"{API}/models",
    tags=["models"],
    dependencies=[ReadAccess],
    responses=problem_responses(401, 404, 422),
)


@router.get("", response_model=Page[ModelRead])
def list_models(
    session: SessionDep,
    dataset_id: FilterId = None,
    limit: int = Query(50, ge=1, le=500),
    offset: Offset = 0,
) -> Page[ModelRead]:
    """List trained models, newest first, optionally of one dataset."""
    query = sa.select(Model)
    if dataset_id is not None:
        query = query.where(Model.dataset_id == dataset_id)
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Model.id.desc()).limit(limit).offset(offset)).all()
    return Page[ModelRead](
        items=[ModelRead.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/{model_id}", response_model=ModelRead)
def get_model(model_id: PathId, session: SessionDep) -> Model:
    """One trained model with its recall."""
    return get_or_404(session, Model, model_id, "model")
