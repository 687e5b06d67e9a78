"""Loaded retrievers kept by the server process: a bounded cache and a batching front.

* :class:`RetrieverCache`: one retriever per index, loaded once (concurrent first requests
  wait for a single load), never re-read per request; least-recently-used eviction.
* :class:`BatchingRetriever`: the forwards of one retriever run on its own worker threads,
  never on the request threads, and the queries waiting when a worker becomes free can be
  merged into one forward pass (up to ``max_batch`` images). On a busy CPU the forwards of
  a threadpool thread that had loaded the model ran 10-50x slower (torch's OpenMP pool;
  ``benchmarks/query.py`` variant ``direct``: 1,052 ms p50 against 32 ms); dedicated
  workers never load anything. With ``gather_s = 0`` (the default) nothing waits on
  purpose, so a lone request pays no batching delay.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

Hits = list[list[dict[str, Any]]]


class Retriever(Protocol):
    """What ``ucvgl.services.retrieval.Retriever`` offers the API."""

    def query(self, images: list[Any], k: int) -> Hits:
        """Top-``k`` tiles per image, best first: dicts with rank, satellite_id, score, path,
        lat, lon, x, y."""


RetrieverLoader = Callable[[Path, str], Retriever]
"""``(run_dir, device) -> Retriever``."""


CPU_WORKERS = 4
"""Forward threads per retriever on a CPU, one request per forward. ``benchmarks/query.py``
on 2 busy cores, 4 concurrent clients, three runs: 4 workers 115-119 ms p50 and 33-34
requests/s every time; 1 worker 114-199 ms and 19-31/s; one worker merging the waiting
requests 97-107 ms in two runs but 262 ms in another (a 4-image forward alone measured
3-7x a 1-image one there). One client: about 32 ms p50 for all three."""

GPU_MAX_BATCH = 32
"""Images merged per forward on a GPU (one worker), where a small batch costs about as much
as one image; not measured by this project yet: run ``benchmarks/query.py --device cuda``."""


def load_service_retriever(run_dir: Path, device: str) -> Retriever:
    """Load the real retriever behind a :class:`BatchingRetriever` (imports torch here)."""
    from ucvgl.services.retrieval import Retriever as ServiceRetriever

    retriever = ServiceRetriever.from_run(run_dir, device)
    if device == "cpu":
        return BatchingRetriever(retriever, max_batch=1, workers=CPU_WORKERS)
    return BatchingRetriever(retriever, max_batch=GPU_MAX_BATCH)


@dataclass
class _Request:
    images: list[Any]
    k: int
    prepare: Callable[[], list[Any]] | None = None
    """Turns the request's payload into its images on the worker thread (e.g. decoding
    uploads); an exception it raises answers this request only."""
    future: Future = field(default_factory=Future)


class BatchingRetriever:
    """Runs the queries of one retriever on its own worker threads, merging waiting ones.

    Args:
        retriever: the retriever doing the work (its ``query`` is only ever called from the
            worker threads).
        max_batch: stop gathering more requests once this many images are waiting (one
            request is never split, so a batch may exceed it by one request's images).
        gather_s: after the first request, wait up to this long for more (0: take only
            those already queued).
        workers: worker threads taking requests from the queue, each running its own
            forwards (more than one runs forwards concurrently).
    """

    def __init__(
        self,
        retriever: Retriever,
        *,
        max_batch: int = 32,
        gather_s: float = 0.0,
        workers: int = 1,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if gather_s < 0:
            raise ValueError(f"gather_s must be >= 0, got {gather_s}")
        self.retriever = retriever
        self.max_batch = max_batch
        self.gather_s = gather_s
        self.forwards = 0
        """Calls of ``retriever.query`` so far (fewer than requests when batching works)."""
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._threads = [
            threading.Thread(target=self._serve, name="ucvgl-retriever", daemon=True)
            for _ in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def query(self, images: list[Any], k: int) -> Hits:
        """Top-``k`` tiles of each image (blocks until the worker has answered)."""
        return self.submit(images, k).result()

    def submit(
        self, images: list[Any], k: int, prepare: Callable[[], list[Any]] | None = None
    ) -> Future:
        """Queue a query; the future's result is what :meth:`query` returns.

        Never runs the forward on the calling thread, so an event loop may call it.

        Args:
            images: the query images (ignored when ``prepare`` is given).
            k: tiles per image.
            prepare: called on the worker thread to produce the images (decoding there
                saves the request a threadpool round trip); what it raises becomes the
                future's exception.
        """
        request = _Request(list(images), int(k), prepare)
        if prepare is None and not request.images:
            request.future.set_result([])
            return request.future
        with self._lock:
            closed = self._closed
            if not closed:
                self._queue.put(request)
        if closed:  # evicted while the caller held it: answer on a thread of its own
            threading.Thread(target=self._answer, args=([request],), daemon=True).start()
        return request.future

    def close(self) -> None:
        """Answer what is queued, then stop the worker thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)

    # ------------------------------------------------------------------ worker thread
    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            self._answer(batch)
            if stop:
                return

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        batch, size = [first], len(first.images) or 1
        deadline = time.monotonic() + self.gather_s
        while size < self.max_batch:
            wait = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
            size += len(item.images) or 1  # not prepared yet: at least one image
        return batch, False

    def _answer(self, batch: list[_Request]) -> None:
        # requests whose caller gave up (cancelled future) are dropped; the others can no
        # longer be cancelled, so setting their results below cannot fail
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        ready = [r for r in live if self._prepare(r)]
        if ready:
            self._run(ready)

    @staticmethod
    def _prepare(request: _Request) -> bool:
        """Run the request's ``prepare`` (if any); False when it failed or had no images
        (its future is answered then)."""
        if request.prepare is not None:
            try:
                request.images = list(request.prepare())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
                request.future.set_exception(exc)
                return False
            request.prepare = None
        if not request.images:
            request.future.set_result([])
            return False
        return True

    def _run(self, batch: list[_Request]) -> None:
        images = [image for request in batch for image in request.images]
        with self._lock:
            self.forwards += 1
        try:
            hits = self.retriever.query(images, max(r.k for r in batch))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting request threads
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            for request in batch:  # one bad request must not fail the others
                self._run([request])
            return
        start = 0
        for request in batch:
            found = hits[start : start + len(request.images)]
            request.future.set_result([row[: request.k] for row in found])
            start += len(request.images)


class RetrieverCache:
    """Least-recently-used cache of at most ``max_entries`` retrievers, keyed by index
    (the query route uses ``IndexRow.cache_key``: id and build time).

    Evicted retrievers with a ``close()`` method are closed.
    """

    def __init__(self, max_entries: int = 2) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._items: OrderedDict[Hashable, Retriever] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[Hashable, threading.Lock] = {}
        self.loads = 0

    def peek(self, key: Hashable) -> Retriever | None:
        """The cached retriever for ``key`` or None; never loads (an event loop may call it)."""
        with self._lock:
            retriever = self._items.get(key)
            if retriever is not None:
                self._items.move_to_end(key)
            return retriever

    def get(self, key: Hashable, load: Callable[[], Retriever]) -> Retriever:
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
            evicted = []
            with self._lock:
                self.loads += 1
                self._items[key] = retriever
                while len(self._items) > self.max_entries:
                    evicted.append(self._items.popitem(last=False)[1])
                self._loading.pop(key, None)
            for old in evicted:
                close = getattr(old, "close", None)
                if callable(close):
                    close()
            return retriever

    def __len__(self) -> int:
        return len(self._items)
