"""The reliability test app with ``ucvgl worker``'s shutdown bound and pool parent-death.

``SHUTDOWN_TIMEOUT_S`` (seconds) bounds the warm shutdown, as ``ucvgl worker
--shutdown-timeout`` does.
"""

from __future__ import annotations

import os

from reliability_worker_app import app  # noqa: F401 - what `celery -A` loads

from ucvgl.worker import startup

startup.bound_shutdown(float(os.environ.get("SHUTDOWN_TIMEOUT_S", "2")))
startup.die_with_pool_parent()
