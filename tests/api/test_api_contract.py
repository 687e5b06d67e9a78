"""The API keeps the contract its OpenAPI document states: bounded ids and offsets, no NUL
in strings, 405 with the full ``Allow`` on undeclared methods, security as enforced."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from service_fixtures import assert_problem

from ucvgl.api.bounds import MAX_DB_ID
from ucvgl.api.main import create_app
from ucvgl.shared.enums import JobType

HUGE = 3025844501782735093760


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("get", f"/api/v1/jobs/{HUGE}", "path.job_id"),
        ("get", f"/api/v1/jobs/{MAX_DB_ID + 1}", "path.job_id"),
        ("get", "/api/v1/datasets?limit=250&offset=18446744073709551616", "query.offset"),
        ("get", f"/api/v1/jobs?dataset_id={HUGE}", "query.dataset_id"),
        ("get", f"/api/v1/models/{HUGE}", "path.model_id"),
        ("get", f"/api/v1/indexes?model_id={HUGE}", "query.model_id"),
        ("get", f"/api/v1/rounds/{HUGE}/labels?offset={HUGE}", "path.round_id"),
        ("get", f"/api/v1/datasets/{HUGE}/rounds", "path.dataset_id"),
        ("post", "/api/v1/jobs/9223372036854775808/retry", "path.job_id"),
        ("post", f"/api/v1/jobs/{HUGE}/cancel", "path.job_id"),
        ("get", f"/api/v1/indexes/{HUGE}/panoramas", "path.index_id"),
        ("get", f"/api/v1/indexes/1/panoramas?offset={HUGE}", "query.offset"),
        ("get", f"/api/v1/indexes/{HUGE}/panoramas/test/0/image", "path.index_id"),
        ("get", f"/api/v1/indexes/1/panoramas/test/{HUGE}/image", "path.position"),
        ("get", f"/api/v1/indexes/{HUGE}/tile?tile_id=a", "path.index_id"),
    ],
)
def test_ids_and_offsets_beyond_the_database_are_422(client, auth, method, path, field):
    assert_problem(getattr(client, method)(path, headers=auth), 422, field)


def test_body_ids_beyond_the_database_are_422(client, auth):
    jobs = client.post("/api/v1/jobs", json={"type": "project", "dataset_id": -2e31}, headers=auth)
    assert_problem(jobs, 422, "body.dataset_id")
    indexes = client.post("/api/v1/indexes", json={"model_id": -4e21}, headers=auth)
    assert_problem(indexes, 422, "body.model_id")
    png = io.BytesIO()
    Image.new("RGB", (8, 4)).save(png, format="PNG")
    files = {"files": ("a.png", png.getvalue(), "image/png")}
    query = client.post("/api/v1/query", files=files, data={"index_id": str(int(4.8e23))})
    assert_problem(query, 422, "body.index_id")


def test_nul_characters_in_strings_are_422(client, auth):
    body = {"name": "x", "path": "\u0000PC\u00e9", "format": "folder"}
    assert_problem(client.post("/api/v1/datasets", json=body, headers=auth), 422, "body.path")
    job = {"type": "project", "dataset_id": 1, "params": {"run_name": ["a\u0000"]}}
    assert_problem(client.post("/api/v1/jobs", json=job, headers=auth), 422, "body.params")
    world = {"name": "w", "settings": {"style\u0000": 1}}
    answer = client.post("/api/v1/datasets/synthetic", json=world, headers=auth)
    assert_problem(answer, 422, "body.settings")


def test_a_home_folder_of_no_user_is_422(client, auth):
    body = {"name": "x", "path": "~no-such-user-\u00ad\n/data", "format": "cvact"}
    assert_problem(client.post("/api/v1/datasets", json=body, headers=auth), 422, "body.path")


def test_json_types_are_not_coerced(client, auth):
    job = {"type": "project", "dataset_id": "1"}
    assert_problem(client.post("/api/v1/jobs", json=job, headers=auth), 422, "body.dataset_id")
    world = {"name": "w", "seed": False}
    answer = client.post("/api/v1/datasets/synthetic", json=world, headers=auth)
    assert_problem(answer, 422, "body.seed")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("options", "/api/v1/datasets", "GET, POST"),
        ("delete", "/api/v1/datasets", "GET, POST"),
        ("options", "/api/v1/datasets/synthetic", "POST"),
        ("get", "/api/v1/datasets/synthetic", "POST"),
        ("put", "/api/v1/jobs/1", "GET"),
        ("get", "/api/v1/jobs/1/cancel", "POST"),
    ],
)
def test_undeclared_methods_are_405_listing_every_allowed_method(client, method, path, allow):
    answer = client.request(method.upper(), path)
    assert_problem(answer, 405, method.upper())
    assert answer.headers["allow"] == allow


def operations(schema: dict) -> dict[tuple[str, str], dict]:
    return {
        (method.upper(), path): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    }


@pytest.mark.parametrize("public_reads", [True, False])
def test_the_schema_declares_security_as_the_app_enforces_it(service_settings, public_reads):
    settings = service_settings.model_copy(update={"public_reads": public_reads})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        schema = client.get("/openapi.json").json()
        checked = 0
        for (method, path), operation in operations(schema).items():
            security = operation.get("security")
            if not path.startswith("/api/v1"):
                assert security is None, (method, path)
                continue
            optional = {} in security
            if method == "GET" and "{" not in path:  # a list: the answer shows the policy
                answer = client.get(path)
                assert (answer.status_code != 401) == optional, (path, answer.status_code)
                checked += 1
            if method == "POST" and path != "/api/v1/query":
                assert security == [{"HTTPBearer": []}], (method, path)
                assert_problem(client.post(path, json={}), 401)
    assert checked >= 4


def test_the_schema_lists_only_what_routes_accept(client):
    schema = client.get("/openapi.json").json()
    startable = schema["components"]["schemas"]["StartableJobType"]["enum"]
    assert sorted(startable) == sorted(t.value for t in JobType if not t.creates_dataset)
    for (method, path), operation in operations(schema).items():
        for code, answer in operation["responses"].items():
            if code[0] in "45":  # every error is a problem document, nothing else
                assert list(answer["content"]) == ["application/problem+json"], (path, code)
        if path.startswith("/api/v1"):
            assert {"422", "503"} <= set(operation["responses"]), (method, path)
        if "requestBody" in operation:
            assert {"400", "413"} <= set(operation["responses"]), (method, path)
    readyz = operations(schema)[("GET", "/readyz")]["responses"]["503"]
    assert list(readyz["content"]) == ["application/problem+json"]
