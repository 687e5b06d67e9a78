"""Worker liveness rows (``worker_heartbeats``): written by workers, read by ``/readyz``.

The embedded SQLite broker cannot broadcast, so ``celery control ping`` finds no worker
there; a row refreshed every :data:`HEARTBEAT_INTERVAL_S` seconds works with any broker.
"""

from __future__ import annotations

import os
from datetime import timedelta

import sqlalchemy as sa

from ucvgl.shared.db import Database
from ucvgl.shared.models import WorkerHeartbeat, utcnow

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
