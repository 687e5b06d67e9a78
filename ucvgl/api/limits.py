"""Per-client limit on concurrent retrieval queries (answered with 429 when exceeded)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ucvgl.api.problems import ApiProblem


class ConcurrencyLimiter:
    """Lets at most ``limit`` requests per client key run at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._active: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, client: str) -> Iterator[None]:
        """Hold one of ``client``'s slots; raises a 429 problem when none is free."""
        with self._lock:
            if self._active.get(client, 0) >= self.limit:
                raise ApiProblem(
                    429,
                    f"too many concurrent queries from this client (limit {self.limit}); "
                    "wait for one to finish",
                    headers={"Retry-After": "1"},
                )
            self._active[client] = self._active.get(client, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._active[client] -= 1
                if not self._active[client]:
                    del self._active[client]
