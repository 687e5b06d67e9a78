"""Errors as RFC 9457 problem details (``application/problem+json``), never a traceback."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
DATABASE_RETRY_AFTER_S = 5


def problem_responses(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting problem+json answers for ``codes``."""
    from ucvgl.shared.schemas import Problem

    return {
        code: {
            "model": Problem,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            "description": descriptions.get(f"d{code}", HTTPStatus(code).phrase),
        }
        for code in codes
    }


class ApiProblem(Exception):
    """Raise in a route to answer with a problem document.

    Args:
        status: HTTP status code.
        detail: what went wrong and what to do, for a person.
        errors: invalid fields, ``[{"field": "body.path", "message": "..."}]``.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``...).
        extra: extension members added to the document.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.title = status, detail, title
        self.errors, self.headers, self.extra = errors, headers, extra


def field_problem(field: str, message: str, status: int = 422) -> ApiProblem:
    """A problem about one request field (named in ``detail`` and ``errors``)."""
    return ApiProblem(status, f"{field}: {message}", errors=[{"field": field, "message": message}])


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    title: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """A ``JSONResponse`` carrying a problem document."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if errors:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


def allowed_methods(request: Request) -> str:
    """The methods every route of the app answers on the request's path (an ``Allow`` value).

    Starlette's own 405 lists only the methods of the first route matching the path, while
    ``GET`` and ``POST`` of one path are often two routes.
    """
    path = request.url.path
    literal: set[str] = set()
    templated: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods = getattr(route, "methods", None) or ()
            (literal if route.path_format == path else templated).update(methods)
    # A literal path (/datasets/synthetic) is its own resource, not one of /datasets/{id}.
    return ", ".join(sorted(literal or templated))


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error (ours, HTTP, validation, unexpected) to a problem document."""

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem_response(
            request,
            exc.status,
            exc.detail,
            title=exc.title,
            errors=exc.errors,
            headers=exc.headers,
            extra=exc.extra,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        headers = exc.headers
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}"
        if exc.status_code == 405:
            allowed = allowed_methods(request)
            detail = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
            headers = {**(headers or {}), "Allow": allowed}
        return problem_response(request, exc.status_code, detail, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field_name(err.get("loc", ())), "message": str(err.get("msg", "invalid"))}
            for err in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
        return problem_response(request, 422, detail, title="Invalid request", errors=errors)

    @app.exception_handler(sa_exc.DataError)
    async def _unstorable(request: Request, exc: sa_exc.DataError) -> JSONResponse:
        log.warning("value refused on %s %s: %s", request.method, request.url.path, exc)
        return problem_response(
            request,
            422,
            "a value of the request is outside what the database can store "
            f"({type(exc.orig).__name__}); send a smaller number or a shorter text",
            title="Invalid request",
        )

    @app.exception_handler(sa_exc.OperationalError)
    @app.exception_handler(sa_exc.InterfaceError)
    @app.exception_handler(sa_exc.TimeoutError)
    async def _database_unreachable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unreachable on %s %s: %s", request.method, request.url.path, exc)
        return problem_response(
            request,
            503,
            "the database is unreachable right now; retry in a few seconds "
            "(GET /readyz shows when it is back)",
            title="Database unavailable",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            request,
            500,
            "internal server error; the server log has the details",
        )
