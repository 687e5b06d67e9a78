"""IndexLookup: the query route's view of index rows, re-read after ``ttl_s`` seconds."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ucvgl.api.index_lookup import IndexLookup
from ucvgl.api.problems import ApiProblem
from ucvgl.shared.db import Database
from ucvgl.shared.models import Model, RetrievalIndex


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def add_index(db: Database, dataset_id: int, run_dir: str) -> int:
    with db.session() as s:
        model = Model(
            dataset_id=dataset_id, run_dir=run_dir, checkpoint_path=f"{run_dir}/m.pt", mode="sup"
        )
        s.add(model)
        s.flush()
        index = RetrievalIndex(model_id=model.id, path=f"{run_dir}/index", kind="flat", size=3)
        s.add(index)
    return index.id


@pytest.fixture
def database(client, service_settings):
    db = Database.from_settings(service_settings)
    yield db
    db.dispose()


def test_rows_are_reused_until_the_ttl_then_reread(database, tiny_dataset):
    clock = FakeClock()
    lookup = IndexLookup(database, ttl_s=2.0, clock=clock)
    with pytest.raises(ApiProblem, match="no index has been built yet"):
        lookup.fetch(None)
    first = add_index(database, tiny_dataset["id"], "/runs/a")
    assert lookup.cached(None) is None
    newest = lookup.fetch(None)
    assert (newest.id, str(newest.run_dir)) == (first, "/runs/a")
    second = add_index(database, tiny_dataset["id"], "/runs/b")
    clock.now += 1.9
    assert lookup.cached(None) == newest  # still trusted: the new index is not seen yet
    clock.now += 0.1
    assert lookup.cached(None) is None  # expired: the route reads the database again
    assert lookup.fetch(None).id == second
    assert lookup.fetch(first).run_dir.name == "a" and lookup.reads == 3
    with pytest.raises(ApiProblem, match="index 999 does not exist"):
        lookup.fetch(999)


def test_a_rebuilt_index_gets_a_new_cache_key(database, tiny_dataset):
    lookup = IndexLookup(database, ttl_s=0.0)
    index_id = add_index(database, tiny_dataset["id"], "/runs/c")
    before = lookup.fetch(index_id)
    assert lookup.cached(index_id) is None  # ttl 0: never reused
    with database.session() as s:  # what recording a rebuild of the same folder does
        row = s.get(RetrievalIndex, index_id)
        row.created_at = row.created_at + timedelta(seconds=5)
    after = lookup.fetch(index_id)
    assert after.id == before.id and after.cache_key != before.cache_key


def test_the_default_index_is_the_most_recently_built(database, tiny_dataset):
    lookup = IndexLookup(database, ttl_s=0.0)
    older = add_index(database, tiny_dataset["id"], "/runs/d")
    newer = add_index(database, tiny_dataset["id"], "/runs/e")
    assert lookup.fetch(None).id == newer
    with database.session() as s:  # the older folder is rebuilt: its row keeps its id
        row = s.get(RetrievalIndex, older)
        row.created_at = s.get(RetrievalIndex, newer).created_at + timedelta(seconds=1)
    assert lookup.fetch(None).id == older


def test_negative_ttl_is_refused(database):
    with pytest.raises(ValueError, match="ttl_s"):
        IndexLookup(database, ttl_s=-1)
