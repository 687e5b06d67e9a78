"""The Celery configuration both sides share, and the producer-only app the API sends with.

``create_producer_app(settings)`` builds a Celery app with the broker, queues, routes and
reliability settings and NO tasks: the API sends ``ucvgl.run_job`` by name
(:data:`RUN_JOB_TASK`), so it never imports the worker or torch. The worker's app
(``ucvgl.worker.celery_app.create_celery_app``) is the same app with the task registered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery
from kombu import Exchange
from kombu import Queue as KombuQueue

from ucvgl.shared.config import Settings
from ucvgl.shared.enums import JobType, Queue

RUN_JOB_TASK = "ucvgl.run_job"
DEFAULT_JOB_RUNNER = "ucvgl.services.pipeline:run_job"
"""``module:function`` the task calls; a test worker can point it at another runner."""

SOFT_TIME_LIMIT_S = 24 * 3600
HARD_TIME_LIMIT_S = SOFT_TIME_LIMIT_S + 600


def route_job(
    name: str, args: tuple, kwargs: dict[str, Any], options: dict[str, Any], task=None, **_: Any
) -> dict[str, str] | None:
    """Celery router: send ``ucvgl.run_job`` to the queue of its ``job_type`` keyword."""
    if name != RUN_JOB_TASK:
        return None
    job_type = kwargs.get("job_type")
    try:
        return {"queue": JobType(job_type).queue.value}
    except ValueError:
        return {"queue": Queue.GPU.value}


def _transport_options(broker_url: str) -> dict[str, Any]:
    """Broker options: on Redis an unacknowledged task is redelivered only after any job ends.

    The visibility timeout exceeds the hard time limit, so a job that is still running is
    never handed to a second worker; a LOST worker's job is not left to the broker either:
    the reaper (``ucvgl.shared.jobs.reaper``) fails it after ``job_stale_seconds`` without a
    heartbeat and ``POST /jobs/{id}/retry`` resumes it.
    """
    if broker_url.startswith(("redis://", "rediss://")):
        return {"visibility_timeout": HARD_TIME_LIMIT_S + 3600}
    return {}


def create_producer_app(settings: Settings, *, job_runner: str = DEFAULT_JOB_RUNNER) -> Celery:
    """A Celery app for ``settings`` (broker URL, queues ``gpu``/``cpu``, late acks), no tasks.

    Args:
        settings: where the broker and the database are.
        job_runner: ``module:function`` with ``run_job``'s signature that a worker's task
            calls (stored in the app's conf; unused by a producer).
    """
    broker_url = settings.resolved_broker_url
    if broker_url.startswith("sqla+sqlite:///"):
        Path(broker_url.removeprefix("sqla+sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    celery = Celery("ucvgl", set_as_current=False)
    exchange = Exchange("ucvgl", type="direct")
    celery.conf.update(
        broker_url=broker_url,
        result_backend=settings.result_backend or None,
        task_ignore_result=not settings.result_backend,
        broker_connection_retry_on_startup=True,
        # A broker restart must not end a worker: reconnect forever. A job running when the
        # connection drops goes on (its row is the source of truth); its task, unacked, is
        # redelivered after the visibility timeout and then finds the job terminal.
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=SOFT_TIME_LIMIT_S,
        task_time_limit=HARD_TIME_LIMIT_S,
        task_queues=[KombuQueue(q.value, exchange, routing_key=q.value) for q in Queue],
        task_default_queue=Queue.GPU.value,
        task_default_exchange="ucvgl",
        task_default_routing_key=Queue.GPU.value,
        task_routes=(route_job,),
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_transport_options=_transport_options(broker_url),
        ucvgl_settings=settings,
        ucvgl_job_runner=job_runner,
    )
    return celery
