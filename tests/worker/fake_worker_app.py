"""Celery app for test workers: the real app, with the test-only fake job runner."""

from __future__ import annotations

from ucvgl.shared.config import get_settings
from ucvgl.worker.celery_app import create_celery_app

app = create_celery_app(get_settings(), job_runner="fake_runner:run_job")
