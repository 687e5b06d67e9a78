"""Request limits: concurrent retrieval queries per client (429) and body size (413)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ucvgl.api.problems import ApiProblem, problem_response

BODY_OVERHEAD_BYTES = 1024 * 1024
"""Room for multipart framing and form fields on top of ``max_upload_bytes``."""


class ConcurrencyLimiter:
    """Lets at most ``limit`` requests per client key run at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._active: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, client: str) -> Iterator[None]:
        """Hold one of ``client``'s slots; raises a 429 problem when none is free."""
        with self._lock:
            if self._active.get(client, 0) >= self.limit:
                raise ApiProblem(
                    429,
                    f"too many concurrent queries from this client (limit {self.limit}); "
                    "wait for one to finish",
                    headers={"Retry-After": "1"},
                )
            self._active[client] = self._active.get(client, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._active[client] -= 1
                if not self._active[client]:
                    del self._active[client]


class BodySizeLimit:
    """ASGI middleware refusing request bodies over ``max_bytes`` with a 413 problem.

    A declared ``Content-Length`` over the limit is refused before any byte is read; a
    body without one (chunked) is counted as it arrives and refused once it passes.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def _detail(self) -> str:
        return (
            f"the request body exceeds {self.max_bytes} bytes "
            "(UCVGL_MAX_UPLOAD_BYTES plus 1 MiB of form overhead); send less per request"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = problem_response(Request(scope), 413, self._detail())
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message: dict[str, Any] = dict(await receive())
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Starlette's HTTPException: FastAPI turns any other error raised while
                    # it reads the body into a 400; the problem handler renders this one.
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, counted, send)
