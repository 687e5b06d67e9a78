"""The OpenAPI document as the app behaves: its security and the answers every route gives.

FastAPI derives one security requirement from the bearer dependency, the same on every
route; here a read route declares the token optional (``[{HTTPBearer: []}, {}]``) when
``UCVGL_PUBLIC_READS`` makes reads public, and a route that depends on
:func:`~ucvgl.api.deps.require_token` always declares it required. Every ``/api/v1``
operation also lists the problem+json answers the app gives outside the route itself:
400 (an unparsable body), 413 (a body over the limit), 422 (invalid parameters) and 503
(the database is unreachable), plus 401 where a token can be asked for.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from ucvgl.api.deps import bearer, require_read_access, require_token
from ucvgl.api.presenters import API
from ucvgl.api.problems import problem_responses

BODY_ANSWERS = problem_responses(
    400,
    413,
    d400="The body could not be parsed (malformed JSON or multipart).",
    d413="The body exceeds UCVGL_MAX_UPLOAD_BYTES plus 1 MiB of form overhead.",
)
COMMON_ANSWERS = problem_responses(
    422, 503, d503="The database is unreachable right now (Retry-After says when to retry)."
)
AUTH_ANSWERS = problem_responses(401, d401="The bearer token is missing or wrong.")


def _calls(dependant: Dependant) -> set[Any]:
    """Every dependency callable under ``dependant``, recursively."""
    found: set[Any] = set()
    for dep in dependant.dependencies:
        found.add(dep.call)
        found |= _calls(dep)
    return found


def _problem_json(answers: dict[int | str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``answers`` as OpenAPI response objects (problem+json only)."""
    return {
        str(code): {"description": spec["description"], "content": spec["content"]}
        for code, spec in answers.items()
    }


def _complete(operation: dict[str, Any], route: RouteContext, public_reads: bool) -> None:
    calls = _calls(route.dependant)
    scheme = bearer.scheme_name
    if require_token in calls:
        operation["security"] = [{scheme: []}]
    elif require_read_access in calls:
        operation["security"] = [{scheme: []}, {}] if public_reads else [{scheme: []}]
    else:
        operation.pop("security", None)
    answers = dict(COMMON_ANSWERS)
    if route.body_field is not None:
        answers.update(BODY_ANSWERS)
    if any(requirement for requirement in operation.get("security", [])):
        answers.update(AUTH_ANSWERS)
    responses = operation.setdefault("responses", {})
    for code, spec in _problem_json(answers).items():
        responses.setdefault(code, spec)


def _only_problem_json(responses: dict[str, Any]) -> None:
    """Error answers are problem+json, never plain JSON (``model=`` declares both)."""
    for code, spec in responses.items():
        content = spec.get("content", {})
        if code[0] in "45" and "application/problem+json" in content:
            content.pop("application/json", None)


def install_openapi(app: FastAPI, *, public_reads: bool) -> None:
    """Replace ``app.openapi`` by a builder that completes each ``/api/v1`` operation."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        paths = schema.get("paths", {})
        for route in iter_route_contexts(app.routes):
            if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
                continue
            for method in route.methods or ():
                operation = paths.get(route.path_format, {}).get(method.lower())
                if operation is not None and str(route.path_format).startswith(API):
                    _complete(operation, route, public_reads)
        for operations in paths.values():
            for operation in operations.values():
                _only_problem_json(operation.get("responses", {}))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
