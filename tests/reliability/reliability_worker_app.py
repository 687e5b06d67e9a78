"""Celery app for reliability test workers: the real app with a runner chosen by env.

``RELIABILITY_RUNNER`` is ``module:function`` (default ``pausing_runner:run_job``, the real
pipeline that can pause at a stage so a test can kill the worker there).
"""

from __future__ import annotations

import os

from ucvgl.shared.config import get_settings
from ucvgl.worker.celery_app import create_celery_app

app = create_celery_app(
    get_settings(), job_runner=os.environ.get("RELIABILITY_RUNNER", "pausing_runner:run_job")
)
