"""Load (bounded, loopback only): concurrent retrieval queries and job-status polls against a
real uvicorn server while a real worker runs a job: no errors, and the job's progress keeps
moving."""

from __future__ import annotations

import io
import threading
import time

import httpx
from PIL import Image
from processes import ServerThread, start_worker, stop_process
from service_fixtures import (
    TERMINAL_STATES,
    make_folder_dataset,
    register_tiny_dataset,
)

from ucvgl.api.deps import get_retriever_loader
from ucvgl.api.main import create_app
from ucvgl.shared.db import Database
from ucvgl.shared.models import Model, RetrievalIndex

QUERY_THREADS, POLL_THREADS, QUERIES_EACH = 6, 4, 12


class BrightnessRetriever:
    """Stands in for the torch retriever: ranks three tiles by mean brightness."""

    tiles = {"dark": 10.0, "mid": 128.0, "bright": 250.0}

    def query(self, images, k):
        time.sleep(0.01)  # a little work per batch
        out = []
        for image in images:
            level = sum(image.convert("L").getdata()) / (image.width * image.height)
            ranked = sorted(self.tiles.items(), key=lambda kv: abs(kv[1] - level))[:k]
            out.append(
                [
                    {"satellite_id": s, "score": 1 - abs(v - level) / 255, "path": s}
                    for s, v in ranked
                ]
            )
        return out


def png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 16), (value, value, value)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_queries_and_polls_while_a_job_runs(service_settings, auth, tmp_path):
    service = service_settings.model_copy(
        update={"device": "cpu", "max_concurrent_queries_per_client": QUERY_THREADS}
    )
    make_folder_dataset(service.data_roots[0] / "tiny")
    worker, _ = start_worker(
        service,
        tmp_path / "worker.log",
        runner="pausing_runner:timed_fake_run_job",
        FAKE_STEPS="50",
        FAKE_SLEEP="0.15",
    )
    app = create_app(service)
    app.dependency_overrides[get_retriever_loader] = lambda: (
        lambda run_dir, device: BrightnessRetriever()
    )
    errors: list[str] = []
    progress: list[tuple[int, str, float]] = []
    try:
        with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            dataset_id = register_tiny_dataset(http, auth)["id"]
            database = Database.from_settings(service)
            with database.session() as session:
                model = Model(
                    dataset_id=dataset_id, run_dir="/r", checkpoint_path="/r/m", mode="semi"
                )
                session.add(model)
                session.flush()
                session.add(RetrievalIndex(model_id=model.id, path="/r/i", kind="flat", size=3))
            database.dispose()
            job = {"type": "cold_start", "dataset_id": dataset_id}
            started = http.post("/api/v1/jobs", json=job, headers=auth)
            assert started.status_code == 202, started.text
            job_id = started.json()["id"]
            finished = threading.Event()

            def query(seed: int) -> None:
                with httpx.Client(base_url=server.url, timeout=30) as own:
                    for i in range(QUERIES_EACH):
                        value = (seed * 40 + i * 20) % 256
                        files = [("files", (f"{seed}-{i}.png", png(value), "image/png"))]
                        answer = own.post("/api/v1/query", files=files, data={"k": "2"})
                        if answer.status_code != 200:
                            errors.append(f"query {answer.status_code}: {answer.text[:200]}")

            def poll() -> None:
                with httpx.Client(base_url=server.url, timeout=30) as own:
                    while not finished.is_set():
                        answer = own.get(f"/api/v1/jobs/{job_id}")
                        if answer.status_code != 200:
                            errors.append(f"poll {answer.status_code}: {answer.text[:200]}")
                            continue
                        state = answer.json()
                        progress.append((threading.get_ident(), state["state"], state["progress"]))
                        if state["state"] in TERMINAL_STATES:
                            finished.set()
                        time.sleep(0.05)

            threads = [threading.Thread(target=query, args=(n,)) for n in range(QUERY_THREADS)]
            threads += [threading.Thread(target=poll) for _ in range(POLL_THREADS)]
            began = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=90)
            elapsed = time.monotonic() - began
    finally:
        stop_process(worker)
    assert not errors, errors[:5]
    assert progress and progress[-1][1] == "SUCCEEDED", progress[-3:]
    for poller in {t for t, _, _ in progress}:  # each poller saw it only go forward
        seen = [p for t, _, p in progress if t == poller]
        assert seen == sorted(seen), "progress went backwards"
    values = [p for _, s, p in progress if s == "RUNNING"]
    assert len(set(values)) >= 5, f"progress did not keep moving: {sorted(set(values))}"
    print(
        f"{QUERY_THREADS * QUERIES_EACH} queries and {len(progress)} polls in {elapsed:.1f} s; "
        f"{len(set(values))} distinct progress values"
    )
