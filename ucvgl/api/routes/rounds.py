"""Pseudo-label rounds of a dataset and their labels (JSON pages or CSV export)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Literal

import sqlalchemy as sa
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from ucvgl.api.bounds import Offset, PathId
from ucvgl.api.deps import DatabaseDep, ReadAccess, SessionDep
from ucvgl.api.job_submission import get_or_404
from ucvgl.api.presenters import API, label_read, round_read
from ucvgl.api.problems import problem_responses
from ucvgl.services.label_health import margin_score
from ucvgl.shared.db import Database
from ucvgl.shared.models import Dataset, PseudoLabel, PseudoLabelRound
from ucvgl.shared.schemas import LabelRead, Page, RoundRead

router = APIRouter(
    prefix=API,
    tags=["rounds"],
    dependencies=[ReadAccess],
    responses=problem_responses(401, 404, 422),
)

CSV_COLUMNS = ("ground_id", "satellite_id", "margin", "similarity", "margin_score", "is_correct")
CSV_RESPONSE = {200: {"content": {"text/csv": {}}, "description": "labels as CSV"}}


@router.get("/datasets/{dataset_id}/rounds", response_model=Page[RoundRead])
def list_rounds(
    dataset_id: PathId,
    session: SessionDep,
    limit: int = Query(100, ge=1, le=1000),
    offset: Offset = 0,
) -> Page[RoundRead]:
    """Pseudo-label rounds of a dataset in order, with label health and accuracy."""
    get_or_404(session, Dataset, dataset_id, "dataset")
    query = sa.select(PseudoLabelRound).where(PseudoLabelRound.dataset_id == dataset_id)
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(PseudoLabelRound.job_id, PseudoLabelRound.round_number, PseudoLabelRound.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return Page[RoundRead](
        items=[round_read(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/rounds/{round_id}", response_model=RoundRead)
def get_round(round_id: PathId, session: SessionDep) -> RoundRead:
    """One pseudo-label round."""
    return round_read(get_or_404(session, PseudoLabelRound, round_id, "round"))


def _csv_rows(database: Database, round_id: int) -> Iterator[str]:
    """The labels of a round as CSV text chunks, streamed from the database."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    with database.sessions() as session:
        rows = session.scalars(
            sa.select(PseudoLabel)
            .where(PseudoLabel.round_id == round_id)
            .order_by(PseudoLabel.id)
            .execution_options(yield_per=2000)
        )
        for n, row in enumerate(rows, start=1):
            correct = "" if row.is_correct is None else int(row.is_correct)
            score = margin_score(row.margin, row.similarity)
            writer.writerow(
                (row.ground_id, row.satellite_id, row.margin, row.similarity, score, correct)
            )
            if n % 2000 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()


def _csv_response(database: Database, round_id: int) -> StreamingResponse:
    return StreamingResponse(
        _csv_rows(database, round_id),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="round-{round_id}-labels.csv"'},
    )


@router.get("/rounds/{round_id}/labels", response_model=Page[LabelRead], responses=CSV_RESPONSE)
def list_labels(
    round_id: PathId,
    session: SessionDep,
    database: DatabaseDep,
    limit: int = Query(100, ge=1, le=5000),
    offset: Offset = 0,
    format: Literal["json", "csv"] = "json",  # noqa: A002 - the public parameter name
) -> Page[LabelRead] | StreamingResponse:
    """Labels of a round, a page of JSON or (format=csv) every label as CSV."""
    get_or_404(session, PseudoLabelRound, round_id, "round")
    if format == "csv":
        return _csv_response(database, round_id)
    query = sa.select(PseudoLabel).where(PseudoLabel.round_id == round_id)
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(PseudoLabel.id).limit(limit).offset(offset)).all()
    return Page[LabelRead](
        items=[label_read(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get(
    "/rounds/{round_id}/labels.csv", response_class=StreamingResponse, responses=CSV_RESPONSE
)
def export_labels_csv(
    round_id: PathId, session: SessionDep, database: DatabaseDep
) -> StreamingResponse:
    """Every label of a round as CSV (ground_id, satellite_id, margin, similarity, ...)."""
    get_or_404(session, PseudoLabelRound, round_id, "round")
    return _csv_response(database, round_id)
