"""Workers announce themselves in ``worker_heartbeats`` so ``/readyz`` can see them.

The rows and their readers live in :mod:`ucvgl.shared.jobs.liveness` (the compose
healthcheck reads them there); this module starts the thread that writes them, and reaps
lost jobs, inside a worker.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import sqlalchemy as sa
from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from ucvgl.shared.jobs.liveness import HEARTBEAT_INTERVAL_S, beat
from ucvgl.shared.jobs.reaper import reap_quietly
from ucvgl.shared.models import WorkerHeartbeat
from ucvgl.worker.databases import database_for

__all__ = ["install_heartbeat"]

log = logging.getLogger(__name__)


def install_heartbeat(app: Celery) -> None:
    """Start a heartbeat thread when a worker of ``app`` is ready; delete the row on shutdown."""
    state: dict[str, Any] = {}

    def on_ready(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        settings = app.conf.ucvgl_settings
        database = database_for(settings)
        hostname = sender.hostname
        queues = ",".join(sorted(q.name for q in sender.task_consumer.queues))
        stop = threading.Event()

        def loop() -> None:
            # Jobs of a worker lost before this one started are failed at once, then the
            # reaper runs every reaper_interval_seconds (as it does in the API process).
            next_reap = 0.0
            while not stop.is_set():
                try:
                    beat(database, hostname, queues)
                except Exception:  # a database hiccup must not kill the worker
                    log.warning("worker heartbeat failed", exc_info=True)
                if time.monotonic() >= next_reap:
                    reap_quietly(database, settings.job_stale_seconds)
                    next_reap = time.monotonic() + settings.reaper_interval_seconds
                stop.wait(min(HEARTBEAT_INTERVAL_S, settings.reaper_interval_seconds))

        thread = threading.Thread(target=loop, name="ucvgl-heartbeat", daemon=True)
        state.update(stop=stop, thread=thread, database=database, hostname=hostname)
        thread.start()

    def on_shutdown(sender: Any = None, **_: Any) -> None:
        if "stop" not in state:
            return
        state["stop"].set()
        state["thread"].join(timeout=2)
        try:
            with state["database"].session() as session:
                session.execute(
                    sa.delete(WorkerHeartbeat).where(WorkerHeartbeat.hostname == state["hostname"])
                )
        except Exception:
            log.warning("could not remove the worker heartbeat row", exc_info=True)

    worker_ready.connect(on_ready, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)
