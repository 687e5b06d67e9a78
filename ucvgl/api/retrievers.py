"""A bounded per-process cache of loaded retrievers (one per index, never re-read per request)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol


class Retriever(Protocol):
    """What ``ucvgl.services.retrieval.Retriever`` offers the API."""

    def query(self, images: list[Any], k: int) -> list[list[dict[str, Any]]]:
        """Top-``k`` tiles per image: dicts with satellite_id, score, path, lat, lon, x, y."""


RetrieverLoader = Callable[[Path, str], Retriever]
"""``(run_dir, device) -> Retriever``."""


def load_service_retriever(run_dir: Path, device: str) -> Retriever:
    """Load the real retriever (imports torch on first use, not at API import)."""
    from ucvgl.services.retrieval import Retriever as ServiceRetriever

    return ServiceRetriever.from_run(run_dir, device)


class RetrieverCache:
    """Least-recently-used cache of at most ``max_entries`` retrievers, keyed by index id."""

    def __init__(self, max_entries: int = 2) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._items: OrderedDict[int, Retriever] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[int, threading.Lock] = {}
        self.loads = 0

    def get(self, key: int, load: Callable[[], Retriever]) -> Retriever:
        """The cached retriever for ``key``, loading it once (concurrent callers wait)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            retriever = load()
            with self._lock:
                self.loads += 1
                self._items[key] = retriever
                while len(self._items) > self.max_entries:
                    self._items.popitem(last=False)
                self._loading.pop(key, None)
            return retriever

    def __len__(self) -> int:
        return len(self._items)
