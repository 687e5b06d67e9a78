"""The worker's Celery application: the shared producer app with ``ucvgl.run_job`` registered.

``create_celery_app(settings)`` builds it; the module attribute ``app`` (built lazily from
``get_settings()``) is what ``celery -A ucvgl.worker.celery_app worker`` loads. Broker,
queues, routes and reliability settings live in :mod:`ucvgl.shared.jobs.celery_client`,
which the API uses alone to send tasks by name.
"""

from __future__ import annotations

from celery import Celery

from ucvgl.shared.config import Settings, get_settings
from ucvgl.shared.jobs.celery_client import DEFAULT_JOB_RUNNER, create_producer_app
from ucvgl.worker.tasks import register_tasks


def create_celery_app(settings: Settings, *, job_runner: str = DEFAULT_JOB_RUNNER) -> Celery:
    """A worker's Celery app for ``settings`` with ``ucvgl.run_job`` and the heartbeat.

    Args:
        settings: where the broker and the database are.
        job_runner: ``module:function`` with ``run_job``'s signature that tasks call.
    """
    celery = create_producer_app(settings, job_runner=job_runner)
    register_tasks(celery)
    return celery


def __getattr__(name: str) -> Celery:
    """Build the default app on first access of ``app``/``celery`` (for ``celery -A``)."""
    if name in ("app", "celery"):
        global _default_app
        if _default_app is None:
            _default_app = create_celery_app(get_settings())
        return _default_app
    raise AttributeError(name)


_default_app: Celery | None = None
