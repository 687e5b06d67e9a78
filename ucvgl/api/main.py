"""The FastAPI application: ``create_app(settings=None)``; OpenAPI at ``/docs``.

Routes (all under ``/api/v1`` except health; ``/`` is left for the dashboard):
datasets, synthetic datasets, jobs, rounds and labels, models, indexes, query, and
``/healthz`` / ``/readyz``. This module never imports torch: jobs are sent to workers by
task name and the retriever is imported on the first query.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from ucvgl.api import dashboard
from ucvgl.api.index_lookup import IndexLookup
from ucvgl.api.job_queue import JobQueue
from ucvgl.api.limits import BODY_OVERHEAD_BYTES, BodySizeLimit, ConcurrencyLimiter
from ucvgl.api.openapi import install_openapi
from ucvgl.api.problems import install_problem_handlers
from ucvgl.api.retrievers import ForwardThread, RetrieverCache, load_service_retriever
from ucvgl.api.routes import (
    datasets,
    gallery,
    health,
    indexes,
    jobs,
    models,
    query,
    rounds,
    synthetic,
)
from ucvgl.shared.config import DEFAULT_API_TOKEN, Settings, get_settings
from ucvgl.shared.db import Database
from ucvgl.shared.errors import ConfigError
from ucvgl.shared.jobs.celery_client import create_producer_app
from ucvgl.shared.jobs.reaper import reap_quietly

RETRIEVER_CACHE_SIZE = 2


def operation_id(route: APIRoute) -> str:
    """Stable OpenAPI operation ids: the route function's name (unique across the app)."""
    return route.name


async def reap_periodically(database: Database, stale_s: float, interval_s: float) -> None:
    """Fail lost jobs (see :mod:`ucvgl.shared.jobs.reaper`) every ``interval_s`` until cancelled."""
    while True:
        await asyncio.to_thread(reap_quietly, database, stale_s)
        await asyncio.sleep(interval_s)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for ``settings`` (default: :func:`get_settings`).

    The database engine and the Celery client are built here, not at import; the schema
    must already be migrated (``ucvgl migrate``; ``ucvgl serve`` does it at start).
    """
    settings = settings or get_settings()
    if settings.environment != "development" and settings.api_token in ("", DEFAULT_API_TOKEN):
        raise ConfigError(
            "UCVGL_API_TOKEN is empty or the default while UCVGL_ENVIRONMENT="
            f"{settings.environment}; set a long random token (the API refuses to start)"
        )
    database = Database.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reaper = asyncio.create_task(
            reap_periodically(
                database, settings.job_stale_seconds, settings.reaper_interval_seconds
            ),
            name="ucvgl-reaper",
        )
        try:
            yield
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            if app.state.forward_thread is not None:
                app.state.forward_thread.close()
            database.dispose()

    app = FastAPI(
        title="ucvgl",
        summary="Pseudo-label mining for cross-view geo-localization (UCVGL, CVPR 2024)",
        version="0.1.0",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.job_queue = JobQueue(create_producer_app(settings))
    app.state.retrievers = RetrieverCache(RETRIEVER_CACHE_SIZE)
    app.state.index_lookup = IndexLookup(database, settings.query_index_cache_seconds)
    app.state.retriever_loader = load_service_retriever
    app.state.forward_thread = ForwardThread(max_batch=settings.query_max_batch)
    """The one thread running the server's torch work (None: each query on a threadpool
    thread, only for comparisons in ``benchmarks/query.py``)."""
    app.state.query_limiter = ConcurrencyLimiter(settings.max_concurrent_queries_per_client)
    install_problem_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes + BODY_OVERHEAD_BYTES)
    for module in (
        health,
        datasets,
        synthetic,
        jobs,
        rounds,
        models,
        indexes,
        gallery,
        query,
        dashboard,
    ):
        app.include_router(module.router)
    install_openapi(app, public_reads=settings.public_reads)
    return app
