"""record_index and the database's one row per (model_id, path) (uq_indexes_model_path)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ucvgl.shared.db import Database
from ucvgl.shared.models import Dataset, Model, RetrievalIndex
from ucvgl.worker import recording
from ucvgl.worker.recording import record_index


@pytest.fixture
def database(db_url):
    db = Database.from_url(db_url)
    yield db
    db.dispose()


@pytest.fixture
def index_dir(tmp_path):
    folder = tmp_path / "run" / "index"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"kind": "flat", "count": 7}))
    return folder


def _model(db: Database) -> int:
    with db.session() as s:
        dataset = Dataset(name="d", format="folder", root_path="/d")
        s.add(dataset)
        s.flush()
        model = Model(dataset_id=dataset.id, run_dir="/r", checkpoint_path="/r/m", mode="semi")
        s.add(model)
        s.flush()
        return model.id


def _rows(db: Database) -> list[tuple[int, str, str, int]]:
    with db.sessions() as s:
        rows = s.scalars(sa.select(RetrievalIndex).order_by(RetrievalIndex.id)).all()
        return [(r.model_id, r.path, r.kind, r.size) for r in rows]


def test_the_database_refuses_a_second_row_for_one_folder(database, index_dir):
    model_id = _model(database)
    with database.session() as s:
        s.add(RetrievalIndex(model_id=model_id, path=str(index_dir), kind="flat", size=1))
    with pytest.raises(IntegrityError), database.session() as s:
        s.add(RetrievalIndex(model_id=model_id, path=str(index_dir), kind="flat", size=2))
    assert _rows(database) == [(model_id, str(index_dir), "flat", 1)]


def test_a_row_inserted_by_another_job_after_the_lookup_is_updated(
    database, index_dir, monkeypatch
):
    """Two jobs record one folder at once: the one that loses the insert updates the row."""
    model_id = _model(database)
    real_lookup = recording._index_rows
    lookups = []

    def lookup_then_lose_the_race(session, model, folder):
        rows = real_lookup(session, model, folder)
        if not lookups:  # another job commits its row between this look-up and the insert
            with database.session() as other:
                other.add(RetrievalIndex(model_id=model, path=str(folder), kind="old", size=1))
        lookups.append(len(rows))
        return rows

    monkeypatch.setattr(recording, "_index_rows", lookup_then_lose_the_race)
    with database.session() as s:
        index = record_index(s, model_id, index_dir)
        index_id = index.id
    assert lookups == [0, 1]
    assert _rows(database) == [(model_id, str(index_dir), "flat", 7)]
    with database.sessions() as s:
        assert s.scalars(sa.select(RetrievalIndex.id)).one() == index_id


def test_an_insert_refused_for_another_reason_still_raises(database, index_dir):
    with pytest.raises(IntegrityError), database.session() as s:
        record_index(s, 12345, index_dir)  # no such model: the foreign key refuses it
    assert _rows(database) == []
