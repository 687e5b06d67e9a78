"""Loaded retrievers kept by the server process: one torch thread, batching, a cache.

* :class:`ForwardThread`: the ONE thread of a server process that runs torch: every model
  load and every forward. On a CPU, torch's OpenMP pool gives each thread that runs torch
  ops its own team of helper threads; once a second thread has run any, every forward in
  the process measured ~2x slower (ConvNeXt-atto retriever, 2 cores: 6.5 ms per panorama
  with one torch thread against 12 ms after a forward on a second thread, for good; and
  10-50x slower on a busy machine when request threads each ran forwards). The queries
  waiting when the thread becomes free are merged into one forward of up to ``max_batch``
  images (one request is never split); with ``gather_s = 0`` (the default) nothing waits
  on purpose, so a lone request pays no batching delay.
* :class:`BatchingRetriever`: a retriever's front on a :class:`ForwardThread` (its own
  thread, or the app's shared one).
* :class:`RetrieverCache`: one retriever per index build, loaded once (concurrent first
  requests wait for a single load), never re-read per request; least-recently-used eviction.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict, deque
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
"""``(run_dir, device) -> Retriever``; the app calls it on its :class:`ForwardThread`."""


def load_service_retriever(run_dir: Path, device: str) -> Retriever:
    """Load the real retriever of a run folder (imports torch here, not at API import)."""
    from ucvgl.services.retrieval import Retriever as ServiceRetriever

    return ServiceRetriever.from_run(run_dir, device)


@dataclass
class _Request:
    front: BatchingRetriever
    images: list[Any]
    k: int
    prepare: Callable[[], list[Any]] | None = None
    """Turns the request's payload into its images on the forward thread (e.g. decoding
    uploads); an exception it raises answers this request only."""
    future: Future = field(default_factory=Future)


@dataclass
class _Call:
    fn: Callable[[], Any]
    future: Future = field(default_factory=Future)


class ForwardThread:
    """One thread running torch work in order: calls (loads) and merged query forwards.

    Args:
        max_batch: stop gathering more requests of the same retriever once this many
            images are waiting (one request is never split, so a batch may exceed it by
            one request's images).
        gather_s: after the first request, wait up to this long for more (0: take only
            those already queued).
        name: the thread's name.
    """

    def __init__(
        self, *, max_batch: int = 32, gather_s: float = 0.0, name: str = "ucvgl-forward"
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if gather_s < 0:
            raise ValueError(f"gather_s must be >= 0, got {gather_s}")
        self.max_batch, self.gather_s = max_batch, gather_s
        self._queue: queue.SimpleQueue[_Request | _Call | None] = queue.SimpleQueue()
        self._held: deque[_Request | _Call] = deque()  # taken while gathering, served next
        self._lock = threading.Lock()
        self._closed = False
        self._name = name
        self._thread: threading.Thread | None = None  # started by the first call or query

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn()`` on the thread (after the work queued before it); its future."""
        return self._put(_Call(fn))

    def submit(
        self,
        front: BatchingRetriever,
        images: list[Any],
        k: int,
        prepare: Callable[[], list[Any]] | None = None,
    ) -> Future:
        """Queue a query of ``front``'s retriever; the future's result is its hits."""
        return self._put(_Request(front, list(images), int(k), prepare))

    def _put(self, item: _Request | _Call) -> Future:
        with self._lock:
            closed = self._closed
            if not closed:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._serve, name=self._name, daemon=True
                    )
                    self._thread.start()
                self._queue.put(item)
        if closed:  # after close: answered on a thread of its own
            threading.Thread(target=self._serve_one, args=(item,), daemon=True).start()
        return item.future

    def close(self) -> None:
        """Answer what is queued, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (after :meth:`close`)."""
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the thread runs (False before its first work and after close)."""
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ the thread
    def _serve(self) -> None:
        while True:
            first = self._held.popleft() if self._held else self._queue.get()
            if first is None:
                return
            if isinstance(first, _Call):
                self._serve_one(first)
                continue
            batch, stop = self._gather(first)
            self._answer(batch)
            if stop:
                while self._held:  # queued before close: still answered
                    self._serve_one(self._held.popleft())
                return

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        """``first`` plus the waiting requests of the same retriever (others are held, in
        order, for the next rounds)."""
        batch, size = [first], len(first.images) or 1

        def same(item: _Request | _Call) -> bool:
            return isinstance(item, _Request) and item.front is first.front

        if self._held:  # what an earlier round held back comes first
            kept: deque[_Request | _Call] = deque()
            for item in self._held:
                if size < self.max_batch and same(item):
                    batch.append(item)
                    size += len(item.images) or 1
                else:
                    kept.append(item)
            self._held = kept
        deadline = time.monotonic() + self.gather_s
        while size < self.max_batch:
            wait = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            if same(item):
                batch.append(item)
                size += len(item.images) or 1  # not prepared yet: at least one image
            else:
                self._held.append(item)
        return batch, False

    def _serve_one(self, item: _Request | _Call) -> None:
        if isinstance(item, _Call):
            if item.future.set_running_or_notify_cancel():
                try:
                    item.future.set_result(item.fn())
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    item.future.set_exception(exc)
            return
        self._answer([item])

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
        front = batch[0].front
        images = [image for request in batch for image in request.images]
        front.count_forward()
        try:
            hits = front.retriever.query(images, max(r.k for r in batch))
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


class BatchingRetriever:
    """A retriever whose queries run on a :class:`ForwardThread`, merged when they wait.

    Args:
        retriever: the retriever doing the work (its ``query`` is only ever called from
            the forward thread).
        thread: the forward thread to use (the app's shared one); None starts one of its
            own (with ``max_batch`` and ``gather_s``), stopped by :meth:`close`.
    """

    def __init__(
        self,
        retriever: Retriever,
        thread: ForwardThread | None = None,
        *,
        max_batch: int = 32,
        gather_s: float = 0.0,
    ) -> None:
        self.retriever = retriever
        self._owns_thread = thread is None
        self.thread = thread or ForwardThread(max_batch=max_batch, gather_s=gather_s)
        self.forwards = 0
        """Calls of ``retriever.query`` so far (fewer than requests when batching works)."""
        self._lock = threading.Lock()

    @property
    def max_batch(self) -> int:
        """Images merged per forward at most (the thread's setting)."""
        return self.thread.max_batch

    def count_forward(self) -> None:
        """Called by the forward thread before each ``retriever.query``."""
        with self._lock:
            self.forwards += 1

    def query(self, images: list[Any], k: int) -> Hits:
        """Top-``k`` tiles of each image (blocks until the forward thread has answered)."""
        return self.submit(images, k).result()

    def submit(
        self, images: list[Any], k: int, prepare: Callable[[], list[Any]] | None = None
    ) -> Future:
        """Queue a query; the future's result is what :meth:`query` returns.

        Never runs the forward on the calling thread, so an event loop may call it.

        Args:
            images: the query images (ignored when ``prepare`` is given).
            k: tiles per image.
            prepare: called on the forward thread to produce the images (decoding there
                saves the request a threadpool round trip); what it raises becomes the
                future's exception.
        """
        if prepare is None and not images:
            done: Future = Future()
            done.set_result([])
            return done
        return self.thread.submit(self, images, k, prepare)

    def close(self) -> None:
        """Stop the forward thread if this front started it (queued work is answered)."""
        if self._owns_thread:
            self.thread.close()


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
