"""Lost jobs: per-job heartbeats and the reaper that fails RUNNING jobs nobody beats for.

A worker killed mid-job (SIGKILL, OOM, power loss) leaves its row RUNNING. Redis redelivers
the task only after the broker's visibility timeout and the embedded SQLite broker may never
do so, so the job row cannot wait for the broker: while a job runs, :class:`JobHeartbeat`
refreshes ``jobs.heartbeat_at`` every few seconds from the process that runs it, and
:func:`reap_stale_jobs` (run periodically by the API and by every worker) marks a RUNNING job
whose heartbeat is older than ``settings.job_stale_seconds`` FAILED with the reason. Its run
folder keeps every checkpoint: ``POST /api/v1/jobs/{id}/retry`` resumes it.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from types import TracebackType

import sqlalchemy as sa

from ucvgl.shared.db import Database
from ucvgl.shared.enums import JobState
from ucvgl.shared.models import Job, utcnow

log = logging.getLogger(__name__)

LOST_STAGE = "lost"


def job_heartbeat_interval(stale_s: float) -> float:
    """Seconds between two beats of a running job: a quarter of the stale limit, 0.2..5 s."""
    return min(5.0, max(0.2, stale_s / 4.0))


def lost_reason(hostname: str | None, since: datetime | None, job_id: int) -> str:
    """The ``error`` of a job whose worker was lost."""
    when = since.isoformat(timespec="seconds") if since is not None else "it started"
    return (
        f"worker {hostname or 'unknown'} lost (no heartbeat since {when}); "
        f"POST /api/v1/jobs/{job_id}/retry resumes it from its last checkpoint"
    )


def reap_stale_jobs(
    database: Database, stale_s: float, *, now: datetime | None = None
) -> list[int]:
    """Mark FAILED every RUNNING job without a heartbeat for ``stale_s`` seconds.

    Each row is updated with the same staleness condition, so a job that beats between the
    select and the update is left alone.

    Returns:
        The ids of the jobs marked FAILED.
    """
    now = now or utcnow()
    cutoff = now - timedelta(seconds=stale_s)
    # A worker sets heartbeat_at when it marks a job RUNNING, so every job a worker runs has
    # one; a row without it was not started by a worker and is left alone.
    stale = sa.and_(
        Job.state == JobState.RUNNING, Job.heartbeat_at.is_not(None), Job.heartbeat_at < cutoff
    )
    reaped: list[int] = []
    with database.session() as session:
        rows = session.execute(
            sa.select(Job.id, Job.worker_hostname, Job.heartbeat_at).where(stale)
        ).all()
        for job_id, hostname, heartbeat_at in rows:
            done = session.execute(
                sa.update(Job)
                .where(Job.id == job_id, stale)
                .values(
                    state=JobState.FAILED,
                    finished_at=now,
                    stage=LOST_STAGE,
                    error=lost_reason(hostname, heartbeat_at, job_id),
                )
            ).rowcount
            if done:
                reaped.append(job_id)
    for job_id in reaped:
        log.warning("job %s: its worker was lost; marked FAILED", job_id)
    return reaped


def reap_quietly(database: Database, stale_s: float) -> list[int]:
    """:func:`reap_stale_jobs`, logging (not raising) a database error."""
    try:
        return reap_stale_jobs(database, stale_s)
    except Exception:
        log.warning("could not look for lost jobs (database unreachable?)", exc_info=True)
        return []


class JobHeartbeat:
    """A daemon thread refreshing ``heartbeat_at`` of a RUNNING job every ``interval_s``.

    Use as a context manager around the job's work; a database error is logged and the
    next beat tries again.
    """

    def __init__(self, database: Database, job_id: int, interval_s: float) -> None:
        self.database, self.job_id, self.interval_s = database, job_id, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"ucvgl-job-{job_id}-heartbeat", daemon=True
        )

    def beat(self) -> None:
        """Write one heartbeat (only while the job is RUNNING)."""
        with self.database.session() as session:
            session.execute(
                sa.update(Job)
                .where(Job.id == self.job_id, Job.state == JobState.RUNNING)
                .values(heartbeat_at=utcnow())
            )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except Exception:
                log.warning("heartbeat of job %s failed", self.job_id, exc_info=True)

    def __enter__(self) -> JobHeartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
