"""Benchmark: POST /api/v1/query of the running service vs the bare retrieval path.

    .venv/bin/python benchmarks/query.py --requests 24 --concurrency 1,4

Setup (in a temporary folder, built by a child process): a small synthetic world
(``generate_world``), an untrained model of a training preset's encoder config
(``--preset``; default ``cpu``: ConvNeXt-atto + SAFA, panoramas 128 x 256, tiles 128;
``paper-small``: ConvNeXt-S at 224 x 224, 224 x 448 before issue 11; weights do not
change the timing), the run folder
``Retriever.from_run`` reads (``model/selected.pt`` and ``index/``, written the way the
pipeline's index stage writes them), and a migrated SQLite database with the dataset,
model and index rows.

The service runs as ``uvicorn`` with ``create_app`` in a subprocess on a free loopback port;
a loopback client keeps C requests (one panorama each, k = 5) in flight until N have been
answered: ``--client httpx`` (``httpx.AsyncClient``, the default) or ``--client raw``
(keep-alive sockets sending prebuilt requests, like ``wrk``: no client library's cost in the
latency). Per request latency p50/p99 and throughput are reported.

The bare path runs in this process on the same JPEG bytes: decode + transform + ground
encoder forward + index search (``Retriever.query`` called directly). At concurrency C it
is C images in one call, as an ideal batching server would run C waiting requests; at C = 1
it is one image per call. One dedicated thread loads the model and runs every bare call,
and nothing else in this process runs torch (the setup is a child process): on a CPU a
second thread that has run torch ops makes every later forward ~2x slower (6.5 against
12 ms per panorama for the ``cpu`` preset on 2 cores), which would flatter the service.
Service and bare blocks alternate (``--repeats`` times), so a change in the machine's load
hits both alike. ``overhead`` = service p50 / bare p50 - 1.

Service variants (``--variants``), all through the real app and route: ``batched`` (as
shipped: the app's one forward thread loads the model and runs every forward, merging the
requests waiting when it is free, up to ``UCVGL_QUERY_MAX_BATCH`` images), ``serial`` (the
same thread, one request per forward) and ``direct`` (no forward thread: each request's
forward runs on a threadpool thread, the naive design).

Server-side timings come back from the server (``GET /__bench/timings``): time inside the
app per query request, time of each retriever call (transform + forward + search) and
images per forward; ``in_app_overhead`` = app p50 / retriever-call p50 - 1 is the
service's own cost without the client and with the forward measured in the same process.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import REPO_ROOT, print_table, write_json  # noqa: E402

VARIANTS = ("batched", "serial", "direct")


# ---------------------------------------------------------------------------- setup
def build_run(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """World, model, index and database rows under ``root``; returns their locations."""
    import torch

    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.index import SatelliteIndex
    from ucvgl.services.models import build_model, save_model
    from ucvgl.services.pipeline import SELECTED_MODEL, _tile_metadata
    from ucvgl.services.presets import PRESETS
    from ucvgl.services.synth import generate_world
    from ucvgl.services.training.embed import embed_split
    from ucvgl.shared.db import Database, upgrade_database
    from ucvgl.shared.models import Dataset, Model, RetrievalIndex

    preset = PRESETS[args.preset]
    world = root / "data" / "world"
    t0 = time.perf_counter()
    generate_world(
        world,
        args.format,
        args.train,
        args.val,
        seed=args.seed,
        pano_size=tuple(preset.ground_size),
        sat_size=preset.satellite_size,
        workers=1,
    )
    dataset = load_dataset(world, args.format, name="bench")
    print(f"world: {time.perf_counter() - t0:.1f} s", flush=True)

    torch.manual_seed(args.seed)
    model = build_model(preset.encoder_config()).eval()
    run_dir = root / "runs" / "bench"
    save_model(model, run_dir / SELECTED_MODEL)
    # the pipeline's index stage: every split's tiles, each file once, with its metadata
    embeddings, ids, metadata, seen = [], [], [], set()
    for name in dataset.splits:
        split = dataset.split(name)
        emb = embed_split(model, split, "satellite", batch_size=preset.eval_batch_size)
        keep = []
        for j, path in enumerate(split.satellite_paths):
            if str(path) not in seen:
                seen.add(str(path))
                keep.append(j)
                ids.append(split.satellite_ids[j])
                metadata.append(_tile_metadata(split, j, name))
        embeddings.append(emb[keep])
    if len(set(ids)) != len(ids):
        ids = [f"{m['split']}/{sid}" for sid, m in zip(ids, metadata, strict=True)]
    index = SatelliteIndex.build(torch.cat(embeddings).numpy(), ids, metadata=metadata)
    index.save(run_dir / "index")
    print(f"index: {len(index)} tiles, {time.perf_counter() - t0:.1f} s", flush=True)

    database_url = f"sqlite:///{root / 'service.sqlite'}"
    upgrade_database(database_url)
    db = Database.from_url(database_url)
    with db.session() as s:
        row = Dataset(name="bench", format=args.format, root_path=str(world))
        s.add(row)
        s.flush()
        model_row = Model(
            dataset_id=row.id,
            run_dir=str(run_dir),
            checkpoint_path=str(run_dir / SELECTED_MODEL),
            mode="unsupervised",
            preset="cpu",
        )
        s.add(model_row)
        s.flush()
        s.add(
            RetrievalIndex(
                model_id=model_row.id, path=str(run_dir / "index"), kind="flat", size=len(index)
            )
        )
    db.dispose()
    split = dataset.split(next(reversed(dataset.splits)))
    queries = [Path(p) for p in split.ground_paths[: args.queries]]
    return {
        "world": str(world),
        "run_dir": str(run_dir),
        "database_url": database_url,
        "queries": [str(q) for q in queries],
        "tiles": len(index),
    }


def build_run_in_subprocess(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`build_run` in a child process, so THIS process never runs torch on its main
    thread: the bare path then has one torch thread, like the server (a second thread
    that ran torch ops made every forward ~2x slower; see ``ucvgl.api.retrievers``)."""
    import json

    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--setup",
        str(root),
        "--preset",
        args.preset,
        "--format",
        args.format,
        "--train",
        str(args.train),
        "--val",
        str(args.val),
        "--queries",
        str(args.queries),
        "--seed",
        str(args.seed),
    ]
    subprocess.run(cmd, cwd=REPO_ROOT, check=True)
    return json.loads((root / "setup.json").read_text())


