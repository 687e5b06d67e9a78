"""Health and readiness, problem+json for every error, and the serve token policy."""

from __future__ import annotations

import pytest
import typer
from service_fixtures import assert_problem

from ucvgl.commands.service import check_token_policy
from ucvgl.shared.db import Database
from ucvgl.shared.jobs.liveness import beat


def test_healthz_and_readyz_without_then_with_a_worker(client, service_settings):
    assert client.get("/healthz").json() == {"status": "ok"}
    problem = assert_problem(client.get("/readyz"), 503, "workers")
    checks = problem["checks"]
    assert checks["database"]["ok"] and checks["broker"]["ok"] and not checks["workers"]["ok"]
    db = Database.from_settings(service_settings)
    beat(db, "w1@host", "cpu,gpu")
    db.dispose()
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["workers"]["detail"] == "w1@host"


def test_readyz_reports_an_unreachable_broker(client, service_settings):
    from ucvgl.api.job_queue import JobQueue
    from ucvgl.shared.jobs.celery_client import create_producer_app

    down = service_settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    client.app.state.job_queue = JobQueue(create_producer_app(down))
    problem = assert_problem(client.get("/readyz"), 503, "broker")
    assert not problem["checks"]["broker"]["ok"]


def test_unknown_routes_and_unexpected_errors_are_problems(client):
    assert_problem(client.get("/api/v1/nothing"), 404, "/api/v1/nothing")

    @client.app.get("/boom")
    def boom() -> dict:
        raise RuntimeError("secret internals")

    problem = assert_problem(client.get("/boom"), 500, "server log")
    assert "secret internals" not in problem["detail"]


def test_openapi_has_stable_operation_ids_and_leaves_root_free(client):
    spec = client.get("/openapi.json").json()
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
    assert {"start_job", "get_job", "cancel_job", "query_tiles", "list_rounds"} <= set(ids)
    assert "/" not in spec["paths"]
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    ("environment", "token", "refused"),
    [
        ("production", "change-me", True),
        ("production", "", True),
        ("production", "a-long-random-token", False),
        ("development", "change-me", False),
    ],
)
def test_serve_refuses_default_tokens_outside_development(environment, token, refused):
    if refused:
        with pytest.raises(typer.Exit):
            check_token_policy(environment, token)
    else:
        check_token_policy(environment, token)
