"""Liveness (/healthz) and readiness (/readyz: database, broker, at least one worker)."""

from __future__ import annotations

from fastapi import APIRouter

from ucvgl.api.deps import DatabaseDep, JobQueueDep
from ucvgl.api.problems import ApiProblem, problem_responses
from ucvgl.shared.jobs.liveness import live_workers
from ucvgl.shared.schemas import Check, Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


def _check(fn) -> Check:  # noqa: ANN001 - a zero-argument callable returning a detail
    try:
        return Check(ok=True, detail=fn())
    except Exception as exc:
        return Check(ok=False, detail=f"{type(exc).__name__}: {exc}")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=problem_responses(503, d503="Not ready: the failed checks are in `checks`."),
)
def readyz(database: DatabaseDep, queue: JobQueueDep) -> Readiness:
    """Ready when the database and the broker answer and at least one worker is alive."""

    def db() -> str:
        database.ping()
        return "SELECT 1 answered"

    def broker() -> str:
        queue.broker_ping()
        return "connected"

    def workers() -> str:
        names = live_workers(database)
        if not names and checks["broker"].ok:  # Redis can broadcast; the SQLite broker cannot
            names = queue.worker_ping(timeout_s=0.5)
        if not names:
            raise RuntimeError("no worker answered; start one with `ucvgl worker`")
        return ", ".join(sorted(names))

    checks = {"database": _check(db), "broker": _check(broker)}
    checks["workers"] = (
        _check(workers)
        if checks["database"].ok
        else Check(ok=False, detail="skipped: the database is down")
    )
    if not all(c.ok for c in checks.values()):
        failed = "; ".join(f"{name}: {c.detail}" for name, c in checks.items() if not c.ok)
        raise ApiProblem(
            503,
            f"not ready: {failed}",
            headers={"Retry-After": "5"},
            extra={"checks": {name: c.model_dump() for name, c in checks.items()}},
        )
    return Readiness(status="ready", checks=checks)
