"""Which index a query searches: the database row, trusted for a few seconds.

Every query needs its index's id, model id, run folder and build time. Reading them from
the database on every request cost 0.6 ms of the 3 ms the service added to a 12 ms
forward (``benchmarks/query.py``, a database trip from a threadpool thread on a busy
2-core machine); the route now reads a row from here and goes to the database only when
its entry is older than ``ttl_s`` (``UCVGL_QUERY_INDEX_CACHE_SECONDS``). A new or rebuilt
index is therefore served at most ``ttl_s`` seconds after the worker records it. One
:class:`IndexLookup` belongs to one app (``app.state.index_lookup``), never to the module.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from ucvgl.api.problems import ApiProblem
from ucvgl.shared.db import Database
from ucvgl.shared.models import Model, RetrievalIndex


@dataclass(frozen=True)
class IndexRow:
    """The columns of an index row a query needs."""

    id: int
    model_id: int
    run_dir: Path
    built_at: datetime
    """``indexes.created_at``: rebuilding an index folder updates it, so a retriever cached
    under ``(id, built_at)`` is never served after a rebuild."""

    @property
    def cache_key(self) -> tuple[int, datetime]:
        """Key of the loaded retriever for this build of the index."""
        return (self.id, self.built_at)


class IndexLookup:
    """Index rows by id (``None`` = the newest index), each trusted for ``ttl_s`` seconds.

    Args:
        database: where the rows live.
        ttl_s: how long an answer is reused (0: read the database on every call).
        max_entries: explicit ids remembered at most (least recently used dropped first).
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        database: Database,
        ttl_s: float,
        *,
        max_entries: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s < 0:
            raise ValueError(f"ttl_s must be >= 0, got {ttl_s}")
        self.database, self.ttl_s, self.max_entries, self.clock = (
            database,
            ttl_s,
            max_entries,
            clock,
        )
        self._entries: OrderedDict[int | None, tuple[float, IndexRow]] = OrderedDict()
        self._lock = threading.Lock()
        self.reads = 0
        """Database reads so far."""

    def cached(self, index_id: int | None) -> IndexRow | None:
        """The remembered row for ``index_id`` if still fresh, else None (never blocks on
        the database, so an event loop may call it)."""
        with self._lock:
            entry = self._entries.get(index_id)
            if entry is None or self.clock() - entry[0] >= self.ttl_s:
                return None
            self._entries.move_to_end(index_id)
            return entry[1]

    def fetch(self, index_id: int | None) -> IndexRow:
        """Read the row from the database and remember it (blocking: run it off the loop).

        Raises:
            ApiProblem: 404 naming the index (or saying none was built yet).
        """
        found = sa.select(
            RetrievalIndex.id, RetrievalIndex.model_id, RetrievalIndex.created_at, Model.run_dir
        ).join(Model, RetrievalIndex.model_id == Model.id)
        if index_id is not None:
            found = found.where(RetrievalIndex.id == index_id)
        else:
            # the most recently built (a rebuild keeps its row's id but updates created_at)
            found = found.order_by(
                RetrievalIndex.created_at.desc(), RetrievalIndex.id.desc()
            ).limit(1)
        with self.database.engine.connect() as connection:
            row = connection.execute(found).first()
        if row is None:
            if index_id is not None:
                raise ApiProblem(404, f"index {index_id} does not exist")
            raise ApiProblem(404, "no index has been built yet; POST /api/v1/indexes first")
        found_row = IndexRow(row.id, row.model_id, Path(row.run_dir), row.created_at)
        with self._lock:
            self.reads += 1
            self._entries[index_id] = (self.clock(), found_row)
            self._entries.move_to_end(index_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return found_row
