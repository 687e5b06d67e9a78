"""A :class:`~ucvgl.services.progress.Progress` that writes to a job row (throttled)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from ucvgl.shared.db import Database
from ucvgl.shared.enums import JobState
from ucvgl.shared.errors import JobCancelled
from ucvgl.shared.models import Job, utcnow

log = logging.getLogger(__name__)


class JobProgress:
    """Writes progress, stage, message and heartbeat to ``jobs`` at most every ``interval_s``.

    ``check_cancelled()`` reads ``cancel_requested`` (at most every ``interval_s``) and
    raises :class:`JobCancelled` once it is set. A stage change or ``fraction >= 1`` is
    written at once. While the database is unreachable both log and carry on (the job keeps
    running; the next write catches up).
    """

    def __init__(
        self,
        database: Database,
        job_id: int,
        *,
        interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database, self.job_id, self.interval_s, self.clock = (
            database,
            job_id,
            interval_s,
            clock,
        )
        self._pending: tuple[str, float, str] | None = None
        self._last_stage: str | None = None
        self._last_write = float("-inf")
        self._last_check = float("-inf")
        self.writes = 0

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        """Record that ``stage`` is ``fraction`` (0..1) done; written when due."""
        fraction = min(max(float(fraction), 0.0), 1.0)
        self._pending = (stage, fraction, message)
        now = self.clock()
        if (
            stage != self._last_stage
            or fraction >= 1.0
            or now - self._last_write >= self.interval_s
        ):
            self.flush()

    def flush(self) -> None:
        """Write the latest pending update now (no-op when none)."""
        if self._pending is None:
            return
        stage, fraction, message = self._pending
        try:
            with self.database.session() as session:
                session.execute(
                    sa.update(Job)
                    .where(Job.id == self.job_id, Job.state == JobState.RUNNING)
                    .values(
                        stage=stage[:200],
                        progress=fraction,
                        message=message,
                        heartbeat_at=utcnow(),
                    )
                )
        except DBAPIError:  # the database is briefly away: keep training, write it later
            log.warning("job %s: progress not written (database unreachable)", self.job_id)
            self._last_write = self.clock()
            return
        self._pending, self._last_stage, self._last_write = None, stage, self.clock()
        self.writes += 1

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` when the job's ``cancel_requested`` flag is set."""
        now = self.clock()
        if now - self._last_check < self.interval_s:
            return
        self._last_check = now
        try:
            with self.database.session() as session:
                requested = session.scalar(
                    sa.select(Job.cancel_requested).where(Job.id == self.job_id)
                )
        except DBAPIError:  # cannot tell while the database is away; ask again later
            log.warning("job %s: cancellation not checked (database unreachable)", self.job_id)
            return
        if requested:
            raise JobCancelled(f"job {self.job_id} was cancelled")
