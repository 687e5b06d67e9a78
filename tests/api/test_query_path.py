"""The retrieval query path: loaded once, batched on one worker thread, answers per file.

The API tests use the REAL retriever (``services.retrieval.Retriever`` behind the app's
``BatchingRetriever``) on a tiny untrained model and a saved faiss index of 6 tiles.
"""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ucvgl.api.retrievers import BatchingRetriever, ForwardThread, RetrieverCache
from ucvgl.shared.db import Database
from ucvgl.shared.models import Model, RetrievalIndex


# ------------------------------------------------------------------ BatchingRetriever
class GatedRetriever:
    """Ranks tiles by |tile - image| (images are numbers); the first call waits for a gate."""

    def __init__(self, tiles: int = 10) -> None:
        self.tiles = tiles
        self.calls: list[tuple[list, int, str]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()

    def query(self, images, k):
        self.calls.append((list(images), k, threading.current_thread().name))
        self.entered.set()
        assert self.gate.wait(10)
        if any(image == "bad" for image in images):
            raise ValueError("bad image")
        return [
            [
                {"rank": r + 1, "satellite_id": str(t), "score": -abs(t - image)}
                for r, t in enumerate(sorted(range(self.tiles), key=lambda t: abs(t - image))[:k])
            ]
            for image in images
        ]


def test_waiting_queries_share_one_forward_and_get_their_own_answers():
    inner = GatedRetriever()
    batching = BatchingRetriever(inner)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(batching.query, [0], 1)
        assert inner.entered.wait(5)  # the worker is busy with the first request
        rest = [pool.submit(batching.query, images, k) for images, k in [([3, 7], 2), ([9], 4)]]
        deadline = time.monotonic() + 5
        while batching.thread._queue.qsize() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        inner.gate.set()
        answers = [first.result(5)] + [f.result(5) for f in rest]
    assert [c[:2] for c in inner.calls] == [([0], 1), ([3, 7, 9], 4)]  # 2 forwards, max k
    assert {c[2] for c in inner.calls} == {"ucvgl-forward"}  # never the caller's thread
    assert batching.forwards == 2
    assert [[m["satellite_id"] for m in row] for row in answers[1]] == [["3", "2"], ["7", "6"]]
    assert [m["satellite_id"] for m in answers[2][0]] == ["9", "8", "7", "6"]
    assert [m["rank"] for m in answers[2][0]] == [1, 2, 3, 4]
    assert answers[0] == [[{"rank": 1, "satellite_id": "0", "score": 0}]]
    batching.close()


def test_a_failing_request_does_not_fail_the_ones_batched_with_it():
    inner = GatedRetriever()
    batching = BatchingRetriever(inner)
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(batching.query, [5], 1)
        assert inner.entered.wait(5)
        bad = pool.submit(batching.query, ["bad"], 1)
        good = pool.submit(batching.query, [2], 1)
        while batching.thread._queue.qsize() < 2:
            time.sleep(0.01)
        inner.gate.set()
        assert first.result(5)[0][0]["satellite_id"] == "5"
        assert good.result(5)[0][0]["satellite_id"] == "2"
        with pytest.raises(ValueError, match="bad image"):
            bad.result(5)
    batching.close()


def test_closed_batcher_answers_queued_requests_then_queries_directly():
    inner = GatedRetriever()
    inner.gate.set()
    batching = BatchingRetriever(inner)
    assert batching.query([], 3) == []
    assert batching.query([4], 1)[0][0]["satellite_id"] == "4"
    batching.close()
    batching.thread.join(5)
    assert not batching.thread.alive
    assert batching.query([1], 1)[0][0]["satellite_id"] == "1"  # on a thread of its own
    assert inner.calls[-1][2] not in (threading.current_thread().name, "ucvgl-forward")
    with pytest.raises(ValueError, match="max_batch"):
        BatchingRetriever(inner, max_batch=0)


def test_prepare_runs_on_the_worker_and_its_failure_answers_only_its_request():
    inner = GatedRetriever()
    batching = BatchingRetriever(inner)
    prepared_on: list[str] = []

    def prepare(images):
        def run():
            prepared_on.append(threading.current_thread().name)
            if images == ["undecodable"]:
                raise OSError("truncated upload")
            return images

        return run

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(lambda: batching.submit([], 1, prepare=prepare([5])).result(5))
        assert inner.entered.wait(5)
        broken = batching.submit([], 1, prepare=prepare(["undecodable"]))
        empty = batching.submit([], 1, prepare=prepare([]))
        good = batching.submit([], 2, prepare=prepare([2]))
        while batching.thread._queue.qsize() < 3:
            time.sleep(0.01)
        inner.gate.set()
        assert first.result(5)[0][0]["satellite_id"] == "5"
        assert [m["satellite_id"] for m in good.result(5)[0]] == ["2", "1"]
        assert empty.result(5) == []
        with pytest.raises(OSError, match="truncated upload"):
            broken.result(5)
    assert set(prepared_on) == {"ucvgl-forward"}
    assert [c[0] for c in inner.calls] == [[5], [2]]  # the failed and empty ones never ran
    batching.close()


def test_one_thread_serves_several_retrievers_without_mixing_their_requests():
    first, second = GatedRetriever(), GatedRetriever(tiles=20)
    thread = ForwardThread(max_batch=8)
    a, b = BatchingRetriever(first, thread), BatchingRetriever(second, thread)
    loaded_on = thread.call(lambda: threading.current_thread().name)
    assert loaded_on.result(5) == "ucvgl-forward"
    blocker = a.submit([1], 1)
    assert first.entered.wait(5)  # the thread is busy: the next ones wait in the queue
    waiting = [a.submit([2], 1), b.submit([15], 1), a.submit([3], 1), b.submit([19], 2)]
    while thread._queue.qsize() < 4:
        time.sleep(0.01)
    second.gate.set()
    first.gate.set()
    assert blocker.result(5)[0][0]["satellite_id"] == "1"
    assert [f.result(5)[0][0]["satellite_id"] for f in waiting] == ["2", "15", "3", "19"]
    assert [c[0] for c in first.calls] == [[1], [2, 3]]  # a's waiting requests merged
    assert [c[0] for c in second.calls] == [[15, 19]]  # b's too, never mixed with a's
    assert a.forwards == 2 and b.forwards == 1
    assert {c[2] for c in first.calls + second.calls} == {"ucvgl-forward"}
    thread.close()
    thread.join(5)
    assert not thread.alive


def test_cache_peek_never_loads():
    cache = RetrieverCache(max_entries=2)
    assert cache.peek((1, "a")) is None and cache.loads == 0
    loaded = cache.get((1, "a"), lambda: "retriever")
    assert cache.peek((1, "a")) is loaded and cache.peek((1, "b")) is None


def test_cache_closes_the_retrievers_it_evicts():
    closed = []

    class Closable:
        def __init__(self, key):
            self.key = key

        def close(self):
            closed.append(self.key)

    cache = RetrieverCache(max_entries=1)
    cache.get(1, lambda: Closable(1))
    cache.get(2, lambda: Closable(2))
    assert closed == [1] and len(cache) == 1 and cache.loads == 2


# ------------------------------------------------------------------ through the API
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder as the pipeline leaves it: model/selected.pt and index/ (6 tiles)."""
    import torch

    from ucvgl.services.index import SatelliteIndex
    from ucvgl.services.models import EncoderConfig, build_model, save_model
    from ucvgl.services.pipeline import SELECTED_MODEL

    torch.manual_seed(0)
    cfg = EncoderConfig(
        backbone="test_convnext", ground_size=(32, 64), satellite_size=(32, 32), safa_branches=2
    )
    model = build_model(cfg).eval()
    root = tmp_path_factory.mktemp("run")
    save_model(model, root / SELECTED_MODEL)
    with torch.no_grad():
        tiles = model.embed_satellite(torch.rand(6, 3, 32, 32))
    ids = [f"t{i}" for i in range(6)]
    meta = [
        {"path": f"/sat/t{i}.png", "lat": 45.0 + i, "lon": 7.0, "split": "val"} for i in range(6)
    ]
    SatelliteIndex.build(tiles.numpy(), ids, metadata=meta).save(root / "index")
    return root


@pytest.fixture
def real_index(client, tiny_dataset, service_settings, run_dir):
    """The index row of ``run_dir``, served by the app's own loader."""
    db = Database.from_settings(service_settings)
    with db.session() as s:
        model = Model(
            dataset_id=tiny_dataset["id"],
            run_dir=str(run_dir),
            checkpoint_path=str(run_dir / "model" / "selected.pt"),
            mode="unsupervised",
        )
        s.add(model)
        s.flush()
        index = RetrievalIndex(model_id=model.id, path=str(run_dir / "index"), kind="flat", size=6)
        s.add(index)
    db.dispose()
    return index.id


@pytest.fixture
def load_counts(monkeypatch):
    """Counts model and index loads (spies on what ``Retriever.from_run`` calls)."""
    import ucvgl.services.index as index_module
    import ucvgl.services.models as models_module

    counts = {"model": 0, "index": 0}
    real_load_model, real_load_index = models_module.load_model, index_module.SatelliteIndex.load

    def load_model(*args, **kwargs):
        counts["model"] += 1
        time.sleep(0.2)  # a slow load, so concurrent first requests overlap it
        return real_load_model(*args, **kwargs)

    def load_index(*args, **kwargs):
        counts["index"] += 1
        return real_load_index(*args, **kwargs)

    monkeypatch.setattr(models_module, "load_model", load_model)
    monkeypatch.setattr(index_module.SatelliteIndex, "load", staticmethod(load_index))
    return counts


def panorama(seed: int, size=(32, 64)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def post(client, images: dict[str, np.ndarray], **data):
    files = [("files", (name, png(pixels), "image/png")) for name, pixels in images.items()]
    response = client.post("/api/v1/query", files=files, data={k: str(v) for k, v in data.items()})
    assert response.status_code == 200, response.text
    return response.json()


def ranking(result: dict) -> list[tuple[str, float]]:
    return [(m["satellite_id"], round(m["score"], 4)) for m in result["matches"]]


def test_model_and_index_load_once_across_many_concurrent_requests(client, real_index, load_counts):
    with ThreadPoolExecutor(4) as pool:
        bodies = list(pool.map(lambda i: post(client, {f"{i}.png": panorama(i)}, k=3), range(8)))
    assert load_counts == {"model": 1, "index": 1}
    assert client.app.state.retrievers.loads == 1
    assert all(b["index_id"] == real_index and len(b["results"]) == 1 for b in bodies)
    for _ in range(3):
        post(client, {"again.png": panorama(0)}, k=3)
    assert load_counts == {"model": 1, "index": 1}
    key = client.app.state.index_lookup.fetch(real_index).cache_key
    retriever = client.app.state.retrievers.get(key, lambda: pytest.fail("reloaded"))
    assert isinstance(retriever, BatchingRetriever) and 4 <= retriever.forwards <= 11
    assert retriever.thread is client.app.state.forward_thread  # the app's one torch thread
    assert retriever.max_batch == client.app.state.settings.query_max_batch


def test_a_batch_answers_each_file_in_order_with_k_matches(client, real_index):
    images = {f"p{i}.png": panorama(10 + i) for i in range(4)}
    batch = post(client, images, k=4)
    assert [r["file_name"] for r in batch["results"]] == list(images)
    assert all([m["rank"] for m in r["matches"]] == [1, 2, 3, 4] for r in batch["results"])
    for result, (name, pixels) in zip(batch["results"], images.items(), strict=True):
        alone = post(client, {name: pixels}, k=4)["results"][0]
        assert ranking(result) == ranking(alone)
        scores = [s for _, s in ranking(result)]
        assert scores == sorted(scores, reverse=True)
    assert {len(post(client, images, k=k)["results"][0]["matches"]) for k in (1, 6)} == {1, 6}
    assert len(post(client, images, k=100)["results"][0]["matches"]) == 6  # all the tiles


def test_heading_rolls_the_panorama_to_north_before_the_forward(client, real_index):
    pixels = panorama(3)
    rolled = np.roll(pixels, 16, axis=1)  # heading 90 on a 64-px-wide panorama
    with_heading = post(client, {"p.png": pixels}, k=6, heading=90)["results"][0]
    north_up = post(client, {"p.png": rolled}, k=6)["results"][0]
    unrolled = post(client, {"p.png": pixels}, k=6)["results"][0]
    assert ranking(with_heading) == ranking(north_up)
    chosen = post(client, {"p.png": rolled}, k=6, index_id=real_index)
    assert chosen["index_id"] == real_index and ranking(chosen["results"][0]) == ranking(north_up)
    assert ranking(with_heading) != ranking(unrolled)
