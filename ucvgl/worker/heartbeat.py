"""Workers announce themselves in ``worker_heartbeats`` so ``/readyz`` can see them.

The embedded SQLite broker cannot broadcast, so ``celery control ping`` finds no worker
there; a row refreshed every :data:`HEARTBEAT_INTERVAL_S` seconds works with any broker.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from ucvgl.shared.db import Database
from ucvgl.shared.models import WorkerHeartbeat, utcnow
from ucvgl.worker.reaper import reap_quietly

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 5.0
HEARTBEAT_STALE_S = 30.0


def beat(database: Database, hostname: str, queues: str) -> None:
    """Insert or refresh this worker's row."""
    with database.session() as session:
        row = session.get(WorkerHeartbeat, hostname)
        if row is None:
            session.add(WorkerHeartbeat(hostname=hostname, queues=queues, pid=os.getpid()))
        else:
            row.last_seen_at, row.queues, row.pid = utcnow(), queues, os.getpid()


def live_workers(database: Database, stale_s: float = HEARTBEAT_STALE_S) -> list[str]:
    """Hostnames of workers seen in the last ``stale_s`` seconds."""
    since = utcnow() - timedelta(seconds=stale_s)
    with database.session() as session:
        return list(
            session.scalars(
                sa.select(WorkerHeartbeat.hostname).where(WorkerHeartbeat.last_seen_at >= since)
            )
        )


def install_heartbeat(app: Celery) -> None:
    """Start a heartbeat thread when a worker of ``app`` is ready; delete the row on shutdown."""
    state: dict[str, Any] = {}

    def on_ready(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        from ucvgl.worker.tasks import database_for

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
