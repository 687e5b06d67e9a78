"""Reliability tests: real processes (workers, Redis, a TCP proxy to PostgreSQL) and faults."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
for folder in (TESTS / "shared", TESTS / "worker", Path(__file__).resolve().parent):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from service_fixtures import *  # noqa: E402,F401,F403
