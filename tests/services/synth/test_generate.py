"""generate_world: determinism, the four layouts, resuming, and reading them back."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ucvgl.services.synth import META_FILE, TILE_EXTENT_M, generate_world
from ucvgl.services.synth.geo import latlon_to_metres, metres_to_latlon
from ucvgl.shared.errors import ConfigError

SMALL = {"pano_size": (32, 64), "sat_size": 32, "workers": 1}


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in (".jpg", ".png")
    }


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[str, Path]:
    """One tiny dataset per format (4 train + 2 val locations)."""
    base = tmp_path_factory.mktemp("synth")
    out = {}
    for fmt in ("cvusa", "cvact", "vigor", "folder"):
        out[fmt] = generate_world(base / fmt, fmt, 4, 2, seed=3, **SMALL)
    return out


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path, worlds) -> None:
    again = generate_world(tmp_path / "again", "cvact", 4, 2, seed=3, **SMALL)
    a, b = _files(worlds["cvact"]), _files(again)
    assert a.keys() == b.keys() and len(a) == 12
    assert all(a[k] == b[k] for k in a)
    from scipy.io import loadmat  # the .mat header holds a timestamp: compare contents

    m1, m2 = loadmat(worlds["cvact"] / "ACT_data.mat"), loadmat(again / "ACT_data.mat")
    np.testing.assert_array_equal(m1["panoIds"], m2["panoIds"])
    np.testing.assert_array_equal(m1["utm"], m2["utm"])
    np.testing.assert_array_equal(m1["valSet"]["valInd"][0][0], m2["valSet"]["valInd"][0][0])
    other = _files(generate_world(tmp_path / "other", "cvact", 4, 2, seed=4, **SMALL))
    assert set(a.values()).isdisjoint(other.values())


def test_bytes_do_not_depend_on_worker_count(tmp_path: Path) -> None:
    kw = {"pano_size": (16, 32), "sat_size": 16}
    one = _files(generate_world(tmp_path / "w1", "folder", 8, 2, seed=1, workers=1, **kw))
    two = _files(generate_world(tmp_path / "w2", "folder", 8, 2, seed=1, workers=2, **kw))
    assert one == two and len(one) == 20


def test_cvusa_tree_and_band(worlds) -> None:
    root = worlds["cvusa"]
    train = (root / "splits" / "train-19zl.csv").read_text().splitlines()
    val = (root / "splits" / "val-19zl.csv").read_text().splitlines()
    assert len(train) == 4 and len(val) == 2
    sat, pano, ann = train[0].split(",")
    assert sat.startswith("bingmap/19/") and pano.startswith("streetview/panos/")
    assert ann.startswith("streetview/annotations/") and ann.endswith(".png")
    meta = json.loads((root / META_FILE).read_text())
    band = meta["panorama"]
    top, bottom = band["band_rows_in_full"]
    assert band["kind"] == "band" and band["full_size"] == [32, 64]
    assert band["top_elevation_deg"] == pytest.approx(90 - top / 32 * 180)
    assert band["bottom_elevation_deg"] == pytest.approx(90 - bottom / 32 * 180)
    assert band["top_elevation_deg"] > 0 > band["bottom_elevation_deg"]
    assert Image.open(root / pano).size == (64, bottom - top)
    assert Image.open(root / sat).size == (32, 32)


def test_cvact_mat_reads_like_the_real_one(worlds) -> None:
    from scipy.io import loadmat

    root = worlds["cvact"]
    mat = loadmat(root / "ACT_data.mat")
    ids = mat["panoIds"]
    assert ids.shape == (6,) and all(len(i) == 22 for i in ids)
    train_ind = mat["trainSet"]["trainInd"][0][0]
    val_ind = mat["valSet"]["valInd"][0][0]
    assert train_ind.shape == (4, 1) and val_ind.shape == (2, 1)
    # Sample4Geo indexes the struct positionally
    np.testing.assert_array_equal(mat["trainSet"][0][0][1], train_ind)
    assert sorted(np.concatenate([train_ind, val_ind]).ravel()) == [1, 2, 3, 4, 5, 6]
    assert mat["utm"].shape == (6, 2)
    for i in ids:
        assert (root / "ANU_data_small" / "streetview" / f"{i}_grdView.jpg").is_file()
        assert (root / "ANU_data_small" / "satview_polish" / f"{i}_satView_polish.jpg").is_file()
    pano = Image.open(root / "ANU_data_small" / "streetview" / f"{ids[0]}_grdView.jpg")
    assert pano.size == (64, 32)
    # utm is metric: neighbours are at least the minimum spacing apart
    utm = mat["utm"]
    d = np.hypot(*(utm[:, None, :] - utm[None, :, :]).transpose(2, 0, 1))
    assert d[~np.eye(6, dtype=bool)].min() >= TILE_EXTENT_M / 2 - 1e-6


def _vigor_lines(root: Path, name: str) -> list[list[str]]:
    return [
        line.split(" ") for line in (root / "splits" / "Chicago" / name).read_text().splitlines()
    ]


def test_vigor_labels_follow_the_real_convention(worlds) -> None:
    root = worlds["vigor"]
    tiles = (root / "splits" / "Chicago" / "satellite_list.txt").read_text().splitlines()
    assert tiles and all((root / "Chicago" / "satellite" / t).is_file() for t in tiles)
    train = _vigor_lines(root, "same_area_balanced_train.txt")
    test = _vigor_lines(root, "same_area_balanced_test.txt")
    assert len(train) == 4 and len(test) == 2
    assert len(_vigor_lines(root, "pano_label_balanced.txt")) == 6
    origin = (41.8781, -87.6298)
    s = 32
    for fields in train + test:
        assert len(fields) == 13
        pano = fields[0]
        assert (root / "Chicago" / "panorama" / pano).is_file()
        _, lat, lon, tail = pano.split(",")
        assert tail == ".jpg"
        px, py = latlon_to_metres(float(lat), float(lon), origin)
        names = fields[1::3]
        assert len(set(names)) == 4 and all(n in tiles for n in names)
        for k, name in enumerate(names):
            dy, dx = float(fields[2 + 3 * k]), float(fields[3 + 3 * k])
            tlat, tlon = (
                float(v) for v in name.removeprefix("satellite_").removesuffix(".png").split("_")
            )
            tx, ty = latlon_to_metres(tlat, tlon, origin)
            # (tile centre - panorama) along (north, east), in tile pixels
            assert dy == pytest.approx((ty - py) * s / TILE_EXTENT_M, abs=0.05)
            assert dx == pytest.approx((tx - px) * s / TILE_EXTENT_M, abs=0.05)
            limit = s / 4 if k == 0 else s / 2  # positive: the tile's central region
            assert abs(dy) <= limit + 0.05 and abs(dx) <= limit + 0.05


def test_folder_headings_roll_back_to_north(worlds, tmp_path: Path) -> None:
    import csv

    root = worlds["folder"]
    rows = list(csv.DictReader((root / "ground_meta.csv").open()))
    assert len(rows) == 6 and {r["split"] for r in rows} == {"train", "val"}
    pairs = list(csv.DictReader((root / "pairs.csv").open()))
    coords = {r["name"]: r for r in csv.DictReader((root / "satellite_coords.csv").open())}
    assert len(pairs) == 6 and all(p["satellite"] in coords for p in pairs)
    headings = [float(r["heading_deg"]) for r in rows]
    assert any(h != 0 for h in headings)
    for h in headings:  # whole columns of a 64-wide panorama
        assert (h / (360 / 64)) == pytest.approx(round(h / (360 / 64)))


def test_resume_and_refuse(tmp_path: Path, worlds) -> None:
    out = tmp_path / "run"
    generate_world(out, "cvusa", 3, 1, seed=5, **SMALL)
    before = _files(out)
    victim = out / sorted(before)[0]
    victim.unlink()
    generate_world(out, "cvusa", 3, 1, seed=5, **SMALL)  # same parameters: completes it
    assert _files(out) == before
    with pytest.raises(ConfigError, match="other parameters"):
        generate_world(out, "cvusa", 3, 1, seed=6, **SMALL)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        generate_world(foreign, "cvact", 3, 1, **SMALL)


def test_bad_parameters_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="format"):
        generate_world(tmp_path / "a", "kitti", 3, 1, **SMALL)
    with pytest.raises(ConfigError, match="cities"):
        generate_world(tmp_path / "b", "vigor", 3, 1, cities=["Paris"], **SMALL)
    with pytest.raises(ConfigError, match="n_train"):
        generate_world(tmp_path / "c", "cvact", 0, 0, **SMALL)


def test_latlon_round_trip() -> None:
    x, y = np.asarray([0.0, 1000.0, -250.0]), np.asarray([0.0, -400.0, 3000.0])
    lat, lon = metres_to_latlon(x, y, (41.8781, -87.6298))
    bx, by = latlon_to_metres(lat, lon, (41.8781, -87.6298))
    np.testing.assert_allclose(bx, x, atol=1e-6)
    np.testing.assert_allclose(by, y, atol=1e-6)
    assert lat[2] > lat[0] > lat[1] and lon[1] > lon[0] > lon[2]
    # one degree of latitude is about 111 km
    assert (lat[2] - lat[0]) * 111_320 == pytest.approx(3000, rel=0.01)
    assert math.isclose(lon[0], -87.6298)


@pytest.mark.parametrize("fmt", ["cvusa", "cvact", "vigor", "folder"])
def test_dataset_readers_load_every_format(worlds, fmt: str) -> None:
    from ucvgl.services.datasets import load_dataset

    ds = load_dataset(worlds[fmt], fmt)
    assert ds.report.ok, ds.report.summary()
    counts = ds.counts()
    val_split = "test" if fmt == "vigor" else "val"
    assert counts["train"]["ground"] == 4 and counts[val_split]["ground"] == 2
    assert counts["train"]["known_pairs"] == 4 and counts[val_split]["known_pairs"] == 2
    assert ds.panorama == ("band" if fmt == "cvusa" else "full")
    if fmt == "vigor":
        split = ds.split("train")
        tiles = (worlds[fmt] / "splits" / "Chicago" / "satellite_list.txt").read_text().split()
        assert split.num_satellite == len(tiles)
        assert split.semi_positives is not None and (split.semi_positives >= 0).all()
    else:
        assert counts["train"]["satellite"] == 4


def test_folder_loader_rolls_panoramas_to_north(worlds) -> None:
    """A panorama rendered with a heading, rolled back by the loader, equals its north render."""
    import csv

    from ucvgl.services.datasets import load_panorama
    from ucvgl.services.synth.city import CityConfig, build_city
    from ucvgl.services.synth.render import render_panorama
    from ucvgl.services.synth.writers import SynthSpec, make_writer

    root = worlds["folder"]
    spec = SynthSpec("folder", 4, 2, 3, (32, 64), 32)
    writer = make_writer(root, spec)
    chunk = writer.chunks()[0]
    city = build_city(chunk.count, np.random.default_rng([3, 0, 0]), CityConfig())
    tasks = [t for t in writer.chunk_tasks(chunk, city) if t.kind == "panorama"]
    meta = {
        r["name"]: float(r["heading_deg"])
        for r in csv.DictReader((root / "ground_meta.csv").open())
    }
    for task in tasks:
        name = task.path.removeprefix("ground/")
        assert meta[name] == pytest.approx(task.heading_deg)
        north = render_panorama(city.world, task.x, task.y, (32, 64)).astype(float)
        loaded = np.asarray(load_panorama(root / task.path, meta[name]), float)
        # same view up to the appearance change and JPEG: correlate per-pixel brightness
        a, b = north.mean(axis=2).ravel(), loaded.mean(axis=2).ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.8


class _CancelAfter:
    """A Progress that asks to stop after ``n`` checks."""

    def __init__(self, n: int) -> None:
        self.n, self.updates = n, []

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        self.updates.append(fraction)

    def check_cancelled(self) -> None:
        from ucvgl.shared.errors import JobCancelled

        self.n -= 1
        if self.n < 0:
            raise JobCancelled("stop")


def test_cancel_then_resume(tmp_path: Path) -> None:
    from ucvgl.shared.errors import JobCancelled

    out = tmp_path / "cancelled"
    progress = _CancelAfter(4)
    with pytest.raises(JobCancelled):
        generate_world(out, "folder", 5, 1, seed=2, progress=progress, **SMALL)
    partial = _files(out)
    assert 0 < len(partial) < 12
    assert not (out / "pairs.csv").exists()
    assert json.loads((out / META_FILE).read_text())["complete"] is False
    done = _CancelAfter(10_000)
    generate_world(out, "folder", 5, 1, seed=2, progress=done, **SMALL)
    assert len(_files(out)) == 12 and done.updates[-1] == 1.0
    assert all(a <= b for a, b in zip(done.updates, done.updates[1:], strict=False))
    assert json.loads((out / META_FILE).read_text())["complete"] is True
