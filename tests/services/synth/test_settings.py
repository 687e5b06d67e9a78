"""WorldSettings: the defaults reproduce the original world, and each knob changes what it
should (and nothing drawn at its default)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ucvgl.services.synth import META_FILE, WorldSettings, generate_world
from ucvgl.services.synth.city import CityConfig, build_city
from ucvgl.services.synth.generate import render_task_image
from ucvgl.services.synth.render import (
    TILE_EXTENT_M,
    panorama_look,
    render_panorama,
    render_satellite,
    satellite_look,
)
from ucvgl.services.synth.world import KIND_BUILDING, KIND_CAR, KIND_TREE, World
from ucvgl.services.synth.writers import SynthSpec, apply_gps_offset, make_writer
from ucvgl.shared.errors import ConfigError

SMALL = {"pano_size": (32, 64), "sat_size": 32, "workers": 1}

# Digests of every rendered image (pixels before JPEG, with their paths) of a 4 + 2 location
# world per format at seed 3, 32x64 panoramas, 32 px tiles, taken from the generator as it
# was before WorldSettings existed. Raw pixels, not files: a JPEG encoder upgrade does not
# change them (a numpy/Pillow change in resampling or float rounding could: then re-take
# them from the last commit before the knobs, 6ace2a1^).
ORIGINAL_DIGESTS = {
    "cvusa": ("0160627f9a1e7db91b169de5fc1d80c966b2506c816ad6142f7ab37538e0a8e5",),
    "cvact": ("8a74bd57248146b5e887f184ab64af6893b008df62717b2a0c81e1715fa83fc7",),
    "vigor": (
        "5d7e6b8712c4e9b5d3317387fd69feea1629c47dd6bb6291a206746929393d76",
        # the same code on an AMD EPYC machine (2026-12-06), most likely numpy's float
        # kernels taking another SIMD path on that CPU (VIGOR's file names carry float
        # coordinates); pillow 12.3/13.0 and numpy 2.3.5/2.4.6 gave this digest alike
        "52bbfa31b181e190ba787c1b594ca3968ac1ac3f5936723fad94597a974cd610",
    ),
    "folder": ("f097ed3a2bb778c1a13646587883045477c09e61eaa461ae735689af64980e8c",),
}
"""Accepted digests per format: one per CPU family seen where rendering differs in the
last float bits (any change of the generator at its defaults changes them all)."""


def _city(spec: SynthSpec):
    writer = make_writer(Path("/unused"), spec)
    chunk = writer.chunks()[0]
    rng = np.random.default_rng([spec.seed, chunk.group_index, chunk.index])
    city = build_city(chunk.count, rng, writer.city_config())
    return writer, chunk, city


def _render_all(spec: SynthSpec) -> tuple[str, dict[str, np.ndarray]]:
    writer = make_writer(Path("/unused"), spec)
    digest, images = hashlib.sha256(), {}
    for chunk in writer.chunks():
        rng = np.random.default_rng([spec.seed, chunk.group_index, chunk.index])
        city = build_city(chunk.count, rng, writer.city_config())
        for task in apply_gps_offset(writer.chunk_tasks(chunk, city), spec):
            img = render_task_image(city.world, task, spec)
            digest.update(task.path.encode())
            digest.update(img.tobytes())
            images[task.path] = img
    return digest.hexdigest(), images


def _spec(fmt: str = "cvact", world: WorldSettings | None = None, **kw) -> SynthSpec:
    cities = ("Chicago",) if fmt == "vigor" else ()
    return SynthSpec(
        fmt, 4, 2, 3, (32, 64), 32, cities=cities, world=world or WorldSettings(), **kw
    )


# --------------------------------------------------------------------------- defaults
@pytest.mark.parametrize("fmt", sorted(ORIGINAL_DIGESTS))
def test_defaults_render_the_original_pixels(fmt: str) -> None:
    digest, _ = _render_all(_spec(fmt))
    assert digest in ORIGINAL_DIGESTS[fmt]


def test_default_settings_are_recorded_and_explicit_defaults_are_equal(tmp_path: Path) -> None:
    explicit = WorldSettings(camera_height_m=2, tile_extent_m=None, scene_density=1)
    assert explicit == WorldSettings() and explicit.changed() == {}
    assert WorldSettings().tile_extent == pytest.approx(TILE_EXTENT_M, abs=0)
    assert WorldSettings().bev_fov_deg == 170.0
    root = generate_world(tmp_path / "w", "cvact", 4, 2, seed=3, world=explicit, **SMALL)
    meta = json.loads((root / META_FILE).read_text())
    assert meta["params"]["world"] == WorldSettings().params()
    assert meta["params"]["world"]["camera_height_m"] == 2.0
    assert meta["camera_height_m"] == 2.0 and meta["tile_extent_m"] == TILE_EXTENT_M
    assert meta["bev_fov_deg"] == 170.0 and meta["panorama"]["horizon_row"] == 16


def test_resume_compares_world_settings_and_accepts_older_meta(tmp_path: Path) -> None:
    out = generate_world(tmp_path / "w", "folder", 3, 1, seed=5, **SMALL)
    with pytest.raises(ConfigError, match="differing: world"):
        generate_world(out, "folder", 3, 1, seed=5, world=WorldSettings(gps_offset_m=1), **SMALL)
    # a folder written before the knobs existed has no params.world: it is the defaults
    meta_path = out / META_FILE
    meta = json.loads(meta_path.read_text())
    del meta["params"]["world"]
    meta_path.write_text(json.dumps(meta))
    generate_world(out, "folder", 3, 1, seed=5, **SMALL)
    assert "world" in json.loads(meta_path.read_text())["params"]


# --------------------------------------------------------------------------- validation
def test_from_dict_validates_names_and_values() -> None:
    s = WorldSettings.from_dict(
        {"camera_height_m": "2.5", "style": "FLAT", "record_geometry": "false", "tile_extent_m": 60}
    )
    assert s.camera_height_m == 2.5 and s.style == "flat" and s.record_geometry is False
    assert s.tile_extent_m == 60.0 and s.bev_fov_deg == pytest.approx(
        2 * math.degrees(math.atan(60 / 5))
    )
    assert WorldSettings.from_dict({"tile_extent_m": "auto"}).tile_extent_m is None
    with pytest.raises(ConfigError, match="unknown world knob wind.*allowed: camera_height_m"):
        WorldSettings.from_dict({"wind": 3})
    with pytest.raises(ConfigError, match="camera_height_m: expected a number"):
        WorldSettings.from_dict({"camera_height_m": "tall"})
    with pytest.raises(ConfigError, match="transient_prob must be a number in \\[0, 1\\]"):
        WorldSettings.from_dict({"transient_prob": 1.5})
    with pytest.raises(ConfigError, match="style must be one of textured, flat"):
        WorldSettings(style="cartoon")
    with pytest.raises(ConfigError, match="record_geometry: expected true or false"):
        WorldSettings.from_dict({"record_geometry": "maybe"})
    with pytest.raises(ConfigError, match="suburb_radius"):
        WorldSettings(downtown_radius=0.8, suburb_radius=0.5)
    with pytest.raises(ConfigError, match="camera_height_m: expected a number"):
        WorldSettings.from_dict({"camera_height_m": True})


# --------------------------------------------------------------------------- cameras
RED = (220, 20, 20)


def _red(img: np.ndarray) -> np.ndarray:
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return (r > 120) & (g < 90) & (b < 90)


def _box_world() -> World:
    world = World(200.0, 200.0, 0.25)
    world.add_box(96.0, 116.0, 104.0, 124.0, 14.0, RED, RED, windows=False)  # 16 m north
    return world.finalize()


def test_camera_height_lowers_the_foot_of_a_building_and_changes_only_panoramas() -> None:
    world, h = _box_world(), 180
    feet = []
    for camera in (2.0, 4.0):
        column = _red(render_panorama(world, 100.0, 100.0, (h, 2 * h), camera_height_m=camera))
        last = int(np.flatnonzero(column[:, h])[-1])
        feet.append(last)
        expected = (90.0 + math.degrees(math.atan(camera / 16.0))) / 180.0 * h
        assert abs(last - expected) <= 1.5
    assert feet[1] > feet[0] + 5
    # through the generator: the same city, satellite tiles unchanged, panoramas differ
    _, base = _render_all(_spec())
    tall_camera = WorldSettings(camera_height_m=3.5, tile_extent_m=TILE_EXTENT_M)
    _, tall = _render_all(_spec(world=tall_camera))
    for path, img in base.items():
        same = np.array_equal(img, tall[path])
        assert same == ("satView" in path), path


def test_pitch_moves_the_horizon_and_is_recorded(tmp_path: Path) -> None:
    world = World(400.0, 400.0, 0.5, ground_rgb=(90, 140, 60)).finalize()

    def horizon(pano: np.ndarray) -> int:  # first row that is ground (green over blue)
        col = pano[:, 0].astype(int)
        return int(np.flatnonzero(col[:, 1] > col[:, 2])[0])

    level = horizon(render_panorama(world, 200.0, 200.0, (90, 180)))
    up = horizon(render_panorama(world, 200.0, 200.0, (90, 180), pitch_deg=10.0))
    down = horizon(render_panorama(world, 200.0, 200.0, (90, 180), pitch_deg=-10.0))
    assert up - level == pytest.approx(5, abs=1) and level - down == pytest.approx(5, abs=1)
    root = generate_world(
        tmp_path / "p", "cvact", 3, 1, world=WorldSettings(camera_pitch_deg=10.0), **SMALL
    )
    meta = json.loads((root / META_FILE).read_text())
    assert meta["panorama"]["horizon_row"] == round(100 / 180 * 32)
    band = generate_world(
        tmp_path / "b", "cvusa", 3, 1, world=WorldSettings(camera_pitch_deg=10.0), **SMALL
    )
    info = json.loads((band / META_FILE).read_text())["panorama"]
    top = info["band_rows_in_full"][0]
    assert info["top_elevation_deg"] == pytest.approx(90 - top / 32 * 180 + 10)


def test_tile_extent_scales_the_satellite_view_and_vigor_offsets(tmp_path: Path) -> None:
    world = World(300.0, 300.0, 0.25)
    world.add_box(147.0, 165.0, 153.0, 171.0, 10.0, RED, RED, windows=False)  # 15..21 m north
    world.finalize()
    rows = {}
    for extent in (TILE_EXTENT_M, 91.6):
        r, _ = np.nonzero(_red(render_satellite(world, 150.0, 150.0, 64, extent_m=extent)))
        rows[extent] = 32 - r.mean()  # pixels above the centre
    assert rows[91.6] == pytest.approx(rows[TILE_EXTENT_M] * TILE_EXTENT_M / 91.6, rel=0.1)
    ws = WorldSettings(tile_extent_m=60.0)
    assert ws.bev_fov_deg == pytest.approx(2 * math.degrees(math.atan(15.0)))
    root = generate_world(tmp_path / "v", "vigor", 4, 2, seed=3, world=ws, **SMALL)
    meta = json.loads((root / META_FILE).read_text())
    assert meta["tile_extent_m"] == 60.0 and meta["vigor_grid_stride_m"] == 30.0
    assert meta["satellite"]["metres_per_pixel"] == pytest.approx(60.0 / 32)
    from ucvgl.services.synth.geo import latlon_to_metres

    origin = (41.8781, -87.6298)
    for line in (root / "splits/Chicago/pano_label_balanced.txt").read_text().splitlines():
        fields = line.split(" ")
        _, lat, lon, _ = fields[0].split(",")
        px, py = latlon_to_metres(float(lat), float(lon), origin)
        name, dy = fields[1], float(fields[2])
        tlat = float(name.removeprefix("satellite_").split("_")[0])
        _, ty = latlon_to_metres(tlat, float(lon), origin)
        assert dy == pytest.approx((ty - py) * 32 / 60.0, abs=0.05)


def test_gps_offset_moves_the_camera_not_the_recorded_location() -> None:
    spec = _spec("cvact", WorldSettings(gps_offset_m=1.5))
    writer, chunk, city = _city(spec)
    tasks = writer.chunk_tasks(chunk, city)
    moved = apply_gps_offset(tasks, spec)
    assert apply_gps_offset(tasks, _spec("cvact")) is tasks  # default: nothing drawn
    sats = {t.key[:2]: t for t in moved if t.kind == "satellite"}
    angles = []
    for before, after in zip(tasks, moved, strict=True):
        if after.kind == "satellite":
            assert after == before  # the tile stays centred on the recorded location
            continue
        tile = sats[after.key[:2]]
        assert (before.x, before.y) == (tile.x, tile.y)
        dx, dy = after.x - tile.x, after.y - tile.y
        assert math.hypot(dx, dy) == pytest.approx(1.5)
        angles.append(math.atan2(dx, dy))
    assert len(angles) == 6 and np.ptp(angles) > 0.5  # random directions per location
    again = apply_gps_offset(writer.chunk_tasks(chunk, city), spec)
    assert again == moved  # seeded
    # the recorded coordinates (CVACT utm) are the tile centres
    g = writer.global_xy(chunk, city, city.locations)
    offset = writer.utm[:6] - g
    np.testing.assert_allclose(offset, np.broadcast_to(offset[0], offset.shape), atol=1e-9)


def test_photometric_jitter_scales_the_spread_of_looks() -> None:
    img = np.full((32, 32, 3), 120, np.uint8)

    def spread(look, jitter: float) -> float:
        means = [look(img, np.random.default_rng(i), jitter).mean() for i in range(40)]
        return float(np.std(means))

    for look in (satellite_look, panorama_look):
        none, base, strong = spread(look, 0.0), spread(look, 1.0), spread(look, 2.5)
        assert none < 0.5 < base < strong
        assert strong > 1.8 * base


# --------------------------------------------------------------------------- the map
def _build(seed: int = 3, **knobs) -> World:
    return build_city(4, np.random.default_rng(seed), CityConfig(min_side_m=360.0, **knobs)).world


def _block_counts(fill, k: float) -> dict[int, int]:
    """Objects by kind that block function ``fill`` puts on a 120 m square, over 4 seeds."""
    counts = dict.fromkeys((KIND_BUILDING, KIND_TREE, KIND_CAR), 0)
    for seed in range(4):
        world = World(140.0, 140.0, 0.5)
        fill(world, (10.0, 10.0, 130.0, 130.0), np.random.default_rng(seed), k)
        kinds = np.asarray(world._kind)
        for kind in counts:
            counts[kind] += int((kinds == kind).sum())
    return counts


def test_scene_density_scales_buildings_trees_and_cars() -> None:
    from ucvgl.services.synth import city

    checks = [
        (city._houses, KIND_BUILDING),
        (city._houses, KIND_TREE),
        (city._downtown, KIND_BUILDING),
        (city._park, KIND_TREE),
        (city._parking, KIND_CAR),
    ]
    for fill, kind in checks:
        n = [_block_counts(fill, k)[kind] for k in (0.4, 1.0, 2.0)]
        assert n[0] < n[1] < n[2], (fill.__name__, kind, n)
    # street cars and trees along one road
    road = city.Road(0.0, 100.0, 300.0, 100.0, 9.0, False)
    per_k = []
    for k in (0.4, 1.0, 2.0):
        totals = np.zeros(4, int)
        for seed in range(6):
            world = World(300.0, 200.0, 0.5)
            rng = np.random.default_rng(seed)
            city._street_trees_and_cars(world, road, 300.0, np.zeros((0, 2)), rng, k)
            totals += np.bincount(np.asarray(world._kind), minlength=4)
        per_k.append(totals)
    assert per_k[0][KIND_CAR] < per_k[1][KIND_CAR] < per_k[2][KIND_CAR]
    assert per_k[0][KIND_TREE] < per_k[1][KIND_TREE] < per_k[2][KIND_TREE]
    # a whole map: more objects, though the land use of the blocks differs too
    totals = [
        sum(_build(seed, scene_density=k).num_objects for seed in (3, 5)) for k in (0.4, 1.0, 2.0)
    ]
    assert totals[0] < totals[1] < totals[2]


def test_land_use_radii_make_downtown_or_suburb() -> None:
    def towers(world: World) -> int:
        heights = np.zeros(len(world.kind))
        np.maximum.at(heights, world.obj.ravel(), world.height.ravel() * 0.125)
        return int(((world.kind == KIND_BUILDING) & (heights >= 12.0)).sum())

    suburb = towers(_build(downtown_radius=0.0, suburb_radius=1.5))
    base = towers(_build())
    downtown = towers(_build(downtown_radius=1.2, suburb_radius=1.5))
    assert downtown > 4 * max(base, 1) and suburb <= base


def test_flat_style_has_no_texture_and_another_palette() -> None:
    textured = build_city(4, np.random.default_rng(7), CityConfig()).world
    flat = build_city(4, np.random.default_rng(7), CityConfig(style="flat")).world
    np.testing.assert_array_equal(textured.obj, flat.obj)  # the same layout
    assert (flat.tex == 128).all()

    def smooth(world: World) -> float:  # how often neighbouring ground cells are equal
        g = world.ground
        return float((g[:, 1:] == g[:, :-1]).all(axis=2).mean())

    assert smooth(flat) > 0.9 and smooth(textured) < 0.6

    def n_colours(world: World) -> int:
        g = world.ground.reshape(-1, 3).astype(np.int32)
        return len(np.unique((g[:, 0] << 16) | (g[:, 1] << 8) | g[:, 2]))

    assert n_colours(flat) < n_colours(textured) / 10
    assert np.abs(flat.ground.astype(int) - textured.ground.astype(int)).mean() > 15
    x, y = 150.0, 150.0
    sat_t = render_satellite(textured, x, y, 64).astype(np.float32)
    sat_f = render_satellite(flat, x, y, 64).astype(np.float32)
    assert np.abs(np.diff(sat_f, axis=1)).mean() < np.abs(np.diff(sat_t, axis=1)).mean()


def test_texture_strength_scales_the_noise() -> None:
    base = build_city(4, np.random.default_rng(7), CityConfig()).world
    weak = build_city(4, np.random.default_rng(7), CityConfig(texture_strength=0.0)).world
    strong = build_city(4, np.random.default_rng(7), CityConfig(texture_strength=2.0)).world
    assert (weak.tex == 128).all()
    assert np.std(strong.tex.astype(float)) == pytest.approx(
        2 * np.std(base.tex.astype(float)), rel=0.1
    )


def test_sun_and_shadow_strength() -> None:
    def shadowed(config: CityConfig) -> World:
        return build_city(4, np.random.default_rng(7), config).world

    noon, low = (
        shadowed(CityConfig(sun_elevation_deg=80.0)),
        shadowed(CityConfig(sun_elevation_deg=20.0)),
    )
    assert low.shadow.mean() > 2 * noon.shadow.mean()
    east = shadowed(CityConfig(sun_azimuth_deg=90.0))
    west = shadowed(CityConfig(sun_azimuth_deg=270.0))
    assert (east.shadow != west.shadow).mean() > 0.01
    # shadows fall away from the sun: west of a tower when the sun is in the east
    world = World(100.0, 100.0, 0.25, sun_azimuth_deg=90.0, sun_elevation_deg=30.0)
    world.add_box(48.0, 48.0, 52.0, 52.0, 10.0, RED, RED, windows=False)
    world.finalize()
    rows, cols = np.nonzero(world.shadow)
    assert cols.mean() * 0.25 < 48.0
    # strength: how dark a shadowed cell is in the satellite view (6 m west of the tower)
    col = int(32 - 6.0 * 64 / TILE_EXTENT_M)
    grey = {}
    for strength in (0.0, 0.5, 0.9):
        w = World(100.0, 100.0, 0.25, sun_azimuth_deg=90.0, shadow_strength=strength)
        w.paint_rect(0, 0, 100, 100, (200, 200, 200))
        w.add_box(48.0, 48.0, 52.0, 52.0, 10.0, RED, RED, windows=False)
        grey[strength] = float(render_satellite(w.finalize(), 50.0, 50.0, 64)[32, col].mean())
    assert grey[0.0] == pytest.approx(200, abs=2)
    assert grey[0.5] == pytest.approx(100, abs=2)
    assert grey[0.9] == pytest.approx(20, abs=2)


def test_transient_cars_appear_in_one_view_only() -> None:
    base = _build()
    world = _build(transient_prob=0.5)
    np.testing.assert_array_equal(world.obj, base.obj)  # same map, only visibility differs
    assert base.sat_hidden is None and base.pano_hidden is None
    cars = world.kind == KIND_CAR
    hidden = world.sat_hidden | world.pano_hidden
    assert not (world.sat_hidden & world.pano_hidden).any()
    assert not hidden[~cars].any()
    assert 0.3 < hidden[cars].mean() < 0.7
    assert world.sat_hidden.any() and world.pano_hidden.any()
    # rendering: a car seen by the satellite only is missing from the panorama, and back
    for sat_only in (True, False):
        w = World(100.0, 100.0, 0.25, ground_rgb=(90, 140, 60))
        car = w.add_box(49.0, 56.0, 51.0, 60.0, 1.5, RED, RED, kind=KIND_CAR, windows=False)
        w.set_transient([car] if sat_only else [], [] if sat_only else [car])
        w.finalize()
        in_sat = _red(render_satellite(w, 50.0, 50.0, 64)).any()
        in_pano = _red(render_panorama(w, 50.0, 50.0, (64, 128))).any()
        assert (in_sat, in_pano) == (sat_only, not sat_only)


def test_record_geometry_false_leaves_the_geometry_out(tmp_path: Path) -> None:
    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.projection.defaults import bev_params_for_dataset

    hidden = WorldSettings(camera_height_m=2.5, tile_extent_m=60.0, record_geometry=False)
    shown = replace(hidden, record_geometry=True)
    fovs = {}
    for name, ws in (("hidden", hidden), ("shown", shown)):
        for fmt in ("cvact", "cvusa"):
            root = generate_world(tmp_path / f"{name}-{fmt}", fmt, 3, 1, world=ws, **SMALL)
            meta = json.loads((root / META_FILE).read_text())
            text = (root / META_FILE).read_text()
            if name == "hidden":
                for key in ("camera_height_m", "tile_extent_m", "bev_fov_deg", "panorama"):
                    assert key not in meta
                assert "2.5" not in text and "60.0" not in text
                assert "hidden_geometry" in meta["params"]["world"]
            else:
                assert meta["camera_height_m"] == 2.5 and meta["tile_extent_m"] == 60.0
            params = bev_params_for_dataset(load_dataset(root, fmt))
            fovs[name, fmt] = params.fov_deg
    assert fovs["hidden", "cvact"] == 170.0 and fovs["hidden", "cvusa"] == 175.0
    assert fovs["shown", "cvact"] == pytest.approx(2 * math.degrees(math.atan(12.0)))
    # a resume still notices a change of the hidden knobs (through the digest)
    other = replace(hidden, camera_height_m=2.0)
    with pytest.raises(ConfigError, match="differing: world"):
        generate_world(tmp_path / "hidden-cvact", "cvact", 3, 1, world=other, **SMALL)