# ---------------------------------------------------------------------------- server
TIMINGS_PATH = "/__bench/timings"


class TimedRetriever:
    """Records how long each ``query`` (decode-free: transform + forward + search) takes."""

    def __init__(self, retriever, timings: dict[str, list]) -> None:
        self.retriever, self.timings = retriever, timings

    def query(self, images, k):
        t = time.perf_counter()
        hits = self.retriever.query(images, k)
        self.timings["forward_s"].append(time.perf_counter() - t)
        self.timings["forward_images"].append(len(images))
        return hits


def serve(args: argparse.Namespace) -> None:
    """The ``--serve`` subprocess: uvicorn with ``create_app`` on 127.0.0.1:``--port``.

    The app is wrapped in a pure ASGI timer (time inside the app per request) and the
    retriever in :class:`TimedRetriever`; ``GET /__bench/timings`` returns and clears both.
    """
    import json

    import uvicorn

    from ucvgl.api.main import create_app
    from ucvgl.api.retrievers import ForwardThread
    from ucvgl.services.retrieval import Retriever
    from ucvgl.shared.config import Settings

    settings = Settings(
        work_dir=Path(args.work_dir),
        data_roots=[Path(args.work_dir) / "data"],
        database_url=args.database_url,
        device=args.device,
        torch_threads=args.torch_threads,
        max_concurrent_queries_per_client=max(64, args.max_concurrency),
    )
    app = create_app(settings)
    timings: dict[str, list] = {"app_s": [], "forward_s": [], "forward_images": []}

    def loader(run_dir: Path, device: str):
        return TimedRetriever(Retriever.from_run(run_dir, device), timings)

    app.state.retriever_loader = loader
    if args.serve == "direct":
        app.state.forward_thread = None
    else:
        max_batch = settings.query_max_batch if args.serve == "batched" else 1
        app.state.forward_thread = ForwardThread(
            max_batch=max_batch, gather_s=args.gather_ms / 1000.0
        )

    async def timed_app(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        if scope["path"] == TIMINGS_PATH:
            body = json.dumps(timings).encode()
            for values in timings.values():
                values.clear()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            return await send({"type": "http.response.body", "body": body})
        t = time.perf_counter()
        await app(scope, receive, send)
        if scope["path"] == "/api/v1/query":
            timings["app_s"].append(time.perf_counter() - t)

    uvicorn.run(timed_app, host="127.0.0.1", port=args.port, log_level="warning")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(variant: str, root: Path, setup: dict, args: argparse.Namespace):
    """Start the server subprocess and wait for /healthz (returns (process, base_url))."""
    import httpx

    port = free_port()
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--serve",
        variant,
        "--port",
        str(port),
        "--work-dir",
        str(root),
        "--database-url",
        setup["database_url"],
        "--max-concurrency",
        str(max(int(c) for c in args.concurrency.split(",") if c)),
        "--gather-ms",
        str(args.gather_ms),
        "--device",
        args.device,
        "--torch-threads",
        str(args.torch_threads),
    ]
    process = subprocess.Popen(cmd, cwd=REPO_ROOT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the {variant} server exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.terminate()
    raise RuntimeError("the server did not answer /healthz within 120 s")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---------------------------------------------------------------------------- load
async def service_block(
    base: str,
    blobs: list[tuple[str, bytes]],
    n: int,
    concurrency: int,
    k: int,
    client: str = "httpx",
) -> dict[str, Any]:
    """``n`` requests, ``concurrency`` in flight; latencies in seconds and wall time.

    ``client='httpx'``: ``httpx.AsyncClient`` (encodes each multipart body, parses each
    response). ``client='raw'``: keep-alive sockets sending request bytes built before the
    clock starts and reading each response by its Content-Length, like ``wrk``: the
    latency is the server's and the loopback's, without a client library's own cost.
    """
    latencies: list[float] = []
    counter = iter(range(n))

    def check(status: int, body: bytes) -> None:
        if status != 200:
            raise RuntimeError(f"query answered {status}: {body[:500]!r}")
        import json

        if len(json.loads(body)["results"][0]["matches"]) != k:
            raise RuntimeError(f"expected {k} matches: {body[:500]!r}")

    if client == "raw":
        host, port = base.removeprefix("http://").split(":")
        requests = [raw_request(host, int(port), name, data, k) for name, data in blobs]

        async def raw_loop() -> None:
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                for i in counter:
                    t = time.perf_counter()
                    writer.write(requests[i % len(requests)])
                    head = await reader.readuntil(b"\r\n\r\n")
                    lines = head.decode("latin-1").split("\r\n")
                    length = next(
                        int(line.split(":", 1)[1])
                        for line in lines
                        if line.lower().startswith("content-length:")
                    )
                    body = await reader.readexactly(length)
                    latencies.append(time.perf_counter() - t)
                    check(int(lines[0].split()[1]), body)
            finally:
                writer.close()

        t0 = time.perf_counter()
        await asyncio.gather(*(raw_loop() for _ in range(concurrency)))
        return {"latencies": latencies, "wall": time.perf_counter() - t0, "requests": n}

    import httpx

    async def client_loop(http: httpx.AsyncClient) -> None:
        for i in counter:
            name, data = blobs[i % len(blobs)]
            t = time.perf_counter()
            response = await http.post(
                "/api/v1/query",
                files=[("files", (name, data, "image/jpeg"))],
                data={"k": str(k)},
            )
            latencies.append(time.perf_counter() - t)
            check(response.status_code, response.content)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client_loop(http) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"latencies": latencies, "wall": wall, "requests": n}


