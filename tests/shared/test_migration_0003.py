"""Migration 0003: duplicate index rows per (model_id, path) removed, then made impossible."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ucvgl.shared.db import create_db_engine, current_revision, downgrade_database, upgrade_database

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def _at(seconds: int) -> datetime:
    return T0.replace(second=seconds)


def _insert_dataset(conn: sa.Connection, name: str) -> int:
    return conn.execute(
        sa.text(
            "INSERT INTO datasets (name, format, root_path, counts, has_ground_truth,"
            " validation_report, created_at) VALUES (:name, 'folder', '/d', '{}', false,"
            " '{}', CURRENT_TIMESTAMP) RETURNING id"
        ),
        {"name": name},
    ).scalar_one()


def _insert_model(conn: sa.Connection, dataset_id: int, checkpoint: str) -> int:
    return conn.execute(
        sa.text(
            "INSERT INTO models (dataset_id, run_dir, checkpoint_path, mode, created_at)"
            " VALUES (:d, '/r', :c, 'semi', CURRENT_TIMESTAMP) RETURNING id"
        ),
        {"d": dataset_id, "c": checkpoint},
    ).scalar_one()


def _insert_index(conn: sa.Connection, model_id: int, path: str, kind: str, at: datetime) -> int:
    return conn.execute(
        sa.text(
            "INSERT INTO indexes (model_id, path, kind, size, created_at)"
            " VALUES (:model_id, :path, :kind, 3, :at) RETURNING id"
        ),
        {"model_id": model_id, "path": path, "kind": kind, "at": at},
    ).scalar_one()


def _index_rows(conn: sa.Connection) -> list[tuple[int, int, str, str]]:
    query = "SELECT id, model_id, path, kind FROM indexes ORDER BY id"
    return [tuple(row) for row in conn.execute(sa.text(query))]


def _unique_constraints(engine: sa.Engine) -> list[dict]:
    return sa.inspect(engine).get_unique_constraints("indexes")


def test_upgrade_keeps_the_newest_duplicate_and_adds_the_constraint(empty_db_url):
    upgrade_database(empty_db_url, "0002")
    engine = create_db_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            model_id = _insert_model(conn, _insert_dataset(conn, "old"), "/r/m.pt")
            # inserted newest first: the highest id is NOT the one to keep
            newest = _insert_index(conn, model_id, "/r/index", "newest", _at(30))
            older = _insert_index(conn, model_id, "/r/index", "older", _at(10))
            other = _insert_index(conn, model_id, "/r/other", "other", _at(5))
            assert older > newest
        with engine.connect() as conn:
            before = _index_rows(conn)
        assert _unique_constraints(engine) == []

        upgrade_database(empty_db_url)
        assert current_revision(empty_db_url) == "0003"
        with engine.connect() as conn:
            after = _index_rows(conn)
        kept = {row[0]: row for row in before if row[0] in (newest, other)}
        assert after == [kept[newest], kept[other]]
        assert after[0][3] == "newest" and older not in {row[0] for row in after}
        assert [(c["name"], c["column_names"]) for c in _unique_constraints(engine)] == [
            ("uq_indexes_model_path", ["model_id", "path"])
        ]
        with pytest.raises(IntegrityError), engine.begin() as conn:
            _insert_index(conn, model_id, "/r/index", "again", _at(40))
        with engine.begin() as conn:  # another folder of the same model is still fine
            _insert_index(conn, model_id, "/r/third", "third", _at(40))
            assert len(_index_rows(conn)) == 3

        downgrade_database(empty_db_url, "0002")
        assert current_revision(empty_db_url) == "0002"
        assert _unique_constraints(engine) == []
        with engine.begin() as conn:  # duplicates are allowed again, rows and FKs survive
            _insert_index(conn, model_id, "/r/index", "again", _at(50))
            assert [row[2] for row in _index_rows(conn)].count("/r/index") == 2
        assert {fk["referred_table"] for fk in sa.inspect(engine).get_foreign_keys("indexes")} == {
            "models"
        }
    finally:
        engine.dispose()


def test_equal_timestamps_keep_the_highest_id(empty_db_url):
    upgrade_database(empty_db_url, "0002")
    engine = create_db_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            dataset_id = _insert_dataset(conn, "d")
            model_ids = [_insert_model(conn, dataset_id, f"/r/m{i}.pt") for i in range(2)]
            ids = [
                _insert_index(conn, model_ids[0], "/r/index", f"t{i}", _at(10)) for i in range(3)
            ]
            # the same folder under another model is another index, kept as is
            other_model = _insert_index(conn, model_ids[1], "/r/index", "m1", _at(0))
        upgrade_database(empty_db_url)
        with engine.connect() as conn:
            rows = _index_rows(conn)
        assert [(r[0], r[3]) for r in rows] == [(ids[2], "t2"), (other_model, "m1")]
    finally:
        engine.dispose()
