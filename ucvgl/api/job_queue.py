"""Sending jobs to workers by task NAME, so the API process never imports torch."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from ucvgl.shared.jobs.celery_client import RUN_JOB_TASK

log = logging.getLogger(__name__)


class JobQueue:
    """Enqueue, revoke and ping through a Celery app (only its client side is used)."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def enqueue(self, job_id: int, job_type: str, task_id: str) -> None:
        """Send ``ucvgl.run_job(job_id)`` to the queue of ``job_type``."""
        self.celery.send_task(
            RUN_JOB_TASK, kwargs={"job_id": job_id, "job_type": job_type}, task_id=task_id
        )

    def revoke(self, task_id: str) -> None:
        """Ask workers not to start ``task_id`` (best effort; the job row decides anyway)."""
        try:
            self.celery.control.revoke(task_id)
        except Exception:  # the row is already CANCELLED, which the task honours
            log.warning("could not broadcast revoke of task %s", task_id, exc_info=True)

    def broker_ping(self, timeout_s: float = 2.0) -> None:
        """Connect to the broker once; raises when it is unreachable."""
        with self.celery.connection_for_write() as conn:
            conn.ensure_connection(
                max_retries=1,
                interval_start=0,
                interval_step=0.2,
                interval_max=0.2,
                timeout=timeout_s,
            )

    def worker_ping(self, timeout_s: float = 0.5) -> list[str]:
        """Hostnames of workers answering ``celery control ping`` within ``timeout_s``."""
        replies: list[dict[str, Any]] = self.celery.control.ping(timeout=timeout_s) or []
        return [name for reply in replies for name in reply]
