"""Access: every mutating endpoint needs the bearer token, reads can be made private, the
API refuses to start with a default token outside development, and no endpoint serves a
file outside the dataset and work roots."""

from __future__ import annotations

import re

import pytest
from service_fixtures import assert_problem

from ucvgl.api.main import create_app
from ucvgl.shared.errors import ConfigError

PUBLIC = {("get", "/healthz"), ("get", "/readyz")}
SAFE_METHODS = {"get", "head", "options"}


def operations(client) -> list[tuple[str, str]]:
    """(method, path) of every documented operation, path ids filled with 1."""
    spec = client.get("/openapi.json").json()
    return [
        (method, re.sub(r"\{[^}]+\}", "1", path))
        for path, item in spec["paths"].items()
        for method in item
    ]


def test_every_mutation_needs_the_token(client, auth, tiny_dataset):
    mutations = [(m, p) for m, p in operations(client) if m not in SAFE_METHODS]
    assert len(mutations) >= 6  # jobs, cancel, retry, datasets, synthetic, indexes, query
    for method, path in mutations:
        if path == "/api/v1/query":  # a read with uploads: guarded like reads (below)
            continue
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            response = getattr(client, method)(path, headers=headers)
            assert_problem(response, 401)
            assert response.headers["www-authenticate"] == "Bearer", path


def test_private_reads_guard_every_read_but_health(client, auth, service_settings, tiny_dataset):
    client.app.state.settings = service_settings.model_copy(update={"public_reads": False})
    for method, path in operations(client):
        if (method, path) in PUBLIC or (method not in SAFE_METHODS and path != "/api/v1/query"):
            continue
        assert_problem(getattr(client, method)(path), 401)
        assert getattr(client, method)(path, headers=auth).status_code != 401, path
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("token", ["", "change-me"])
def test_the_app_refuses_a_default_token_outside_development(settings, token):
    production = settings.model_copy(update={"environment": "production", "api_token": token})
    with pytest.raises(ConfigError, match="UCVGL_API_TOKEN"):
        create_app(production)
    create_app(production.model_copy(update={"api_token": "a-long-random-token-123"}))


TRAVERSALS = (
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "%2Fetc%2Fpasswd",
    "....//....//etc//passwd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
)


def test_no_endpoint_serves_files_outside_the_roots(client, auth, tiny_dataset, service_settings):
    secret = service_settings.work_dir.parent / "secret.txt"
    secret.write_text("top-secret-content")
    spec = client.get("/openapi.json").json()
    templated = [p for p, item in spec["paths"].items() if "{" in p and "get" in item]
    templated += ["/dashboard/static/{name}"]
    for template in templated:
        for evil in (*TRAVERSALS, "..%2Fsecret.txt", "..%2F..%2Fsecret.txt"):
            path = re.sub(r"\{[^}]+\}", evil, template)
            response = client.get(path, headers=auth)
            assert response.status_code in (404, 422), (path, response.status_code)
            assert "root:" not in response.text and "top-secret" not in response.text
    for evil in ("/dashboard/static/../../shared/config.py", "/../../../etc/passwd"):
        response = client.get(evil)
        assert "root:" not in response.text and "BaseSettings" not in response.text
