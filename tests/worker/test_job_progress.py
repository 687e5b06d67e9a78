"""JobProgress writes to the job row (throttled) and turns a cancel request into JobCancelled."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from ucvgl.shared.db import Database
from ucvgl.shared.enums import JobState
from ucvgl.shared.errors import JobCancelled
from ucvgl.shared.models import Job
from ucvgl.worker.job_progress import JobProgress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_throttled_and_cancellation_is_seen(db_url):
    db = Database.from_url(db_url)
    with db.session() as s:
        job = Job(type="project", run_dir="/r", state=JobState.RUNNING)
        s.add(job)
    clock = Clock()
    progress = JobProgress(db, job.id, interval_s=0.5, clock=clock)
    progress.update("project", 0.1)  # first update of a stage: written
    progress.update("project", 0.2)  # within 0.5 s: held back
    progress.update("project", 0.3)
    assert progress.writes == 1
    with db.sessions() as s:
        row = s.get(Job, job.id)
        assert (row.stage, row.progress) == ("project", pytest.approx(0.1))
        assert row.heartbeat_at is not None
    clock.now = 0.6
    progress.update("project", 0.4, "4 of 10")
    progress.update("train", 0.0)  # a new stage: written at once
    assert progress.writes == 3
    progress.update("train", 0.5)
    progress.flush()
    with db.sessions() as s:
        row = s.get(Job, job.id)
        assert (row.stage, row.progress) == ("train", pytest.approx(0.5))
    progress.check_cancelled()
    with db.session() as s:
        s.execute(sa.update(Job).values(cancel_requested=True))
    progress.check_cancelled()  # read at most every interval: not yet
    clock.now = 1.5
    with pytest.raises(JobCancelled):
        progress.check_cancelled()
    db.dispose()
