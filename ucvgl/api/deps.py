"""FastAPI dependencies as ``Annotated`` aliases, so routes never repeat ``Depends(...)``.

Dependencies that only read ``app.state`` or compare a token are ``async``: FastAPI runs a
sync dependency on a threadpool thread, a round trip of 0.3-1 ms each on a busy CPU, and
the query route went through three of them per request (``benchmarks/query.py``). Only
``get_session`` stays sync (opening and closing a database session may block).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from ucvgl.api.job_queue import JobQueue
from ucvgl.api.problems import ApiProblem
from ucvgl.api.retrievers import RetrieverLoader
from ucvgl.shared.config import Settings
from ucvgl.shared.db import Database

bearer = HTTPBearer(auto_error=False, description="Bearer token from UCVGL_API_TOKEN")


async def get_app_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    return request.app.state.settings


async def get_database(request: Request) -> Database:
    """The app's database."""
    return request.app.state.database


def get_session(database: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    """A session for one request (routes commit what they change)."""
    with database.sessions() as session:
        yield session


async def get_job_queue(request: Request) -> JobQueue:
    """The client side of the Celery app."""
    return request.app.state.job_queue


async def get_retriever_loader(request: Request) -> RetrieverLoader:
    """How to load a retriever for a run folder (tests override this dependency)."""
    return request.app.state.retriever_loader


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[Session, Depends(get_session)]
JobQueueDep = Annotated[JobQueue, Depends(get_job_queue)]
RetrieverLoaderDep = Annotated[RetrieverLoader, Depends(get_retriever_loader)]


def _check_token(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> None:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiProblem(
            401,
            "this endpoint needs 'Authorization: Bearer <token>' (the server's UCVGL_API_TOKEN)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not secrets.compare_digest(credentials.credentials.encode(), settings.api_token.encode()):
        raise ApiProblem(401, "the bearer token is wrong", headers={"WWW-Authenticate": "Bearer"})


async def require_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Mutating endpoints: the request must carry the API token."""
    _check_token(settings, credentials)


async def require_read_access(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Read endpoints: public when ``settings.public_reads``, else the token is needed."""
    if not settings.public_reads:
        _check_token(settings, credentials)


TokenDep = Annotated[None, Depends(require_token)]
ReadAccess = Depends(require_read_access)
"""Router-level dependency for read routes."""
