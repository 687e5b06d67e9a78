"""Retrieval: upload ground panoramas, get the top-k satellite tiles of an index."""

from __future__ import annotations

import asyncio
import io
import math
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from PIL import Image, UnidentifiedImageError

from ucvgl.api.deps import ReadAccess, RetrieverLoaderDep
from ucvgl.api.limits import ConcurrencyLimiter
from ucvgl.api.presenters import API
from ucvgl.api.problems import ApiProblem, field_problem, problem_responses
from ucvgl.api.retrievers import (
    BatchingRetriever,
    Hits,
    Retriever,
    RetrieverCache,
    RetrieverLoader,
)
from ucvgl.shared.config import Settings
from ucvgl.shared.errors import UcvglError
from ucvgl.shared.models import Model, RetrievalIndex
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
    def num(key: str) -> float | None:
        value = hit.get(key)
        return None if value is None or not math.isfinite(float(value)) else float(value)

    return QueryMatch(
        rank=rank,
        satellite_id=str(hit["satellite_id"]),
        score=float(hit["score"]),
        file_name=Path(str(hit.get("path", ""))).name,
        lat=num("lat"),
        lon=num("lon"),
        x=num("x"),
        y=num("y"),
    )


@dataclass
class _Started:
    index_id: int
    model_id: int
    hits: Future | Hits
    """A pending ``BatchingRetriever`` answer, or the answer of a plain retriever."""


def _start_query(
    request: Request,
    loader: RetrieverLoader,
    files: list[UploadFile],
    k: int,
    heading: float | None,
    index_id: int | None,
) -> _Started:
    """The blocking half of a query (one threadpool trip): find the index, decode the
    uploads, fetch the index's retriever from the cache (loading it on first use) and hand
    the images to its worker thread (a plain retriever answers here)."""
    state = request.app.state
    settings: Settings = state.settings
    # one light query (columns only, no ORM objects): it runs on every request
    found = sa.select(RetrievalIndex.id, RetrievalIndex.model_id, Model.run_dir).join(
        Model, RetrievalIndex.model_id == Model.id
    )
    if index_id is not None:
        found = found.where(RetrievalIndex.id == index_id)
    else:
        found = found.order_by(RetrievalIndex.id.desc()).limit(1)
    with state.database.engine.connect() as connection:
        row = connection.execute(found).first()
    if row is None:
        if index_id is not None:
            raise ApiProblem(404, f"index {index_id} does not exist")
        raise ApiProblem(404, "no index has been built yet; POST /api/v1/indexes first")
    found_id, model_id, run_dir = row.id, row.model_id, Path(row.run_dir)
    images, budget = [], settings.max_upload_bytes
    for upload in files:
        image, used = read_upload(upload, settings, budget)
        budget -= used
        if heading is not None:
            from ucvgl.services.datasets.images import roll_to_north

            image = roll_to_north(image, heading)
        images.append(image)
    device = settings.device if settings.device != "auto" else settings.torch_device()
    cache: RetrieverCache = state.retrievers

    def load() -> Retriever:
        settings.apply_torch_threads()  # the server's forwards follow UCVGL_TORCH_THREADS
        return loader(run_dir, device)

    try:
        retriever = cache.get(found_id, load)
    except UcvglError as exc:
        raise ApiProblem(409, f"index {found_id} cannot be loaded: {exc}") from exc
    if isinstance(retriever, BatchingRetriever):
        return _Started(found_id, model_id, retriever.submit(images, k))
    return _Started(found_id, model_id, retriever.query(images, k))


@router.post("/query", response_model=QueryResponse, responses=problem_responses(409, 413, 429))
async def query_tiles(
    request: Request,
    loader: RetrieverLoaderDep,
    files: Annotated[list[UploadFile], File(description="Ground panoramas (JPEG/PNG).")],
    k: Annotated[int, Form(ge=1, le=100)] = 5,
    heading: Annotated[
        float | None, Form(description="Degrees clockwise from north of the centre column.")
    ] = None,
    index_id: Annotated[
        int | None, Form(description="Index to search; default the newest.")
    ] = None,
) -> QueryResponse:
    """Top-k satellite tiles (scores, file names, GPS/UTM) for each uploaded panorama.

    Latency: the route is ``async`` and reads the app state directly instead of through
    sync dependencies, because every sync dependency, a sync route body and its response
    validation each cost a threadpool round trip (1-2 ms apiece on a busy CPU). What blocks
    (database, decoding, a first load) runs in ONE threadpool trip, which hands the images
    straight to the retriever's own worker thread (``BatchingRetriever``); this route then
    awaits the answer without holding a thread.
    """
    settings: Settings = request.app.state.settings
    limiter: ConcurrencyLimiter = request.app.state.query_limiter
    client = request.client.host if request.client else "unknown"
    with limiter.slot(client):
        if len(files) > settings.max_batch_files:
            raise ApiProblem(
                413, f"{len(files)} files in one request; the limit is {settings.max_batch_files}"
            )
        started = await run_in_threadpool(
            _start_query, request, loader, files, k, heading, index_id
        )
        hits = started.hits
        if isinstance(hits, Future):  # never block the event loop on the forward
            hits = await asyncio.wrap_future(hits)
    return QueryResponse(
        index_id=started.index_id,
        model_id=started.model_id,
        k=k,
        results=[
            QueryResult(
                file_name=upload.filename or f"file-{i}",
                matches=[_match(rank, hit) for rank, hit in enumerate(found, start=1)],
            )
            for i, (upload, found) in enumerate(zip(files, hits, strict=True))
        ],
    )
