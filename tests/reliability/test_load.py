"""Load (bounded, loopback only): concurrent retrieval queries and job-status polls against a
real uvicorn server while a real worker runs a job: no errors, and the job's progress keeps
moving. Once with a stand-in retriever and a sleeping fake job (fast), once with a real
trained tiny model and faiss index while a real pipeline job trains (slow)."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image
from processes import ServerThread, start_worker, stop_process
from service_fixtures import (
    TERMINAL_STATES,
    make_folder_dataset,
    poll_job,
    register_dataset,
    register_tiny_dataset,
    registered,
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


@pytest.mark.slow
def test_real_model_answers_queries_while_a_real_training_job_runs(
    service_settings, auth, tmp_path
):
    """The real thing on one machine: a tiny pipeline trains a model and builds its faiss
    index; then a second real pipeline job trains (in the worker process) while threads
    query the first run's index through a real uvicorn server. Every query answers, and
    answers the same tiles with the same scores as before the training began; the training
    job keeps moving and succeeds."""
    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.synth import generate_world

    service = service_settings.model_copy(
        update={"device": "cpu", "max_concurrent_queries_per_client": QUERY_THREADS}
    )
    world = generate_world(
        service.data_roots[0] / "world", "cvact", 24, 8, seed=0, pano_size=(32, 64), sat_size=32
    )
    queries = list(load_dataset(world, "cvact").split("val").ground_paths[:QUERY_THREADS])
    assert len(queries) == QUERY_THREADS
    worker, _ = start_worker(service, tmp_path / "worker.log", runner="pausing_runner:run_job")
    errors: list[str] = []
    answers: dict[str, list[list[tuple[str, float]]]] = {q.name: [] for q in queries}
    during: list[str] = []  # the training job's state seen after each answered query
    progress: list[float] = []
    try:
        with (
            ServerThread(create_app(service)) as server,
            httpx.Client(base_url=server.url, timeout=60) as http,
        ):
            body = {"name": "world", "path": "world", "format": "cvact"}
            dataset_id = registered(http, register_dataset(http, auth, body))["id"]
            params = {"mode": "unsupervised", "preset": "tiny", "device": "cpu"}
            job = {"type": "pipeline", "dataset_id": dataset_id, "params": params}
            first = http.post("/api/v1/jobs", json=job, headers=auth).json()["id"]
            trained = poll_job(http, first, TERMINAL_STATES, 300, interval_s=0.5)
            assert trained["state"] == "SUCCEEDED", trained["error"]
            index_id = trained["result"]["index_id"]

            def ask(own: httpx.Client, path: Path) -> list[tuple[str, float]] | None:
                files = [("files", (path.name, path.read_bytes(), "image/jpeg"))]
                data = {"k": "5", "index_id": str(index_id)}
                answer = own.post("/api/v1/query", files=files, data=data)
                if answer.status_code != 200:
                    errors.append(f"query {answer.status_code}: {answer.text[:200]}")
                    return None
                matches = answer.json()["results"][0]["matches"]
                return [(m["satellite_id"], round(m["score"], 4)) for m in matches]

            baseline = {q.name: ask(http, q) for q in queries}  # the index, loaded, at rest
            assert not errors, errors
            second = {**job, "params": {**params, "run_name": "second"}}
            started = http.post("/api/v1/jobs", json=second, headers=auth)
            assert started.status_code == 202, started.text
            job_id = started.json()["id"]
            poll_job(http, job_id, {"RUNNING"}, 60, interval_s=0.2)
            finished = threading.Event()

            def query(path: Path) -> None:
                with httpx.Client(base_url=server.url, timeout=60) as own:
                    while not finished.is_set():
                        got = ask(own, path)
                        if got is None:
                            return
                        answers[path.name].append(got)
                        during.append(own.get(f"/api/v1/jobs/{job_id}").json()["state"])

            def poll() -> None:
                try:  # the queries stop when the job ends, or when polling breaks
                    with httpx.Client(base_url=server.url, timeout=60) as own:
                        while True:
                            state = own.get(f"/api/v1/jobs/{job_id}").json()
                            progress.append(state["progress"])
                            if state["state"] in TERMINAL_STATES:
                                return
                            time.sleep(0.2)
                finally:
                    finished.set()

            threads = [threading.Thread(target=query, args=(q,), daemon=True) for q in queries]
            threads.append(threading.Thread(target=poll, daemon=True))
            began = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=300)
            elapsed = time.monotonic() - began
            final = http.get(f"/api/v1/jobs/{job_id}").json()
    finally:
        stop_process(worker)
    assert not errors, errors[:5]
    assert final["state"] == "SUCCEEDED", final["error"]
    assert final["result"]["index_id"] != index_id  # its own run folder, its own index
    n_answers = sum(len(a) for a in answers.values())
    assert during.count("RUNNING") >= 2 * QUERY_THREADS, during  # really during training
    for name, got in answers.items():  # under load: the same tiles, the same scores
        assert got and all(a == baseline[name] for a in got), name
    assert progress == sorted(progress) and len(set(progress)) >= 5, sorted(set(progress))
    print(
        f"{n_answers} real queries in {elapsed:.1f} s while a real pipeline job trained "
        f"({during.count('RUNNING')} answered while it was RUNNING)"
    )
