"""Retrieval queries: top-k tiles, cached retriever, upload limits (413) and 429."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image
from service_fixtures import assert_problem

from ucvgl.api.deps import get_retriever_loader
from ucvgl.shared.db import Database
from ucvgl.shared.models import Model, RetrievalIndex


class RecordingRetriever:
    """Test double of ``services.retrieval.Retriever``: ranks tiles by mean brightness."""

    def __init__(self, tiles: dict[str, float]) -> None:
        self.tiles, self.seen, self.threads = tiles, [], []

    def query(self, images, k):
        self.seen.append([np.asarray(im) for im in images])
        self.threads.append(threading.current_thread().name)
        out = []
        for image in images:
            level = float(np.asarray(image).mean())
            ranked = sorted(self.tiles.items(), key=lambda kv: abs(kv[1] - level))[:k]
            out.append(
                [
                    {
                        "satellite_id": sid,
                        "score": 1.0 - abs(value - level) / 255,
                        "path": f"/data/tiny/satellite/{sid}.png",
                        "lat": 45.0,
                        "lon": 7.0,
                        "x": None,
                        "y": None,
                    }
                    for sid, value in ranked
                ]
            )
        return out


def png(value: int, size=(32, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (value, value, value)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def index_id(client, tiny_dataset, service_settings):
    db = Database.from_settings(service_settings)
    with db.session() as s:
        model = Model(
            dataset_id=tiny_dataset["id"],
            run_dir="/runs/m",
            checkpoint_path="/runs/m/x.pt",
            mode="unsupervised",
        )
        s.add(model)
        s.flush()
        index = RetrievalIndex(model_id=model.id, path="/runs/m/index", kind="flat", size=3)
        s.add(index)
    db.dispose()
    loads = []
    retriever = RecordingRetriever({"dark": 10.0, "mid": 128.0, "bright": 250.0})

    def loader(run_dir, device):
        loads.append((str(run_dir), device, threading.current_thread().name))
        return retriever

    client.app.dependency_overrides[get_retriever_loader] = lambda: loader
    client.loads, client.retriever = loads, retriever
    return index.id


def test_query_returns_top_k_per_panorama_and_loads_the_index_once(client, index_id):
    files = [("files", ("a.png", png(245), "image/png")), ("files", ("b.png", png(5), "image/png"))]
    for _ in range(2):
        response = client.post("/api/v1/query", files=files, data={"k": "2"})
        assert response.status_code == 200, response.text
    body = response.json()
    assert body["index_id"] == index_id and body["k"] == 2
    a, b = body["results"]
    assert a["file_name"] == "a.png" and [m["satellite_id"] for m in a["matches"]] == [
        "bright",
        "mid",
    ]
    assert b["matches"][0]["satellite_id"] == "dark" and b["matches"][0]["rank"] == 1
    assert b["matches"][0]["file_name"] == "dark.png" and b["matches"][0]["lat"] == 45.0
    # loaded once, then cached; the load and every forward ran on the app's one torch thread
    assert client.loads == [("/runs/m", "cpu", "ucvgl-forward")]
    assert client.retriever.threads == ["ucvgl-forward"] * 2


def test_heading_rolls_the_panorama_north(client, index_id):
    pano = np.zeros((8, 16, 3), dtype=np.uint8)
    pano[:, 0] = 255
    buffer = io.BytesIO()
    Image.fromarray(pano).save(buffer, format="PNG")
    files = [("files", ("p.png", buffer.getvalue(), "image/png"))]
    response = client.post("/api/v1/query", files=files, data={"k": "1", "heading": "90"})
    assert response.status_code == 200, response.text
    seen = client.retriever.seen[-1][0]
    assert seen[:, 4].min() == 255 and seen[:, 0].max() == 0  # moved right by W/4


def test_upload_limits(client, index_id, service_settings):
    settings = service_settings.model_copy(
        update={"max_upload_bytes": 2000, "max_image_pixels": 1000, "max_batch_files": 2}
    )
    client.app.state.settings = settings
    three = [("files", (f"{i}.png", png(1), "image/png")) for i in range(3)]
    assert_problem(client.post("/api/v1/query", files=three), 413, "limit is 2")
    big = [("files", ("big.png", png(1, size=(64, 32)), "image/png"))]
    assert_problem(client.post("/api/v1/query", files=big), 413, "big.png", "pixels")
    noise = np.random.default_rng(0).integers(0, 255, (30, 30, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    heavy = [("files", ("heavy.png", buffer.getvalue(), "image/png"))]
    assert_problem(client.post("/api/v1/query", files=heavy), 413, "2000 bytes")
    junk = [("files", ("junk.png", b"not an image", "image/png"))]
    assert_problem(client.post("/api/v1/query", files=junk), 422, "junk.png")
    assert_problem(client.post("/api/v1/query", data={"k": "3"}), 422, "files")
    assert_problem(
        client.post("/api/v1/query", files=big[:0] or three[:1], data={"index_id": "99"}),
        404,
        "index 99",
    )


def test_concurrent_queries_per_client_are_limited(client, index_id):
    limiter = client.app.state.query_limiter
    files = [("files", ("a.png", png(1), "image/png"))]
    held = []
    for _ in range(limiter.limit):  # occupy every slot of the test client's address
        slot = limiter.slot("testclient")
        slot.__enter__()
        held.append(slot)
    problem = assert_problem(client.post("/api/v1/query", files=files), 429, "concurrent")
    assert problem["status"] == 429
    for slot in held:
        slot.__exit__(None, None, None)
    assert client.post("/api/v1/query", files=files).status_code == 200


def test_no_index_yet_is_404(client, tiny_dataset):
    files = [("files", ("a.png", png(1), "image/png"))]
    assert_problem(client.post("/api/v1/query", files=files), 404, "no index")


def test_retriever_cache_is_bounded_and_loads_each_key_once():
    from ucvgl.api.retrievers import RetrieverCache

    cache, calls = RetrieverCache(max_entries=2), []

    def load(key):
        calls.append(key)
        return f"retriever-{key}"

    threads = [threading.Thread(target=cache.get, args=(1, lambda: load(1))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1]
    cache.get(2, lambda: load(2))
    cache.get(3, lambda: load(3))
    assert len(cache) == 2
    cache.get(1, lambda: load(1))
    assert calls == [1, 2, 3, 1]
