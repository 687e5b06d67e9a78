"""Turning rows into response schemas (links, ETA, label scores)."""

from __future__ import annotations

from datetime import datetime

from pydantic import ValidationError

from ucvgl.services.label_health import margin_score
from ucvgl.services.progress import eta_seconds as run_eta_seconds
from ucvgl.shared.models import Job, PseudoLabel, PseudoLabelRound, utcnow
from ucvgl.shared.schemas import JobRead, LabelRead, MarginHistogram, RoundRead, StageCheckRead

API = "/api/v1"


def eta_seconds(job: Job, now: datetime | None = None) -> float | None:
    """Seconds left, extrapolating the progress rate since the job started (the CLI's
    :func:`ucvgl.services.progress.eta_seconds`); 0 once terminal, None if unknown."""
    if job.state.is_terminal():
        return 0.0
    if job.started_at is None:
        return None
    return run_eta_seconds(job.progress, ((now or utcnow()) - job.started_at).total_seconds())


def job_links(job: Job) -> dict[str, str]:
    """Hypermedia links of a job."""
    links = {"self": f"{API}/jobs/{job.id}", "cancel": f"{API}/jobs/{job.id}/cancel"}
    if job.dataset_id is not None:
        links["dataset"] = f"{API}/datasets/{job.dataset_id}"
        links["rounds"] = f"{API}/datasets/{job.dataset_id}/rounds"
    if job.model_id is not None:
        links["model"] = f"{API}/models/{job.model_id}"
    result = job.result or {}
    if "model_id" in result:
        links["result_model"] = f"{API}/models/{result['model_id']}"
    if "index_id" in result:
        links["result_index"] = f"{API}/indexes/{result['index_id']}"
    return links


def _stage_check(value: object) -> StageCheckRead | None:
    try:
        return StageCheckRead.model_validate(value)
    except ValidationError:
        return None


def job_health(result: dict | None) -> tuple[list[StageCheckRead], StageCheckRead | None]:
    """The stage-check records (``health``) and the failing one (``failure``) of a result.

    A record that is not a stage check (an old or foreign result) is left out.
    """
    result = result if isinstance(result, dict) else {}
    health = result.get("health")
    checks = [_stage_check(c) for c in health] if isinstance(health, list) else []
    return [c for c in checks if c is not None], _stage_check(result.get("failure"))


def job_read(job: Job) -> JobRead:
    """A job row as :class:`JobRead`."""
    health, failure = job_health(job.result)
    return JobRead(
        id=job.id,
        type=job.type,
        state=job.state,
        progress=job.progress,
        stage=job.stage,
        message=job.message,
        error=job.error,
        result=job.result,
        parameters=job.parameters,
        dataset_id=job.dataset_id,
        model_id=job.model_id,
        run_dir=job.run_dir,
        cancel_requested=job.cancel_requested,
        worker_hostname=job.worker_hostname,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        heartbeat_at=job.heartbeat_at,
        eta_seconds=eta_seconds(job),
        health=health,
        failure=failure,
        links=job_links(job),
    )


def round_read(row: PseudoLabelRound) -> RoundRead:
    """A round row as :class:`RoundRead` (``correct_ratio`` only with ground truth)."""
    ratio = None
    if row.correct is not None and row.labels > 0:
        ratio = row.correct / row.labels
    hist = row.margin_histogram or {}
    return RoundRead(
        id=row.id,
        dataset_id=row.dataset_id,
        model_id=row.model_id,
        job_id=row.job_id,
        round=row.round_number,
        threshold=row.threshold,
        mutual=row.mutual,
        labels=row.labels,
        correct=row.correct,
        correct_ratio=ratio,
        margin_histogram=MarginHistogram(
            edges=hist.get("edges", []), counts=hist.get("counts", [])
        ),
        label_health_score=row.label_health_score,
        created_at=row.created_at,
        links={
            "self": f"{API}/rounds/{row.id}",
            "labels": f"{API}/rounds/{row.id}/labels",
            "labels_csv": f"{API}/rounds/{row.id}/labels.csv",
        },
    )


def label_read(row: PseudoLabel) -> LabelRead:
    """A pseudo-label row with its ``margin_score``."""
    return LabelRead(
        ground_id=row.ground_id,
        satellite_id=row.satellite_id,
        margin=row.margin,
        similarity=row.similarity,
        margin_score=margin_score(row.margin, row.similarity),
        is_correct=row.is_correct,
    )
