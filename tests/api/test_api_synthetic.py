"""Synthetic worlds through the API: the registry, named worlds and knob overrides."""

from __future__ import annotations

import json

from service_fixtures import assert_problem, poll_job, run_job_here

from ucvgl.services.synth import META_FILE
from ucvgl.services.synth.settings import knob_names

SYNTH = "/api/v1/datasets/synthetic"
TINY = {"n_train": 2, "n_val": 1, "pano_height": 8, "pano_width": 16, "sat_size": 8}


def test_the_registry_is_a_public_read(client):
    response = client.get("/api/v1/synthetic/worlds")
    assert response.status_code == 200, response.text
    body = response.json()
    worlds = {w["name"]: w for w in body["worlds"]}
    assert {"tune-1", "tune-3", "report-1"} <= set(worlds)
    assert {w["role"] for w in worlds.values()} == {"tune", "report"}
    tune3 = worlds["tune-3"]
    assert tune3["format"] == "folder" and tune3["seed"] == 1003
    assert tune3["settings"]["record_geometry"] is False
    assert tune3["changed"]["gps_offset_m"] == 1.0 and "style" not in tune3["changed"]
    assert worlds["tune-1"]["changed"] == {}
    assert list(body["knobs"]) == knob_names() and body["knobs"]["camera_height_m"] == 2.0
    assert "report-*" in body["rule"]


def test_an_unknown_knob_or_a_bad_value_names_the_knob(client, auth):
    for settings, field, needle in (
        ({"cloud_cover": 0.5}, "body.settings.cloud_cover", "allowed: camera_height_m"),
        ({"gps_offset_m": 99}, "body.settings.gps_offset_m", "[0, 20]"),
        ({"record_geometry": "maybe"}, "body.settings.record_geometry", "true or false"),
        ({"style": "cartoon"}, "body.settings.style", "textured"),
        ({"downtown_radius": 1.2}, "body.settings.downtown_radius", "suburb_radius"),
    ):
        body = {"name": "w", "settings": settings}
        problem = assert_problem(client.post(SYNTH, json=body, headers=auth), 422, field, needle)
        assert [e["field"] for e in problem["errors"]] == [field]
    # with a world the knobs apply on top of its own (tune-3: suburb_radius 1.2)
    ok = {"name": "w", "world": "tune-3", "settings": {"downtown_radius": 1.2}}
    assert client.post(SYNTH, json=ok, headers=auth).status_code == 202


def test_a_world_fixes_format_seed_and_jpeg_quality(client, auth):
    for extra, field in (
        ({"format": "cvact"}, "body.format"),
        ({"seed": 3}, "body.seed"),
        ({"jpeg_quality": 70}, "body.jpeg_quality"),
    ):
        body = {"name": "w", "world": "tune-1", **extra}
        problem = assert_problem(client.post(SYNTH, json=body, headers=auth), 422, field, "tune-1")
        assert problem["errors"][0]["field"] == field
    unknown = {"name": "w", "world": "tune-99"}
    assert_problem(client.post(SYNTH, json=unknown, headers=auth), 422, "body.world", "report-1")


def _generate(client, auth, settings, body: dict) -> dict:
    response = client.post(SYNTH, json=body, headers=auth)
    assert response.status_code == 202, response.text
    job = response.json()
    assert run_job_here(settings, job["id"]) == "SUCCEEDED"
    return poll_job(client, job["id"], {"SUCCEEDED"}, headers=auth)


def test_a_named_world_with_a_knob_is_generated_and_recorded(client, auth, service_settings):
    body = {"name": "t3", "world": "tune-3", "settings": {"gps_offset_m": "2.5"}, **TINY}
    job = _generate(client, auth, service_settings, body)
    p = job["parameters"]
    assert p["world"] == "tune-3" and p["settings"] == {"gps_offset_m": 2.5}
    assert (p["format"], p["seed"], p["jpeg_quality"]) == ("folder", 1003, 90)
    dataset = client.get(job["links"]["dataset"]).json()
    assert dataset["format"] == "folder"
    meta = json.loads((service_settings.data_roots[0] / "t3" / META_FILE).read_text())
    world = meta["params"]["world"]
    assert meta["params"]["seed"] == 1003 and meta["params"]["format"] == "folder"
    assert world["gps_offset_m"] == 2.5  # the override
    assert world["scene_density"] == 0.7 and world["record_geometry"] is False  # tune-3's


def test_knobs_without_a_world_and_the_recorded_defaults(client, auth, service_settings):
    body = {"name": "plain", "format": "folder", "seed": 5, "jpeg_quality": 70, **TINY}
    body["settings"] = {"record_geometry": False, "camera_height_m": 2.5}
    job = _generate(client, auth, service_settings, body)
    p = job["parameters"]
    assert p["world"] is None and p["settings"] == body["settings"]
    meta = json.loads((service_settings.data_roots[0] / "plain" / META_FILE).read_text())
    assert meta["params"]["jpeg_quality"] == 70 and meta["params"]["seed"] == 5
    world = meta["params"]["world"]
    assert world["record_geometry"] is False and "camera_height_m" not in world  # hidden
    assert "hidden_geometry" in world
    # without world or settings: the API's small defaults, recorded
    queued = client.post(SYNTH, json={"name": "dflt"}, headers=auth).json()["parameters"]
    assert queued["format"] == "cvusa" and queued["seed"] == 0 and queued["jpeg_quality"] == 90
    assert (queued["pano_height"], queued["pano_width"], queued["sat_size"]) == (64, 128, 64)
    assert queued["settings"] == {} and queued["world"] is None
    named = client.post(SYNTH, json={"name": "rep", "world": "report-1"}, headers=auth).json()
    assert (named["parameters"]["pano_height"], named["parameters"]["sat_size"]) == (128, 128)