def raw_request(host: str, port: int, name: str, data: bytes, k: int) -> bytes:
    """A complete HTTP/1.1 keep-alive POST /api/v1/query (multipart: one file and k)."""
    boundary = "ucvglbenchboundary7f3a"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"'
        "\r\nContent-Type: image/jpeg\r\n\r\n"
    ).encode() + data
    body += (
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="k"\r\n\r\n{k}'
        f"\r\n--{boundary}--\r\n"
    ).encode()
    head = (
        f"POST /api/v1/query HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def bare_block(retriever, blobs: list[tuple[str, bytes]], n: int, batch: int, k: int) -> dict:
    """``n`` images as ``n / batch`` calls of decode + Retriever.query on ``batch`` images."""
    from PIL import Image

    latencies, done, i = [], 0, 0
    t0 = time.perf_counter()
    while done < n:
        t = time.perf_counter()
        chunk = [blobs[(i + j) % len(blobs)][1] for j in range(batch)]
        images = [Image.open(io.BytesIO(data)).convert("RGB") for data in chunk]
        hits = retriever.query(images, k)
        latencies.append(time.perf_counter() - t)
        assert len(hits) == batch and all(len(h) == k for h in hits)
        done += batch
        i += batch
    return {"latencies": latencies, "wall": time.perf_counter() - t0, "requests": done}


def summarise(blocks: list[dict]) -> dict[str, float]:
    lat = np.array([x for b in blocks for x in b["latencies"]]) * 1000.0
    requests = sum(b["requests"] for b in blocks)
    wall = sum(b["wall"] for b in blocks)
    return {
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "mean_ms": float(lat.mean()),
        "throughput_rps": requests / wall,
        "requests": requests,
    }


def fetch_timings(base: str) -> dict[str, list]:
    """The server's timings since the last fetch (and clear them)."""
    import httpx

    return httpx.get(base + TIMINGS_PATH, timeout=30).json()


def server_summary(blocks: list[dict[str, list]]) -> dict[str, float]:
    """Server-side p50s: time inside the app, retriever call, and images per forward."""
    app = [x for b in blocks for x in b["app_s"]]
    forward = [x for b in blocks for x in b["forward_s"]]
    images = [x for b in blocks for x in b["forward_images"]]
    if not app or not forward:
        return {}
    app_p50, forward_p50 = float(np.median(app) * 1000), float(np.median(forward) * 1000)
    return {
        "server_app_p50_ms": app_p50,
        "server_forward_p50_ms": forward_p50,
        "in_app_overhead": app_p50 / forward_p50 - 1.0,
        "images_per_forward": float(np.mean(images)),
    }


# ---------------------------------------------------------------------------- driver
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=24, help="per concurrency and repeat")
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--repeats", type=int, default=2, help="alternating service/bare blocks")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (service and bare)")
    parser.add_argument(
        "--torch-threads", type=int, default=0, help="service and bare (0: torch's default)"
    )
    parser.add_argument("--format", default="cvact")
    parser.add_argument("--train", type=int, default=48, help="synthetic training locations")
    parser.add_argument("--val", type=int, default=16, help="synthetic validation locations")
    parser.add_argument("--queries", type=int, default=16, help="distinct query panoramas")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="query", help="results/<name>.json")
    parser.add_argument(
        "--preset", default="cpu", help="encoder and image sizes of this training preset"
    )
    parser.add_argument(
        "--client",
        choices=("httpx", "raw"),
        default="httpx",
        help="httpx.AsyncClient, or raw keep-alive sockets with prebuilt requests (like wrk)",
    )
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--max-concurrency", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument(
        "--gather-ms", type=float, default=0.0, help="batched variant: gather window (ms)"
    )
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    if args.setup:
        import json

        setup = build_run(Path(args.setup), args)
        (Path(args.setup) / "setup.json").write_text(json.dumps(setup))
        return

    import torch

    from ucvgl.services.retrieval import Retriever

    def load_bare(run_dir: Path):
        if args.torch_threads > 0:
            torch.set_num_threads(args.torch_threads)
        return Retriever.from_run(run_dir, args.device)

    concurrencies = [int(c) for c in args.concurrency.split(",") if c]
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ucvgl-query-bench-") as tmp:
        root = Path(tmp)
        setup = build_run_in_subprocess(root, args)
        blobs = [(Path(p).name, Path(p).read_bytes()) for p in setup["queries"]]
        # one dedicated thread loads and runs the bare path: this process's only torch
        # thread, like the server's forward thread (see the docstring)
        bare_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bare")
        bare = bare_thread.submit(load_bare, Path(setup["run_dir"])).result()
        bare_thread.submit(bare_block, bare, blobs, 2, 1, args.k).result()  # warm-up
        for variant in variants:
            process, base = start_server(variant, root, setup, args)
            try:
                asyncio.run(service_block(base, blobs, 2, 1, args.k))  # loads the retriever
                fetch_timings(base)
                for c in concurrencies:
                    service, direct, server = [], [], []
                    for _ in range(args.repeats):
                        service.append(
                            asyncio.run(
                                service_block(
                                    base, blobs, args.requests, c, args.k, client=args.client
                                )
                            )
                        )
                        server.append(fetch_timings(base))
                        direct.append(
                            bare_thread.submit(
                                bare_block, bare, blobs, args.requests, c, args.k
                            ).result()
                        )
                    s, b = summarise(service), summarise(direct)
                    row = {
                        "variant": variant,
                        "concurrency": c,
                        **{f"service_{key}": value for key, value in s.items()},
                        **{f"bare_{key}": value for key, value in b.items()},
                        "overhead_p50": s["p50_ms"] / b["p50_ms"] - 1.0,
                        "throughput_ratio": s["throughput_rps"] / b["throughput_rps"],
                        **server_summary(server),
                    }
                    rows.append(row)
                    print(
                        f"{variant} c={c}: service p50 {s['p50_ms']:.0f} ms, bare p50 "
                        f"{b['p50_ms']:.0f} ms, overhead {row['overhead_p50']:+.1%}",
                        flush=True,
                    )
            finally:
                stop_server(process)
        bare_thread.shutdown()
    columns = [
        "variant",
        "concurrency",
        "service_p50_ms",
        "service_p99_ms",
        "service_throughput_rps",
        "bare_p50_ms",
        "bare_p99_ms",
        "bare_throughput_rps",
        "overhead_p50",
        "throughput_ratio",
        "server_app_p50_ms",
        "server_forward_p50_ms",
        "in_app_overhead",
        "images_per_forward",
    ]
    table = print_table(rows, columns)
    write_json(
        args.name,
        {
            "args": {k: v for k, v in vars(args).items() if k not in ("serve", "port")},
            "tiles": setup["tiles"],
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "target": "service p50 <= 1.25 x bare p50 (overhead_p50 < 0.25)",
            "rows": rows,
            "table": table,
            "note": "bare at concurrency C = one Retriever.query call on C images",
        },
    )


if __name__ == "__main__":
    main()
