"""One :class:`Database` per worker process and settings (rebuilt after a fork)."""

from __future__ import annotations

import os

from ucvgl.shared.config import Settings
from ucvgl.shared.db import Database

_databases: dict[tuple[int, str], Database] = {}


def database_for(settings: Settings) -> Database:
    """This process's :class:`Database` for ``settings`` (one per process, after fork too)."""
    key = (os.getpid(), settings.resolved_database_url)
    if key not in _databases:
        _databases[key] = Database.from_settings(settings)
    return _databases[key]
