"""Retrieval: upload ground panoramas, get the top-k satellite tiles of an index."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from PIL import Image, UnidentifiedImageError

from ucvgl.api.bounds import MAX_DB_ID
from ucvgl.api.deps import ReadAccess, RetrieverLoaderDep
from ucvgl.api.index_lookup import IndexLookup, IndexRow
from ucvgl.api.limits import ConcurrencyLimiter
from ucvgl.api.presenters import API
from ucvgl.api.problems import ApiProblem, field_problem, problem_responses
from ucvgl.api.retrievers import (
    BatchingRetriever,
    ForwardThread,
    Retriever,
    RetrieverCache,
    RetrieverLoader,
)
from ucvgl.services.query_results import match_record
from ucvgl.shared.config import Settings
from ucvgl.shared.errors import UcvglError
from ucvgl.shared.schemas import QueryMatch, QueryResponse, QueryResult

router = APIRouter(
    prefix=API,
    tags=["retrieval"],
    dependencies=[ReadAccess],
    responses=problem_responses(401, 404, 422),
)


def read_upload(upload: UploadFile, settings: Settings, budget: int) -> tuple[Image.Image, int]:
    """Decode one uploaded image as RGB within the byte ``budget`` and the pixel limit.

    Returns:
        The image and the bytes it used.
    """
    name = upload.filename or "upload"
    data = upload.file.read(budget + 1)
    if len(data) > budget:
        raise ApiProblem(
            413,
            f"{name}: the upload exceeds {settings.max_upload_bytes} bytes in total; "
            "send smaller or fewer images",
        )
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > settings.max_image_pixels:
            raise ApiProblem(
                413,
                f"{name}: {width}x{height} pixels exceeds the limit of "
                f"{settings.max_image_pixels} pixels",
            )
        image = image.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise field_problem("body.files", f"{name} is not a readable image ({exc})") from exc
    return image, len(data)


def _match(rank: int, hit: dict[str, Any]) -> QueryMatch:
    return QueryMatch(**match_record(rank, hit))


def _decoder(
    files: list[UploadFile], settings: Settings, heading: float | None
) -> Callable[[], list[Image.Image]]:
    """A function decoding the uploads within the byte budget (run on the forward thread)."""

    def decode() -> list[Image.Image]:
        images, budget = [], settings.max_upload_bytes
        for upload in files:
            image, used = read_upload(upload, settings, budget)
            budget -= used
            if heading is not None:
                from ucvgl.services.datasets.images import roll_to_north

                image = roll_to_north(image, heading)
            images.append(image)
        return images

    return decode


def _load_retriever(request: Request, loader: RetrieverLoader, index: IndexRow) -> Retriever:
    """The index's retriever from the app's cache, loading it on first use (blocking).

    The load runs on the app's :class:`ForwardThread` (the process's one torch thread) and
    the retriever is fronted by a :class:`BatchingRetriever` on that thread.
    """
    state = request.app.state
    settings: Settings = state.settings
    thread: ForwardThread | None = state.forward_thread
    device = settings.device if settings.device != "auto" else settings.torch_device()

    def load() -> Retriever:
        settings.apply_torch_threads()  # the server's forwards follow UCVGL_TORCH_THREADS
        return loader(index.run_dir, device)

    def load_on_thread() -> Retriever:
        if thread is None:
            return load()
        return BatchingRetriever(thread.call(load).result(), thread)

    cache: RetrieverCache = state.retrievers
    try:
        return cache.get(index.cache_key, load_on_thread)
    except UcvglError as exc:
        raise ApiProblem(409, f"index {index.id} cannot be loaded: {exc}") from exc


@router.post("/query", response_model=QueryResponse, responses=problem_responses(409, 413, 429))
async def query_tiles(
    request: Request,
    loader: RetrieverLoaderDep,
    files: Annotated[
        list[UploadFile], File(min_length=1, description="Ground panoramas (JPEG/PNG).")
    ],
    k: Annotated[int, Form(ge=1, le=100)] = 5,
    heading: Annotated[
        float | None,
        Form(
            ge=-360.0,
            le=360.0,
            allow_inf_nan=False,
            description="Degrees clockwise from north of the centre column.",
        ),
    ] = None,
    index_id: Annotated[
        int | None,
        Form(ge=1, le=MAX_DB_ID, description="Index to search; default the newest."),
    ] = None,
) -> Response:
    """Top-k satellite tiles (scores, file names, GPS/UTM) for each uploaded panorama.

    Latency (``benchmarks/query.py``): on a busy CPU every hop between threads costs
    0.1-1 ms, so a warm request makes only two: the event loop hands the raw uploads to
    the app's forward thread (its one torch thread), which decodes them and runs the
    forward, and the loop awaits the answer without holding a thread. The index row
    comes from the app's :class:`IndexLookup` (the database is read when its entry is
    older than ``UCVGL_QUERY_INDEX_CACHE_SECONDS``) and the loaded retriever from the
    app's cache;
    only a miss of either costs a threadpool trip. Dependencies are async for the same
    reason, and the response is serialised once, without re-validation.
    """
    state = request.app.state
    settings: Settings = state.settings
    limiter: ConcurrencyLimiter = state.query_limiter
    lookup: IndexLookup = state.index_lookup
    client = request.client.host if request.client else "unknown"
    with limiter.slot(client):
        if len(files) > settings.max_batch_files:
            raise ApiProblem(
                413, f"{len(files)} files in one request; the limit is {settings.max_batch_files}"
            )
        index = lookup.cached(index_id) or await run_in_threadpool(lookup.fetch, index_id)
        decode = _decoder(files, settings, heading)
        retriever = state.retrievers.peek(index.cache_key)
        if retriever is None:  # first use: uploads are checked before the (slow) load
            images = await run_in_threadpool(decode)
            retriever = await run_in_threadpool(_load_retriever, request, loader, index)
            decode = lambda: images  # noqa: E731 - already decoded
        if isinstance(retriever, BatchingRetriever):  # never block the loop on the forward
            hits = await asyncio.wrap_future(retriever.submit([], k, prepare=decode))
        else:
            hits = await run_in_threadpool(lambda: retriever.query(decode(), k))
    body = QueryResponse(
        index_id=index.id,
        model_id=index.model_id,
        k=k,
        results=[
            QueryResult(
                file_name=upload.filename or f"file-{i}",
                matches=[_match(rank, hit) for rank, hit in enumerate(found, start=1)],
            )
            for i, (upload, found) in enumerate(zip(files, hits, strict=True))
        ],
    )
    return Response(body.model_dump_json(), media_type="application/json")
