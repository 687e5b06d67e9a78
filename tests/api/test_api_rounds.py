"""Rounds and labels: health, correct ratio, JSON pages and CSV export."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import sqlalchemy as sa
from service_fixtures import assert_problem

from ucvgl.services.label_health import label_health_score
from ucvgl.shared.db import Database
from ucvgl.shared.models import Job, PseudoLabel, PseudoLabelRound

N_LABELS = 2500


@pytest.fixture
def round_id(tiny_dataset, service_settings) -> int:
    db = Database.from_settings(service_settings)
    rng = np.random.default_rng(0)
    margins, sims = rng.uniform(0.0, 0.3, N_LABELS), rng.uniform(0.3, 0.9, N_LABELS)
    with db.session() as s:
        job = Job(type="amm_round", run_dir="/runs/x", dataset_id=tiny_dataset["id"])
        s.add(job)
        s.flush()
        rnd = PseudoLabelRound(
            dataset_id=tiny_dataset["id"],
            job_id=job.id,
            round_number=1,
            threshold=0.05,
            mutual=N_LABELS * 2,
            labels=N_LABELS,
            correct=N_LABELS // 2,
            margin_histogram={"edges": [0.0, 0.15, 0.3], "counts": [1250, 1250]},
            label_health_score=label_health_score(
                margins, sims, mutual=N_LABELS * 2, labels=N_LABELS
            ),
        )
        s.add(rnd)
        s.flush()
        s.execute(
            sa.insert(PseudoLabel),
            [
                dict(
                    round_id=rnd.id,
                    ground_id=f"g{i}",
                    satellite_id=f"s{i}",
                    margin=float(margins[i]),
                    similarity=float(sims[i]),
                    is_correct=bool(i % 2 == 0),
                )
                for i in range(N_LABELS)
            ],
        )
    db.dispose()
    return rnd.id


def test_rounds_of_a_dataset(client, tiny_dataset, round_id):
    page = client.get(f"/api/v1/datasets/{tiny_dataset['id']}/rounds").json()
    assert page["total"] == 1
    rnd = page["items"][0]
    assert rnd["round"] == 1 and rnd["labels"] == N_LABELS and rnd["mutual"] == 2 * N_LABELS
    assert rnd["correct_ratio"] == pytest.approx(0.5)
    assert 0.25 <= rnd["label_health_score"] <= 1.0  # kept share 0.5 contributes 0.25
    assert rnd["margin_histogram"] == {"edges": [0.0, 0.15, 0.3], "counts": [1250, 1250]}
    assert client.get(rnd["links"]["self"]).json()["id"] == round_id
    assert_problem(client.get("/api/v1/datasets/999/rounds"), 404)
    assert_problem(client.get("/api/v1/rounds/999"), 404, "round 999")


def test_labels_paginate_and_export_as_csv(client, round_id):
    page = client.get(f"/api/v1/rounds/{round_id}/labels", params={"limit": 10, "offset": 5})
    body = page.json()
    assert body["total"] == N_LABELS and len(body["items"]) == 10
    first = body["items"][0]
    assert first["ground_id"] == "g5" and first["is_correct"] is False
    assert first["margin_score"] == pytest.approx(
        min(max(first["margin"] / first["similarity"], 0), 1)
    )
    for url, params in (
        (f"/api/v1/rounds/{round_id}/labels", {"format": "csv"}),
        (f"/api/v1/rounds/{round_id}/labels.csv", {}),
    ):
        response = client.get(url, params=params)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert len(rows) == N_LABELS  # streamed in chunks, nothing lost at the boundaries
        assert rows[0]["ground_id"] == "g0" and rows[0]["is_correct"] == "1"
        assert rows[-1]["satellite_id"] == f"s{N_LABELS - 1}"
    assert_problem(client.get("/api/v1/rounds/999/labels.csv"), 404)
    assert_problem(client.get(f"/api/v1/rounds/{round_id}/labels?format=xml"), 422, "format")
