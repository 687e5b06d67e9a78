"""Panoramas and tiles beside a query's answer: true tiles found, files served only from
inside the data roots (``..``, links and non-images refused)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from service_fixtures import add_indexed_run, assert_problem, make_folder_dataset

from ucvgl.shared.db import Database
from ucvgl.shared.models import RetrievalIndex

N = 6


def write_index(index_dir: Path, tiles: dict[str, Path]) -> Path:
    """A saved flat index of ``tiles`` (random embeddings) with the pipeline's metadata."""
    from ucvgl.services.index import SatelliteIndex

    emb = np.random.default_rng(0).normal(size=(len(tiles), 8)).astype(np.float32)
    meta = [{"path": str(p), "split": "train"} for p in tiles.values()]
    SatelliteIndex.build(emb, list(tiles), metadata=meta).save(index_dir)
    return index_dir


@pytest.fixture
def gallery(service_settings, tmp_path):
    """A folder dataset (6 pairs: 5 train, 1 val) under the data root, an index of its
    tiles plus three that lead out of the data roots, and the rows pointing at them."""
    root = make_folder_dataset(service_settings.data_roots[0] / "mine", n=N)
    secret = tmp_path / "secret.png"
    secret.write_bytes((root / "satellite" / "s000.png").read_bytes())
    (root / "satellite" / "link.png").symlink_to(secret)
    tiles = {f"s{i:03d}": root / "satellite" / f"s{i:03d}.png" for i in range(N)}
    tiles |= {
        "dotdot": root / ".." / ".." / "secret.png",
        "link": root / "satellite" / "link.png",
        "csv": root / "pairs.csv",
    }
    index_dir = write_index(tmp_path / "work" / "run" / "index", tiles)
    database = Database.from_settings(service_settings)
    with database.session() as session:
        index = add_indexed_run(
            session,
            dataset={"name": "mine", "format": "folder", "root_path": str(root)},
            run_dir=index_dir.parent,
            index_dir=index_dir,
            size=len(tiles),
            checkpoint="x",
        )
        empty = RetrievalIndex(
            model_id=index.model_id, path=str(tmp_path / "nothing"), kind="flat", size=0
        )
        session.add(empty)
    database.dispose()
    return {"root": root, "index": index.id, "empty": empty.id, "secret": secret}


def test_panoramas_list_held_out_first_with_their_true_tiles(client, gallery):
    body = client.get(f"/api/v1/indexes/{gallery['index']}/panoramas").json()
    assert body["splits"] == ["val", "train"] and body["split"] == "val"
    assert body["has_ground_truth"] is True and body["dataset_name"] == "mine"
    assert [(p["file_name"], p["true_satellite_id"]) for p in body["items"]] == [
        ("g005.png", "s005")
    ]
    train = client.get(
        f"/api/v1/indexes/{gallery['index']}/panoramas",
        params={"split": "train", "limit": 2, "offset": 1},
    ).json()
    assert train["total"] == N - 1 and train["limit"] == 2
    assert [(p["position"], p["true_satellite_id"]) for p in train["items"]] == [
        (1, "s001"),
        (2, "s002"),
    ]
    image = client.get(train["items"][0]["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == (gallery["root"] / "ground" / "g001.png").read_bytes()
    assert_problem(
        client.get(f"/api/v1/indexes/{gallery['index']}/panoramas", params={"split": "test"}),
        404,
        "no split 'test'",
    )


def test_tiles_are_served_by_their_index_id(client, gallery):
    response = client.get(
        f"/api/v1/indexes/{gallery['index']}/tile", params={"satellite_id": "s003"}
    )
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content == (gallery["root"] / "satellite" / "s003.png").read_bytes()
    assert_problem(client.get("/api/v1/indexes/999/tile", params={"satellite_id": "s003"}), 404)
    assert_problem(
        client.get(f"/api/v1/indexes/{gallery['empty']}/tile", params={"satellite_id": "s0"}),
        409,
        "rebuild it",
    )


@pytest.mark.parametrize(
    ("tile", "status", "needle"),
    [
        ("dotdot", 403, "outside the data roots"),  # data/mine/../../secret.png
        ("link", 403, "outside the data roots"),  # a link inside the root to a file outside
        ("csv", 403, "not an image file"),  # inside the roots, but not an image
        ("../../secret.png", 404, "has no tile"),  # ids are looked up, never used as paths
        ("/etc/passwd", 404, "has no tile"),
    ],
)
def test_files_outside_the_data_roots_are_refused(client, gallery, tile, status, needle):
    response = client.get(f"/api/v1/indexes/{gallery['index']}/tile", params={"satellite_id": tile})
    assert_problem(response, status, needle)
    assert gallery["secret"].read_bytes() not in response.content


def test_panorama_paths_cannot_leave_their_split(client, gallery):
    base = f"/api/v1/indexes/{gallery['index']}/panoramas"
    assert_problem(client.get(f"{base}/..%2F..%2Fsecret/0/image"), 404)
    assert_problem(client.get(f"{base}/train/99/image"), 404, "has 5 panoramas")
    assert client.get(f"{base}/train/-1/image").status_code == 422
