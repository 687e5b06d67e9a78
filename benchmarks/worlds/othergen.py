"""An independent generator of flat-shaded towns, for held-out evaluation only.

Written without reference to ``ucvgl.services.synth`` (it shares no code or parameters with
it): models tuned on the project's own generator are evaluated here on worlds made by a
different hand. Use it ONLY for held-out evaluation, never to train or tune.

Usage::

    python benchmarks/worlds/othergen.py --out DIR --layout cvact|cvusa \\
        --train 1000 --val 500 --seed 0 [--pano 256x512] [--tile 256] [--unrelated-tiles]

or ``generate(out, layout, n_train, n_val, seed, ...)`` from Python.

The world
    Each group of (up to) 10 locations (cameras at least ~15 m apart, in the driving lanes
    of the central 80 m) lives in its own 250 m x 250 m town "chunk", stored as 2-D grids
    at 0.2 m: a road network (a street grid, mostly in the city's orientation, with
    dropped streets and varying widths, plus diagonal and curved roads) with lane marks,
    zebra crossings, kerbs, sidewalks and street lights; land-use zones (paved plazas,
    lawns, parks, dry fields, parking lots with stall lines, concrete yards); buildings as
    extruded convex polygons (boxes, L shapes, irregular quads, towers on podiums,
    pitched-roof houses, rooftop boxes, garden hedges) with flat roof colours and facades
    of another colour with window bands; trees (trunk + ellipsoidal crown); parked cars
    and traffic. Urbanity varies per chunk, so some places are open, some dense.
    The two views were "captured" on different dates: a parked car is in both views with
    probability 0.7 and otherwise in only one of them (a car in both changes colour with
    probability 0.2); each moving car is in exactly one view; 30% of the roads were
    resurfaced (another asphalt shade from above); vegetation has another season's colour
    in each view; the sun (shading and cast shadows) differs.

The views (conventions of the public datasets)
    Ground: an equirectangular panorama from a camera 2 m above the road, north at the
    centre column, column u looking at azimuth (u + 0.5) / W * 360 - 180 degrees clockwise
    from north, row v at elevation 90 - (v + 0.5) / H * 180 (full layout, CVACT). Rendered
    by casting, per column, a ray through the height grid (2x2 supersampled), with a sky
    gradient, distance haze, ground colours from the map, cast shadows, object sides
    shaded by their orientation to the sun, and (half of the time) the camera rig at the
    nadir.
    CVUSA layout: only the horizon band is written, W x round(W * 224 / 1232) pixels,
    placed as CVUSA's strips are (strip centre 20 px above the horizon row of a 1232-wide
    2:1 canvas, scaled with W: elevations +38.5 .. -26.9 degrees), so that the project's
    default CVUSA band placement is right.
    Satellite: a north-up orthographic tile centred about 1.5 m (1 to 2 m, random
    direction) from the camera, with cast shadows, of side 2 * 2 m * tan(85 deg) = 45.72 m
    (CVACT: the default 170-degree BEV covers it exactly) or 2 * 2 m * tan(87.5 deg) =
    91.6 m (CVUSA, 175 degrees).
    Both views get an independent colour response (near-identity colour matrix,
    saturation), exposure, white balance and gamma jitter, sensor noise and JPEG
    compression (the tile also a slight blur and haze).

The layouts
    cvact: ``ACT_data.mat`` (panoIds, utm, trainSet.trainInd, valSet.valInd),
    ``ANU_data_small/streetview/<id>_grdView.jpg``,
    ``ANU_data_small/satview_polish/<id>_satView_polish.jpg``.
    cvusa: ``splits/train-19zl.csv``, ``splits/val-19zl.csv`` (lines
    ``bingmap/19/N.jpg,streetview/panos/N.jpg,streetview/annotations/N.png``),
    ``bingmap/19/N.jpg``, ``streetview/panos/N.jpg``.
    No ``synth_meta.json`` is written (a real dataset has none, so the project's readers
    use the format's default FOV). ``othergen_info.json`` records how the world was made.

``--unrelated-tiles`` renders every tile in a different town from its panorama (no true
pair exists), to check that failures are detected.

Deterministic from the seed (independent of the number of worker processes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

CELL = 0.2  # metres per grid cell
CHUNK_M = 250.0  # side of one town chunk in metres
N = int(round(CHUNK_M / CELL))  # cells per side
BOX = (85.0, 165.0)  # cameras lie in this central square (metres)
MAX_DIST = 80.0  # ray length (BOX +- MAX_DIST stays inside the chunk)
CAM_H = 2.0  # camera height in metres
PER_CHUNK = 10  # locations per town chunk
UTM_ORIGIN = (690_000.0, 6_090_000.0)  # easting, northing of chunk 0 (Canberra-like)
CHUNK_SPACING = 1000.0  # metres between chunk origins in the utm coordinates
CVUSA_STRIP = (1232, 224)  # CVUSA panorama strip size
CVUSA_OFFSET_PX = -20.0  # strip centre offset below the canvas centre on a 1232-wide canvas
LAYOUTS = {
    "cvact": {"tile_m": 2 * CAM_H * math.tan(math.radians(85.0))},  # 45.72 m
    "cvusa": {"tile_m": 2 * CAM_H * math.tan(math.radians(87.5))},  # 91.6 m
}

# zone types
DENSE, RESID, PARK, PARKING, FIELD, YARD = range(6)
# side kinds (how a facade is textured)
PLAIN, WIN_GRID, WIN_RIBBON, CAR = range(4)


@dataclass(frozen=True)
class Spec:
    """What to generate (picklable, sent to the workers)."""

    out: str
    layout: str
    n_train: int
    n_val: int
    seed: int
    pano_hw: tuple[int, int] = (256, 512)
    tile: int = 256
    unrelated_tiles: bool = False

    @property
    def tile_m(self) -> float:
        return LAYOUTS[self.layout]["tile_m"]

    def band(self) -> tuple[int, float, float] | None:
        """(strip height, top elevation, bottom elevation) for CVUSA, None for a full pano."""
        if self.layout != "cvusa":
            return None
        w = self.pano_hw[1]
        h = max(1, int(round(w * CVUSA_STRIP[1] / CVUSA_STRIP[0])))
        canvas_h = w / 2.0
        top_px = (canvas_h - h) / 2.0 + CVUSA_OFFSET_PX * w / CVUSA_STRIP[0]
        top = 90.0 - 180.0 * top_px / canvas_h
        bottom = 90.0 - 180.0 * (top_px + h) / canvas_h
        return h, top, bottom


# ----------------------------------------------------------------------------- geometry


def _noise_field(rng: np.random.Generator, coarse: int, size: int = N) -> np.ndarray:
    """Smooth value noise in [-1, 1], float32 [size, size] (bilinear upsampling)."""
    small = rng.uniform(-1, 1, (coarse, coarse)).astype(np.float32)
    img = Image.fromarray(small, mode="F").resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


@dataclass
class Raster:
    """A convex polygon rasterised on a crop of the grid."""

    sl: tuple[slice, slice]
    mask: np.ndarray  # bool [h, w], inside (grown by the margin)
    nx: np.ndarray  # outward normal of the nearest edge
    ny: np.ndarray
    depth: np.ndarray  # distance inside the polygon (negative outside)
    xs: np.ndarray  # cell centre x of the crop columns [w]
    ys: np.ndarray  # cell centre y of the crop rows [h]


def _raster(verts: np.ndarray, margin: float = 0.0) -> Raster | None:
    """Cells of a convex counter-clockwise polygon (metres), grown by ``margin``."""
    lo = verts.min(0) - margin - CELL
    hi = verts.max(0) + margin + CELL
    i0, j0 = max(int(lo[0] / CELL), 0), max(int(lo[1] / CELL), 0)
    i1, j1 = min(int(hi[0] / CELL) + 1, N), min(int(hi[1] / CELL) + 1, N)
    if i0 >= i1 or j0 >= j1:
        return None
    xs = ((np.arange(i0, i1) + 0.5) * CELL).astype(np.float32)
    ys = ((np.arange(j0, j1) + 0.5) * CELL).astype(np.float32)
    nrm = []
    dists = []
    for a, b in zip(verts, np.concatenate([verts[1:], verts[:1]]), strict=True):
        tx, ty = b[0] - a[0], b[1] - a[1]
        length = math.hypot(tx, ty)
        if length < 1e-6:
            continue
        onx, ony = ty / length, -tx / length  # outward normal of a ccw polygon
        nrm.append((onx, ony))
        dists.append((a[0] - xs[None, :]) * onx + (a[1] - ys[:, None]) * ony)
    stack = np.stack(dists)
    nearest = np.argmin(stack, axis=0)
    depth = np.take_along_axis(stack, nearest[None], axis=0)[0]
    nrm_a = np.asarray(nrm, np.float32)
    nx, ny = nrm_a[nearest, 0], nrm_a[nearest, 1]
    return Raster((slice(j0, j1), slice(i0, i1)), depth > -margin, nx, ny, depth, xs, ys)


def _rect(cx: float, cy: float, ang: float, length: float, width: float) -> np.ndarray:
    """Corners (ccw) of a rectangle whose length axis points at math angle ``ang``."""
    c, s = math.cos(ang), math.sin(ang)
    local = np.array(
        [[-length / 2, -width / 2], [length / 2, -width / 2], [length / 2, width / 2]]
        + [[-length / 2, width / 2]]
    )
    rot = np.array([[c, -s], [s, c]])
    return local @ rot.T + np.array([cx, cy])


# ----------------------------------------------------------------------------- the town


@dataclass
class Road:
    kind: str  # "line" or "arc"
    p: tuple[float, float]  # a point on the line / the arc centre
    ang: float  # line direction (math angle); unused for arcs
    radius: float  # arc radius
    width: float
    sidewalk: float
    asphalt: tuple[int, int, int]
    centre_colour: tuple[int, int, int]
    edge_lines: bool
    zebras: bool

    def coords(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(signed distance across, coordinate along) of points x, y (broadcast)."""
        if self.kind == "line":
            c, s = math.cos(self.ang), math.sin(self.ang)
            dx, dy = x - self.p[0], y - self.p[1]
            return -dx * s + dy * c, dx * c + dy * s
        dx, dy = x - self.p[0], y - self.p[1]
        rho = np.sqrt(dx * dx + dy * dy)
        return rho - self.radius, self.radius * np.arctan2(dy, dx)


@dataclass
class Car:
    x: float
    y: float
    ang: float
    length: float
    width: float
    height: float
    colour_ground: tuple[int, int, int]
    colour_sat: tuple[int, int, int]
    in_ground: bool
    in_sat: bool


@dataclass
class Town:
    top: np.ndarray  # uint8 [N, N, 3] colour seen from above (ground, roofs, car tops)
    height: np.ndarray  # float32 [N, N] opaque height
    wall: np.ndarray  # float32 [N, N] height where facades end (roofs above)
    side: np.ndarray  # uint8 [N, N, 3] facade colour
    kind: np.ndarray  # uint8 [N, N] facade texture (PLAIN, WIN_GRID, ...)
    nx: np.ndarray  # float16 [N, N] facade outward normal (0 = unknown)
    ny: np.ndarray
    ctop: np.ndarray  # float32 [N, N] tree crown top (0 = no crown)
    cbot: np.ndarray  # float32 [N, N] tree crown bottom
    crgb: np.ndarray  # uint8 [N, N, 3] crown colour
    cams: np.ndarray  # [n, 2] camera positions (metres in the chunk)
    cars: list[Car] = field(default_factory=list)
    sun_sat: tuple[float, float] = (135.0, 50.0)  # azimuth, elevation in degrees
    sun_ground: tuple[float, float] = (225.0, 40.0)  # the street view's (another day)
    mean_ground: np.ndarray | None = None
    sat_top: np.ndarray | None = None  # top/height with the satellite's cars
    sat_height: np.ndarray | None = None
    veg: np.ndarray | None = None  # bool [N, N] vegetated ground
    season: np.ndarray | None = None  # [3, 3] colour change of vegetation in the satellite
    season_ground: np.ndarray | None = None  # and in the street view (another date)


PALETTE_ROOF = [
    (92, 92, 96), (60, 62, 66), (150, 150, 148), (170, 88, 62), (132, 74, 56),
    (200, 200, 196), (96, 112, 120), (110, 100, 86), (76, 90, 72), (182, 170, 150),
]  # fmt: skip
PALETTE_FACADE = [
    (214, 204, 184), (236, 232, 222), (168, 84, 66), (150, 150, 152), (222, 200, 150),
    (190, 180, 170), (120, 110, 100), (200, 170, 140), (170, 190, 200), (230, 220, 200),
]  # fmt: skip
PALETTE_CAR = [
    (235, 235, 235), (30, 30, 34), (170, 172, 176), (110, 112, 118), (170, 30, 32),
    (30, 60, 140), (30, 80, 50), (200, 190, 160), (220, 150, 30), (90, 40, 30),
]  # fmt: skip


def _jitter(rng: np.random.Generator, colour, amount: float = 12.0) -> np.ndarray:
    c = np.asarray(colour, np.float32) + rng.normal(0, amount, 3)
    return np.clip(c, 0, 255).astype(np.float32)


def _make_roads(rng: np.random.Generator, urb: float, grid: float) -> tuple[list[Road], float]:
    # most quarters follow the city's street grid, some have their own orientation
    theta = grid if rng.random() < 0.7 else float(rng.uniform(0, math.pi / 2))
    mid = CHUNK_M / 2
    roads: list[Road] = []

    def new_road(kind, p, ang, radius=0.0, major=False) -> Road:
        width = float(rng.choice([5.5, 6.5, 7.5, 9.0, 11.0, 13.0, 15.0]))
        if major:
            width = max(width, 9.0)
        rural = rng.random() < 0.35 * (1 - urb)
        sidewalk = 0.0 if rural else float(rng.uniform(1.5, 2.0 + 2.5 * urb))
        grey = rng.uniform(66, 92)
        asphalt = tuple(int(v) for v in np.clip(grey + rng.normal(0, 4, 3), 0, 255))
        centre = (235, 235, 230) if rng.random() < 0.6 else (225, 190, 60)
        return Road(
            kind, p, ang, radius, width, sidewalk, asphalt, centre,
            edge_lines=bool(rng.random() < 0.5), zebras=bool(rng.random() < 0.6),
        )  # fmt: skip

    for axis in (0, 1):
        ang = theta + axis * math.pi / 2
        nrm = (-math.sin(ang), math.cos(ang))
        spacing = float(rng.uniform(45, 100) - 15 * urb)
        first = float(rng.uniform(-20, 20))
        drop = 0.15 + 0.35 * (1 - urb)
        for k in range(-4, 5):
            off = first + k * spacing + (rng.uniform(-8, 8) if k else 0.0)
            if abs(off) > CHUNK_M * 0.72 or (k and rng.random() < drop):
                continue
            p = (mid + off * nrm[0], mid + off * nrm[1])
            roads.append(new_road("line", p, ang, major=(k == 0)))
    if rng.random() < 0.55:
        ang = theta + math.pi / 4 + float(rng.uniform(-0.35, 0.35))
        p = (mid + rng.uniform(-35, 35), mid + rng.uniform(-35, 35))
        roads.append(new_road("line", p, ang))
    if rng.random() < 0.5:
        radius = float(rng.uniform(55, 220))
        a = float(rng.uniform(0, 2 * math.pi))
        dist = radius + float(rng.uniform(-30, 30))
        centre = (mid + dist * math.cos(a), mid + dist * math.sin(a))
        roads.append(new_road("arc", centre, 0.0, radius))
    return roads, theta


def _zones(rng: np.random.Generator, urb: float) -> tuple[np.ndarray, np.ndarray]:
    """Zone type per cell (Voronoi of random seeds, 1 m resolution) and each zone's colour."""
    n_seeds = int(rng.integers(18, 32))
    seeds = rng.uniform(0, CHUNK_M, (n_seeds, 2))
    weights = np.array([0.05 + 0.6 * urb, 0.35, 0.2, 0.08 + 0.12 * urb, 0.3 * (1 - urb), 0.08])
    types = rng.choice(6, n_seeds, p=weights / weights.sum())
    coarse = N // 5
    g = (np.arange(coarse) + 0.5) * (CHUNK_M / coarse)
    g = g.astype(np.float32)
    warp = _noise_field(rng, 6, coarse) * 12.0
    d = (g[None, :, None] + warp[:, :, None] - seeds[:, 0]) ** 2 + (
        g[:, None, None] - warp.T[:, :, None] - seeds[:, 1]
    ) ** 2
    label = np.argmin(d, axis=2)
    base = {
        DENSE: [(168, 164, 156), (186, 178, 160), (150, 150, 150)],
        RESID: [(86, 124, 62), (100, 132, 70), (76, 112, 58)],
        PARK: [(70, 118, 52), (82, 128, 60), (96, 136, 66)],
        PARKING: [(80, 80, 82), (92, 90, 88)],
        FIELD: [(160, 148, 98), (142, 124, 86), (128, 130, 80)],
        YARD: [(148, 146, 140), (130, 126, 118)],
    }
    colours = np.stack([_jitter(rng, base[t][int(rng.integers(len(base[t])))], 5) for t in types])

    # upsample 5x with dithered coordinates: ragged zone edges instead of 1 m stairs
    jit = rng.integers(-3, 4, (2, N, N))
    rows = np.clip((np.arange(N)[:, None] + jit[0]) // 5, 0, coarse - 1)
    cols = np.clip((np.arange(N)[None, :] + jit[1]) // 5, 0, coarse - 1)
    fine = label[rows, cols]
    return types[fine].astype(np.uint8), colours[fine]


def city_grid_angle(seed: int) -> float:
    """The orientation (radians) of the street grid shared by most quarters of a world."""
    rng = np.random.default_rng([seed, 424242])
    return 0.0 if rng.random() < 0.5 else float(rng.uniform(0, math.pi / 2))


def _build_town(rng: np.random.Generator, n_cams: int, grid: float = 0.0) -> Town:
    urb = float(rng.beta(1.3, 1.3))
    xs = ((np.arange(N) + 0.5) * CELL).astype(np.float32)
    X, Y = xs[None, :], xs[:, None]
    roads, theta = _make_roads(rng, urb, grid)

    zone, ground = _zones(rng, urb)
    tex = _noise_field(rng, 25) * 0.10 + _noise_field(rng, 90) * 0.05
    ground *= (1.0 + tex)[..., None]
    ground += rng.normal(0, 3.0, (N, N, 1)).astype(np.float32)

    # parking stall lines, in the grid's frame
    c, s = math.cos(theta), math.sin(theta)
    u = X * c + Y * s
    v = -X * s + Y * c
    vm = np.mod(v, 17.0)
    stall_row = (vm < 5.2) | (vm >= 11.8)
    stall_line = stall_row & (np.mod(u, 2.6) < 0.14) & (zone == PARKING)
    ground[stall_line] = (225, 225, 220)
    del u, v, vm, stall_row, stall_line

    # roads, kerbs, sidewalks
    count = np.zeros((N, N), np.uint8)
    near = np.zeros((N, N), bool)
    kerb = np.zeros((N, N), bool)
    lane = np.zeros((N, N), bool)
    sidewalk_colour = _jitter(rng, (196, 192, 184) if rng.random() < 0.7 else (176, 166, 150), 5)
    on_cells = []
    flat_ground = ground.reshape(-1, 3)
    flat_tex = tex.ravel()
    for r in roads:
        dn, _ = r.coords(X, Y)
        ad = np.abs(dn)
        on = ad < r.width / 2
        count += on
        lane |= ad < r.width / 2 - 1.8
        if r.sidewalk > 0:
            near |= ad < r.width / 2 + r.sidewalk
            kerb |= (ad >= r.width / 2) & (ad < r.width / 2 + 0.3)
        else:
            near |= ad < r.width / 2 + 0.6  # gravel verge
        idx = np.flatnonzero(on)
        on_cells.append(idx)
        asphalt = np.asarray(r.asphalt, np.float32)
        flat_ground[idx] = asphalt * (1.0 + flat_tex[idx, None] * 0.6)
    road_any = count > 0
    walk = near & ~road_any
    ground[walk] = sidewalk_colour * (1.0 + tex[walk, None] * 0.3)
    kerb &= ~road_any
    ground[kerb] = sidewalk_colour * 1.08
    single = count == 1
    for r, idx in zip(roads, on_cells, strict=True):
        idx = idx[single.ravel()[idx]]  # marks stop at intersections
        dn, sa = r.coords(xs[idx % N], xs[idx // N])
        ad = np.abs(dn)
        paint = np.zeros(len(idx), bool)
        white = np.zeros(len(idx), bool)
        if r.width >= 6.4:
            dash = np.mod(sa, 9.0) < 4.5 if r.width < 12 else True
            paint |= (ad < 0.08) & dash
        if r.width >= 11:
            white |= (np.abs(ad - r.width / 4) < 0.07) & (np.mod(sa, 9.0) < 3.0)
        if r.edge_lines:
            white |= np.abs(ad - (r.width / 2 - 0.35)) < 0.07
        if r.zebras and r.kind == "line":
            stripes = np.mod(dn, 1.0) < 0.5
            for o in roads:
                if o is r or o.kind != "line":
                    continue
                sn = math.sin(o.ang - r.ang)
                if abs(sn) < 0.3:
                    continue
                # along-coordinate on r where it crosses the other road's centre line
                dx, dy = o.p[0] - r.p[0], o.p[1] - r.p[1]
                oc, os_ = math.cos(o.ang), math.sin(o.ang)
                t = (dx * os_ - dy * oc) / (math.cos(r.ang) * os_ - math.sin(r.ang) * oc)
                gap = o.width / 2 / abs(sn) + o.sidewalk + 0.8
                band = np.abs(np.abs(sa - t) - gap - 1.5) < 1.5
                white |= band & stripes
        flat_ground[idx[paint]] = r.centre_colour
        flat_ground[idx[white]] = (232, 232, 228)

    top = np.clip(ground, 0, 255).astype(np.uint8)
    del ground
    height = np.zeros((N, N), np.float32)
    height[kerb] = 0.15
    wall = height.copy()
    side = np.zeros((N, N, 3), np.uint8)
    side[kerb] = np.clip(sidewalk_colour * 0.9, 0, 255).astype(np.uint8)
    kind = np.zeros((N, N), np.uint8)
    nx = np.zeros((N, N), np.float16)
    ny = np.zeros((N, N), np.float16)
    town = Town(
        top, height, wall, side, kind, nx, ny,
        ctop=np.zeros((N, N), np.float32), cbot=np.zeros((N, N), np.float32),
        crgb=np.zeros((N, N, 3), np.uint8), cams=np.zeros((0, 2)),
    )  # fmt: skip
    sun_az = float(rng.uniform(0, 360))
    sun_el = float(rng.uniform(35, 70))
    town.sun_sat = (sun_az, sun_el)
    town.sun_ground = (float(rng.uniform(0, 360)), float(rng.uniform(25, 65)))

    # cameras: in driving lanes inside the central box, spread out
    town.cams = _place_cameras(rng, lane, n_cams)
    occ = near | road_any
    town.veg = np.isin(zone, (RESID, PARK, FIELD)) & ~occ
    town.season = _season(rng)
    town.season_ground = _season(rng)
    _place_buildings(rng, town, zone, occ, theta, roads, urb)
    _place_trees(rng, town, zone, occ, roads)
    _place_poles(rng, town, roads)
    town.mean_ground = top.reshape(-1, 3)[::97].mean(0)
    town.cars = _place_cars(rng, town, zone, roads, single, theta)
    # the satellite's cars go into copies; the ground's into the town itself
    town.sat_top, town.sat_height = top.copy(), height.copy()
    sat_flat = town.sat_top.reshape(-1, 3)
    for idx in on_cells:  # roads resurfaced (or worn) between the two captures
        if rng.random() < 0.3:
            gain = np.float32(rng.uniform(0.7, 1.35))
            sat_flat[idx] = np.clip(sat_flat[idx] * gain, 0, 255).astype(np.uint8)
    for car in town.cars:
        if car.in_sat:
            _draw_car(town, car, car.colour_sat, town.sat_top, town.sat_height, full=False)
        if car.in_ground:
            _draw_car(town, car, car.colour_ground, town.top, town.height, full=True)
    return town


def _season(rng: np.random.Generator) -> np.ndarray:
    """How vegetation looks different in the satellite image (another season or year)."""
    u = rng.random()
    if u < 0.35:
        gains = (1.0, 1.0, 1.0)
    elif u < 0.6:  # dry summer: yellow-brown grass
        gains = (1.35, 1.1, 0.8)
    elif u < 0.8:  # lush: deeper green
        gains = (0.8, 1.05, 0.8)
    else:  # autumn / winter: brown, dull
        gains = (1.2, 0.95, 0.85)
    m = np.diag(gains) + rng.normal(0, 0.03, (3, 3))
    grey = np.full((3, 3), 1 / 3)
    sat = float(rng.uniform(0.75, 1.1))
    return (m @ (grey + sat * (np.eye(3) - grey))).astype(np.float32)


def _place_poles(rng: np.random.Generator, town: Town, roads: list[Road]) -> None:
    """Street lights / sign posts on the sidewalks: thin in the sky, dots from above."""
    grey = np.array([110, 112, 115], np.uint8)
    for r in roads:
        if r.kind != "line" or r.sidewalk <= 0 or rng.random() < 0.3:
            continue
        c, s = math.cos(r.ang), math.sin(r.ang)
        step = float(rng.uniform(18, 32))
        pole_h = float(rng.uniform(5.5, 8.5))
        for side in (-1, 1):
            off = side * (r.width / 2 + 0.6)
            t0 = float(rng.uniform(0, step))
            for t in np.arange(-CHUNK_M + t0, CHUNK_M, step):
                x, y = r.p[0] + t * c - off * s, r.p[1] + t * s + off * c
                if not (0 < x < CHUNK_M and 0 < y < CHUNK_M):
                    continue
                j, i = int(y / CELL), int(x / CELL)
                if town.height[j, i] > 0.2:
                    continue
                town.height[j, i] = town.wall[j, i] = pole_h
                town.top[j, i] = town.side[j, i] = grey
                town.kind[j, i] = PLAIN
                town.nx[j, i] = town.ny[j, i] = 0


def _place_cameras(rng: np.random.Generator, lane: np.ndarray, n: int) -> np.ndarray:
    lo, hi = int(BOX[0] / CELL), int(BOX[1] / CELL)
    jj, ii = np.nonzero(lane[lo:hi, lo:hi])
    if len(jj) == 0:  # no road in the box: stand anywhere in it
        pts = rng.uniform(BOX[0], BOX[1], (n, 2))
        return pts
    cand = np.stack([(ii + lo + 0.5) * CELL, (jj + lo + 0.5) * CELL], axis=1)
    order = rng.permutation(len(cand))[:4000]
    cand = cand[order]
    for spacing in (15.0, 10.0, 6.0, 3.0, 0.0):
        chosen: list[np.ndarray] = []
        for p in cand:
            if all(np.hypot(*(p - q)) >= spacing for q in chosen):
                chosen.append(p)
                if len(chosen) == n:
                    break
        if len(chosen) == n:
            break
    pts = np.asarray(chosen, dtype=np.float64)
    return pts + rng.uniform(-CELL / 2, CELL / 2, pts.shape)


def _zone_at(zone: np.ndarray, x: float, y: float) -> int:
    i = min(max(int(x / CELL), 0), N - 1)
    j = min(max(int(y / CELL), 0), N - 1)
    return int(zone[j, i])


def _write_part(
    town: Town, ras: Raster, h: float, roof, facade, kind: int, pitched: tuple | None = None
) -> None:
    m = ras.mask
    sl = ras.sl
    if pitched is None:
        town.height[sl][m] = h
        town.wall[sl][m] = h
        town.top[sl][m] = roof
    else:  # (cx, cy, ang, half width, rise): ridge along the length axis
        cx, cy, ang, half, rise = pitched
        across = -(ras.xs[None, :] - cx) * math.sin(ang) + (ras.ys[:, None] - cy) * math.cos(ang)
        roof_h = h + rise * np.clip(1 - np.abs(across) / half, 0, 1)
        town.height[sl][m] = roof_h[m]
        town.wall[sl][m] = h
        shade = np.where(across >= 0, 1.0, 0.78)[..., None]
        town.top[sl][m] = np.clip(np.asarray(roof, np.float32) * shade, 0, 255).astype(np.uint8)[m]
    town.side[sl][m] = facade
    town.kind[sl][m] = kind
    town.nx[sl][m] = ras.nx[m]
    town.ny[sl][m] = ras.ny[m]


def _place_buildings(rng, town: Town, zone, occ, theta: float, roads, urb: float) -> None:
    diag = [r.ang for r in roads if r.kind == "line" and abs(math.sin(2 * (r.ang - theta))) > 0.3]
    lo, hi = 1.0, CHUNK_M - 1.0
    attempts = int(500 + 900 * urb)
    for _ in range(attempts):
        x, y = rng.uniform(lo, hi, 2)
        z = _zone_at(zone, x, y)
        if z in (PARK, PARKING, FIELD) and rng.random() > 0.04:
            continue
        ang = theta + (math.pi / 2) * int(rng.integers(4))
        if diag and rng.random() < 0.15:
            ang = float(rng.choice(diag))
        elif rng.random() < 0.1:
            ang = float(rng.uniform(0, math.pi))
        roof = _jitter(rng, PALETTE_ROOF[int(rng.integers(len(PALETTE_ROOF)))], 10)
        facade = _jitter(rng, PALETTE_FACADE[int(rng.integers(len(PALETTE_FACADE)))], 10)
        wkind = WIN_GRID if rng.random() < 0.7 else WIN_RIBBON
        parts: list[tuple[np.ndarray, float, tuple | None, np.ndarray]] = []
        if z == DENSE or (z == YARD and rng.random() < 0.5):
            length, width = rng.uniform(12, 38), rng.uniform(10, 24)
            h = float(rng.uniform(8, 16) + rng.exponential(8 * urb + 2))
            if z == YARD:
                h = float(rng.uniform(5, 10))
                wkind = WIN_RIBBON
            margin = 0.4
            shape = rng.random()
            base = _rect(x, y, ang, length, width)
            if shape < 0.15:  # irregular quad
                base = base + rng.uniform(-1.5, 1.5, base.shape)
                parts.append((base, h, None, roof))
            elif shape < 0.4:  # L shape
                parts.append((base, h, None, roof))
                c, s = math.cos(ang), math.sin(ang)
                l2, w2 = rng.uniform(8, 18), rng.uniform(8, 16)
                ox, oy = length / 2 - l2 / 2, width / 2 + w2 / 2 - 0.5
                h2 = h if rng.random() < 0.5 else float(rng.uniform(6, h + 10))
                cx2, cy2 = x + ox * c - oy * s, y + ox * s + oy * c
                parts.append((_rect(cx2, cy2, ang, l2, w2), h2, None, roof))
            elif shape < 0.6:  # tower on a podium
                podium = float(rng.uniform(4, 8))
                parts.append((base, podium, None, _jitter(rng, roof, 15)))
                tl, tw = length * rng.uniform(0.4, 0.7), width * rng.uniform(0.4, 0.8)
                parts.append((_rect(x, y, ang, tl, tw), h + rng.uniform(5, 25), None, roof))
            else:
                parts.append((base, h, None, roof))
            if rng.random() < 0.6:  # rooftop boxes (plant rooms, AC units)
                top_h = max(p[1] for p in parts)
                for _k in range(int(rng.integers(1, 4))):
                    bx = x + rng.uniform(-0.25, 0.25) * min(length, width)
                    by = y + rng.uniform(-0.25, 0.25) * min(length, width)
                    bl, bw = rng.uniform(1.5, 5), rng.uniform(1.5, 4)
                    grey = _jitter(rng, (120, 120, 122), 20)
                    parts.append(
                        (_rect(bx, by, ang, bl, bw), top_h + rng.uniform(1, 3), "box", grey)
                    )
        else:  # houses, sheds
            small = z in (PARK, PARKING, FIELD)
            length = rng.uniform(4, 7) if small else rng.uniform(8, 15)
            width = rng.uniform(3, 5) if small else rng.uniform(7, 11)
            h = float(rng.uniform(2.5, 3.5) if small else rng.uniform(3, 6.5))
            margin = 1.5 if not small else 1.0
            base = _rect(x, y, ang, length, width)
            pitched = None
            if rng.random() < 0.7:
                pitched = (x, y, ang, width / 2, float(rng.uniform(1.0, 3.0)))
            parts.append((base, h, pitched, roof))
            if z == RESID and rng.random() < 0.5:  # a hedge around the garden
                grow = float(rng.uniform(2.5, 5.0))
                garden = _rect(x, y, ang, length + 2 * grow, width + 2 * grow)
                parts.append((garden, float(rng.uniform(0.9, 1.6)), "hedge", None))
        solid = [p[0] for p in parts if p[2] not in ("box", "hedge")]
        pts = np.concatenate(solid + [np.array([[x, y]])])  # cheap early rejection
        pi = np.clip((pts / CELL).astype(np.int64), 0, N - 1)
        if occ[pi[:, 1], pi[:, 0]].any():
            continue
        ras_all = [_raster(verts, margin) for verts in solid]
        if any(r is None for r in ras_all):
            continue
        if any(np.any(occ[r.sl][r.mask]) for r in ras_all):
            continue
        for r in ras_all:
            inner = r.depth > -(margin - 0.01) if margin > 0.6 else r.mask
            occ[r.sl][inner] = True
        for verts, h, extra, colour in sorted(parts, key=lambda p: p[1]):
            ras = _raster(verts)
            if ras is None:
                continue
            if extra == "hedge":
                _write_hedge(rng, town, ras, h, occ)
            elif extra == "box":
                _write_part(town, ras, h, colour, colour, PLAIN)
            else:
                _write_part(town, ras, h, colour, facade, wkind, extra)


def _write_hedge(rng, town: Town, ras: Raster, h: float, occ: np.ndarray) -> None:
    """A 0.6 m thick hedge along the inside of ``ras``'s edge, where the ground is free."""
    ring = (ras.depth > 0) & (ras.depth < 0.6) & ~occ[ras.sl] & (town.height[ras.sl] < 0.01)
    if not ring.any():
        return
    leaf = _jitter(rng, (58, 96, 46), 10)
    tex = 1.0 + rng.normal(0, 0.08, ring.shape)
    col = np.clip(leaf[None, None, :] * tex[..., None], 0, 255).astype(np.uint8)
    town.height[ras.sl][ring] = h
    town.wall[ras.sl][ring] = h
    town.top[ras.sl][ring] = col[ring]
    town.side[ras.sl][ring] = np.clip(col[ring] * 0.85, 0, 255).astype(np.uint8)
    town.kind[ras.sl][ring] = PLAIN
    town.nx[ras.sl][ring] = ras.nx[ring]
    town.ny[ras.sl][ring] = ras.ny[ring]
    occ[ras.sl][ring] = True


def _draw_tree(town: Town, rng, x: float, y: float, occ, dome_sun) -> None:
    r = float(rng.uniform(1.6, 4.2))
    base = float(rng.uniform(2.6, 4.0))
    semi = r * float(rng.uniform(0.7, 1.0))
    leaf = _jitter(rng, [(52, 92, 40), (66, 104, 44), (44, 78, 38), (80, 110, 52)][rng.integers(4)])
    i0, i1 = max(int((x - r) / CELL), 0), min(int((x + r) / CELL) + 1, N)
    j0, j1 = max(int((y - r) / CELL), 0), min(int((y + r) / CELL) + 1, N)
    if i0 >= i1 or j0 >= j1:
        return
    dx = ((np.arange(i0, i1) + 0.5) * CELL - x)[None, :] / r
    dy = ((np.arange(j0, j1) + 0.5) * CELL - y)[:, None] / r
    q2 = dx * dx + dy * dy
    inside = q2 < 1
    zc = base + semi
    hz = semi * np.sqrt(np.clip(1 - q2, 0, 1))
    sl = (slice(j0, j1), slice(i0, i1))
    old_top, old_bot = town.ctop[sl], town.cbot[sl]
    new_top = np.where(inside, np.maximum(old_top, zc + hz), old_top)
    bot = np.where(old_top > 0, np.minimum(old_bot, zc - hz), zc - hz)
    new_bot = np.where(inside, bot, old_bot)
    town.ctop[sl] = new_top
    town.cbot[sl] = new_bot
    nz = np.sqrt(np.clip(1 - q2, 0, 1))
    lam = np.clip(dx * dome_sun[0] + dy * dome_sun[1] + nz * dome_sun[2], 0, 1)
    shade = 0.55 + 0.6 * lam + rng.normal(0, 0.06, lam.shape)
    col = np.clip(leaf[None, None, :] * shade[..., None], 0, 255).astype(np.uint8)
    town.crgb[sl][inside] = col[inside]
    # trunk
    tr = float(rng.uniform(0.15, 0.3))
    tm = q2 * r * r < tr * tr
    if not tm.any():
        jm, im = int(y / CELL) - j0, int(x / CELL) - i0
        if 0 <= jm < tm.shape[0] and 0 <= im < tm.shape[1]:
            tm[jm, im] = True
    bark = np.array([92, 70, 52], np.uint8)
    town.height[sl][tm] = base + 0.5
    town.wall[sl][tm] = base + 0.5
    town.top[sl][tm] = bark
    town.side[sl][tm] = bark
    town.kind[sl][tm] = PLAIN
    nrm = np.sqrt(q2) + 1e-6
    town.nx[sl][tm] = (dx / nrm)[tm]
    town.ny[sl][tm] = (dy / nrm)[tm]
    occ[sl][q2 * r * r < 1.0] = True


def _place_trees(rng, town: Town, zone, occ, roads) -> None:
    az, el = (math.radians(a) for a in town.sun_sat)
    dome_sun = (math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el))
    # street trees on wide sidewalks
    for r in roads:
        if r.kind != "line" or r.sidewalk < 1.5 or rng.random() < 0.2:
            continue
        c, s = math.cos(r.ang), math.sin(r.ang)
        step = float(rng.uniform(7, 13))
        for side in (-1, 1):
            off = side * (r.width / 2 + r.sidewalk * 0.6)
            for t in np.arange(-CHUNK_M, CHUNK_M, step):
                x = r.p[0] + t * c - off * s
                y = r.p[1] + t * s + off * c
                if not (0 < x < CHUNK_M and 0 < y < CHUNK_M) or rng.random() < 0.15:
                    continue
                j, i = int(y / CELL), int(x / CELL)
                if town.height[j, i] > 0 or town.ctop[j, i] > 0:
                    continue
                _draw_tree(town, rng, x, y, occ, dome_sun)
    density = {PARK: 1 / 70, RESID: 1 / 150, FIELD: 1 / 400, DENSE: 1 / 1500, YARD: 1 / 3000}
    n = int(rng.poisson(CHUNK_M**2 * density[PARK]))  # thinned per zone below
    pts = rng.uniform(2, CHUNK_M - 2, (n, 2))
    for x, y in pts:
        z = _zone_at(zone, x, y)
        if rng.random() > density.get(z, 0) / density[PARK]:
            continue
        j, i = int(y / CELL), int(x / CELL)
        if occ[max(j - 5, 0) : j + 6, max(i - 5, 0) : i + 6].any():
            continue
        _draw_tree(town, rng, x, y, occ, dome_sun)


def _place_cars(rng, town: Town, zone, roads, single, theta: float) -> list[Car]:
    cars: list[Car] = []
    taken = np.zeros((N, N), bool)
    for cam in town.cams:  # keep the camera's own spot clear
        j, i = int(cam[1] / CELL), int(cam[0] / CELL)
        taken[max(j - 17, 0) : j + 18, max(i - 17, 0) : i + 18] = True

    def try_car(x, y, ang, need_road: bool, traffic: bool = False) -> None:
        van = rng.random() < 0.12
        length = float(rng.uniform(5.0, 5.6) if van else rng.uniform(3.9, 4.8))
        width = float(rng.uniform(1.75, 2.0))
        height = float(rng.uniform(1.9, 2.3) if van else rng.uniform(1.35, 1.6))
        ras = _raster(_rect(x, y, ang, length, width), 0.2)
        if ras is None or ras.mask.sum() == 0:
            return
        m = ras.mask
        if taken[ras.sl][m].any() or (town.height[ras.sl][m] > 0.01).any():
            return
        if need_road and not single[ras.sl][m].all():
            return
        if not need_road and not (zone[ras.sl][m] == PARKING).all():
            return
        taken[ras.sl][m] = True
        colour = PALETTE_CAR[int(rng.integers(len(PALETTE_CAR)))]
        u = rng.random()
        in_ground, in_sat = u < 0.85, u < 0.7 or u >= 0.85  # both 70%, one view 15% each
        if traffic:  # moving: seen by one of the two cameras only
            in_ground, in_sat = u < 0.5, u >= 0.5
        colour_sat = colour
        if in_ground and in_sat and rng.random() < 0.2:
            colour_sat = PALETTE_CAR[int(rng.integers(len(PALETTE_CAR)))]
        jit = rng.normal(0, 6, 3)
        cg = tuple(int(v) for v in np.clip(np.asarray(colour) + jit, 0, 255))
        cs = tuple(int(v) for v in np.clip(np.asarray(colour_sat) + jit, 0, 255))
        flip = math.pi if rng.random() < 0.5 and not traffic else 0.0
        cars.append(Car(x, y, ang + flip, length, width, height, cg, cs, in_ground, in_sat))

    for r in roads:
        if r.kind != "line" or r.width < 7:
            continue
        p_occupy = float(rng.uniform(0.1, 0.65))
        c, s = math.cos(r.ang), math.sin(r.ang)
        for side in (-1, 1):
            off = side * (r.width / 2 - 1.35)
            for t in np.arange(-CHUNK_M, CHUNK_M, 6.2):
                if rng.random() > p_occupy:
                    continue
                t2 = t + rng.uniform(-0.6, 0.6)
                x, y = r.p[0] + t2 * c - off * s, r.p[1] + t2 * s + off * c
                if 3 < x < CHUNK_M - 3 and 3 < y < CHUNK_M - 3:
                    try_car(x, y, r.ang, True)
    for r in roads:  # traffic in the driving lanes (right-hand)
        if r.kind != "line":
            continue
        p_traffic = float(rng.uniform(0.05, 0.3))
        c, s = math.cos(r.ang), math.sin(r.ang)
        for side in (-1, 1):
            off = side * r.width / 4
            for t in np.arange(-CHUNK_M, CHUNK_M, 7.0):
                if rng.random() > p_traffic:
                    continue
                x, y = r.p[0] + t * c - off * s, r.p[1] + t * s + off * c
                if 3 < x < CHUNK_M - 3 and 3 < y < CHUNK_M - 3:
                    try_car(x, y, r.ang + (math.pi if side > 0 else 0.0), True, traffic=True)
    if (zone == PARKING).any():
        p_occupy = float(rng.uniform(0.3, 0.85))
        c, s = math.cos(theta), math.sin(theta)
        for uq in np.arange(-2.6 * 100, 2.6 * 140, 2.6) + 1.3:
            for vv0 in np.arange(-17.0 * 16, 17.0 * 16, 17.0):
                for vq in (vv0 + 2.6, vv0 + 14.4):
                    x, y = uq * c - vq * s, uq * s + vq * c
                    if not (3 < x < CHUNK_M - 3 and 3 < y < CHUNK_M - 3):
                        continue
                    if _zone_at(zone, x, y) != PARKING or rng.random() > p_occupy:
                        continue
                    try_car(x, y, theta + math.pi / 2, False)
    return cars


def _draw_car(town: Town, car: Car, colour, top, height, full: bool) -> None:
    ras = _raster(_rect(car.x, car.y, car.ang, car.length, car.width))
    if ras is None:
        return
    m = ras.mask
    sl = ras.sl
    along = (ras.xs[None, :] - car.x) * math.cos(car.ang) + (ras.ys[:, None] - car.y) * math.sin(
        car.ang
    )
    a = along / car.length
    glass = ((a > 0.08) & (a < 0.24)) | ((a > -0.34) & (a < -0.24))
    body = np.asarray(colour, np.float32)
    cols = np.where(glass[..., None], np.array([40, 46, 56], np.float32), body)
    cols = np.clip(cols, 0, 255).astype(np.uint8)
    top[sl][m] = cols[m]
    height[sl][m] = car.height
    if full:
        town.wall[sl][m] = car.height
        town.side[sl][m] = colour
        town.kind[sl][m] = CAR
        town.nx[sl][m] = ras.nx[m]
        town.ny[sl][m] = ras.ny[m]


# ----------------------------------------------------------------------------- rendering


def _sample_distances() -> np.ndarray:
    near = np.arange(0.25, 10.0, 0.1)
    far = 10.0 * 1.02 ** np.arange(1, 200)
    return np.concatenate([near, far[far <= MAX_DIST]]).astype(np.float32)


DISTS = _sample_distances()


def _sky(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if rng.random() < 0.25:  # overcast
        g = rng.uniform(175, 215)
        return np.array([g, g + 3, g + 6], np.float32), np.array([g - 15, g - 10, g - 2])
    horizon = np.array([185, 205, 228], np.float32) + rng.normal(0, 8, 3)
    zenith = np.array([60, 110, 195], np.float32) + rng.normal(0, 12, 3)
    return horizon, zenith.astype(np.float32)


def _bilinear(grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``grid`` (cells of 2 x CELL, [row = y, col = x]) sampled bilinearly at x, y metres."""
    n = grid.shape[0]
    u = np.clip(x / (2 * CELL) - 0.5, 0, n - 1.001)
    v = np.clip(y / (2 * CELL) - 0.5, 0, n - 1.001)
    i, j = u.astype(np.int32), v.astype(np.int32)
    fu, fv = u - i, v - j
    g = grid
    top = g[j, i] * (1 - fu) + g[j, i + 1] * fu
    bottom = g[j + 1, i] * (1 - fu) + g[j + 1, i + 1] * fu
    return top * (1 - fv) + bottom * fv


def render_pano(
    town: Town, cam, hw: tuple[int, int], band, shadow: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The panorama at ``cam`` (metres), float32 [H, W, 3] in 0..255 (2x2 supersampled).

    ``shadow``: :func:`shadow_map` of the town under ``town.sun_ground`` (as float32).
    """
    h_out, w_out = hw
    H, W = 2 * h_out, 2 * w_out
    v = (np.arange(H) + 0.5) / H
    if band is None:
        elev = np.radians(90.0 - v * 180.0)
    else:
        _, top_e, bot_e = band
        elev = np.radians(top_e - v * (top_e - bot_e))
    az = ((np.arange(W) + 0.5) / W - 0.5) * 2 * math.pi
    sa, ca = np.sin(az).astype(np.float32), np.cos(az).astype(np.float32)
    D = DISTS
    K = len(D)
    px = cam[0] + D[None, :] * sa[:, None]
    py = cam[1] + D[None, :] * ca[:, None]
    ix = np.clip((px / CELL).astype(np.int32), 0, N - 1)
    iy = np.clip((py / CELL).astype(np.int32), 0, N - 1)
    fi = iy * N + ix  # [W, K]
    hgt = town.height.ravel()[fi]
    ang = np.arctan2(hgt - CAM_H, D[None, :])
    cum = np.maximum.accumulate(ang, axis=1)
    offs = (4.0 * np.arange(W))[:, None]
    flat = (cum + offs).ravel()
    q = (elev[None, :] + offs).ravel()
    k_o = (np.searchsorted(flat, q, side="left").reshape(W, H) - K * np.arange(W)[:, None]).astype(
        np.int32
    )
    # tree crowns (their bottoms are above the camera: only upward rays can hit them)
    k_c = np.full((W, H), K, np.int32)
    ctop = town.ctop.ravel()[fi]
    up = np.flatnonzero(elev > 0)
    if len(up) and (ctop > 0).any():
        cbot = town.cbot.ravel()[fi]
        lo = np.arctan2(cbot - CAM_H, D[None, :])
        hi = np.arctan2(ctop - CAM_H, D[None, :])
        eu = elev[up][None, :]
        kc_up = np.full((W, len(up)), K, np.int32)
        for k in np.flatnonzero((ctop > 0).any(axis=0)):
            cols = np.flatnonzero(ctop[:, k] > 0)
            hit = (eu >= lo[cols, k, None]) & (eu <= hi[cols, k, None]) & (kc_up[cols] == K)
            sub = kc_up[cols]
            sub[hit] = k
            kc_up[cols] = sub
        k_c[:, up] = kc_up

    # colours: rows start as sky (or, below the horizon, the far ground); hits overwrite
    horizon, zenith = _sky(rng)
    tsky = np.sqrt(np.clip(np.sin(elev), 0, 1))[:, None]
    row_col = (horizon + (zenith - horizon) * tsky).astype(np.float32)
    row_col[elev < 0] = 0.5 * horizon + 0.5 * town.mean_ground
    out = np.broadcast_to(row_col[None], (W, H, 3)).reshape(W * H, 3).copy()
    k_o, k_c = k_o.ravel(), k_c.ravel()
    hit = np.flatnonzero(np.minimum(k_o, k_c) < K)
    u, v = hit // H, hit % H
    cx, cy = float(cam[0]), float(cam[1])
    is_crown = k_c[hit] < k_o[hit]
    k = np.minimum(k_o[hit], k_c[hit])
    cell = fi[u, k]
    d = D[k]
    t = np.tan(elev).astype(np.float32)[v]
    col = np.empty((len(hit), 3), np.float32)
    dist = d.copy()
    tint = np.array([4, 6, 12], np.float32)  # shadows are lit by the blue sky
    shadow_flat = shadow.ravel()
    n2 = shadow.shape[0]
    top_flat = town.top.reshape(-1, 3)
    # crowns
    leaves = town.crgb.reshape(-1, 3)[cell[is_crown]].astype(np.float32)
    col[is_crown] = leaves @ (town.season_ground.T * np.float32(0.85))
    # the ground: colour at the exact intersection, soft shadows
    h_hit = hgt[u, k]
    ground = ~is_crown & (h_hit < 0.01) & (t < 0)
    g = np.flatnonzero(ground)
    dg = CAM_H / -t[g]
    gx, gy = cx + dg * sa[u[g]], cy + dg * ca[u[g]]
    gcell = np.clip((gy / CELL).astype(np.int32), 0, N - 1) * N + np.clip(
        (gx / CELL).astype(np.int32), 0, N - 1
    )
    soft = _bilinear(shadow, gx, gy)[:, None]
    gcol = top_flat[gcell].astype(np.float32)
    gveg = town.veg.ravel()[gcell]
    gcol[gveg] = gcol[gveg] @ town.season_ground.T
    col[g] = gcol * (1.0 - 0.45 * soft) + soft * tint
    dist[g] = dg
    # objects: their tops (roofs, car roofs, kerbs) or their facades
    obj = ~is_crown & ~ground
    z_hit = CAM_H + d * t
    z_prev = CAM_H + D[np.maximum(k - 1, 0)] * t
    wall = town.wall.ravel()[cell]
    on_top = obj & ((z_prev >= h_hit - 1e-3) | (z_hit > wall + 0.02))
    tp = np.flatnonzero(on_top)
    c = cell[tp]
    sh = shadow_flat[np.minimum(c // N // 2, n2 - 1) * n2 + np.minimum(c % N // 2, n2 - 1)]
    sh = sh[:, None]
    col[tp] = top_flat[c] * (1.0 - 0.45 * sh) + sh * tint
    fa = np.flatnonzero(obj & ~on_top)
    if len(fa):
        c = cell[fa]
        fcol = town.side.reshape(-1, 3)[c].astype(np.float32)
        knd = town.kind.ravel()[c]
        nxf = town.nx.ravel()[c].astype(np.float32)
        nyf = town.ny.ravel()[c].astype(np.float32)
        z = z_hit[fa]
        hx = cx + d[fa] * sa[u[fa]]
        hy = cy + d[fa] * ca[u[fa]]
        along = hx * -nyf + hy * nxf
        fz = np.mod(z, 3.2) / 3.2
        rows_ok = (fz > 0.28) & (fz < 0.72) & (z > 0.8) & (z < wall[fa] - 0.4)
        win = ((knd == WIN_GRID) & rows_ok & (np.mod(along, 2.8) < 1.5)) | (
            (knd == WIN_RIBBON) & rows_ok
        )
        hf = h_hit[fa]
        win |= (knd == CAR) & (z > 0.62 * hf) & (z < 0.95 * hf)
        glass = np.array([62, 74, 92], np.float32) + 25 * np.sin(along * 1.7)[:, None]
        fcol = np.where(win[:, None], glass, fcol)
        s_az, s_el = (math.radians(a) for a in town.sun_ground)
        lam = np.clip((nxf * math.sin(s_az) + nyf * math.cos(s_az)) * math.cos(s_el), 0, 1)
        known = (nxf != 0) | (nyf != 0)
        shade = np.where(known, 0.6 + 0.55 * lam, 0.8)
        col[fa] = fcol * shade[:, None]
    # distance haze
    f = (1.0 - np.exp(-dist / 350.0))[:, None]
    out[hit] = col * (1 - f) + horizon * f
    out = out.reshape(W, H, 3)
    if band is None and rng.random() < 0.5:  # the camera rig at the nadir
        rig = np.degrees(elev) < -80
        out[:, rig] = np.array([45, 45, 48], np.float32)
    img = out.transpose(1, 0, 2)  # [H, W, 3]
    return img.reshape(h_out, 2, w_out, 2, 3).mean(axis=(1, 3))


def shadow_map(top_height: np.ndarray, sun: tuple[float, float]) -> np.ndarray:
    """Cells (at 2 x CELL) in the shadow of taller surfaces, bool [N/2, N/2]."""
    n2 = N // 2
    hgt = top_height[: 2 * n2, : 2 * n2].reshape(n2, 2, n2, 2).max(axis=(1, 3))
    az, el = (math.radians(a) for a in sun)
    step = 2 * CELL
    slope = math.tan(el) * step
    lmax = int(math.ceil(float(hgt.max()) / slope)) + 1 if hgt.max() > 0 else 0
    shadow = np.zeros_like(hgt, dtype=bool)
    dx, dy = math.sin(az), math.cos(az)
    for s in range(1, lmax + 1, 1 if lmax < 60 else 2):
        ox, oy = int(round(s * dx)), int(round(s * dy))
        src = hgt[max(oy, 0) : n2 + min(oy, 0), max(ox, 0) : n2 + min(ox, 0)]
        dst = (slice(max(-oy, 0), n2 + min(-oy, 0)), slice(max(-ox, 0), n2 + min(-ox, 0)))
        shadow[dst] |= src - s * slope > hgt[dst] + 0.2
    return shadow


def render_tile(town: Town, shadow: np.ndarray, centre, size: int, extent: float) -> np.ndarray:
    """North-up orthographic tile centred at ``centre`` (metres), float32 [S, S, 3]."""
    ss = 2
    n = size * ss
    g = (np.arange(n) + 0.5 - n / 2) * (extent / n)
    xs = centre[0] + g
    ys = centre[1] - g  # row 0 is the north edge
    ix = np.clip((xs / CELL).astype(np.int32), 0, N - 1)
    iy = np.clip((ys / CELL).astype(np.int32), 0, N - 1)
    fi = iy[:, None] * N + ix[None, :]
    col = town.sat_top.reshape(-1, 3)[fi].astype(np.float32)
    veg = town.veg.ravel()[fi] & (town.sat_height.ravel()[fi] < 0.01)
    col[veg] = col[veg] @ town.season.T
    crown = town.ctop.ravel()[fi] > 0
    col[crown] = town.crgb.reshape(-1, 3)[fi[crown]] @ town.season.T
    n2 = shadow.shape[0]
    sh = shadow[np.minimum(iy // 2, n2 - 1)[:, None], np.minimum(ix // 2, n2 - 1)[None, :]]
    col[sh] *= 0.52
    col[sh] += np.array([4, 6, 12], np.float32)  # shadows are lit by the blue sky
    return col.reshape(size, ss, size, ss, 3).mean(axis=(1, 3))


def _camera_effects(img: np.ndarray, rng: np.random.Generator, satellite: bool) -> Image.Image:
    """Colour response, exposure, white balance, gamma, (haze, blur), noise: uint8 image."""
    x = img.astype(np.float32) / 255.0
    # the sensor's colour response: a random near-identity colour matrix and saturation
    mix = np.eye(3) + rng.normal(0, 0.08 if satellite else 0.03, (3, 3))
    mix /= mix.sum(axis=1, keepdims=True)
    x = x @ mix.T.astype(np.float32)
    grey = x.mean(axis=-1, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.7, 1.25 if satellite else 1.1)
    if satellite:
        haze = rng.uniform(0, 0.12)
        x = x * np.float32(1 - haze) + np.float32(haze) * np.array([0.75, 0.8, 0.88], np.float32)
    exposure = math.exp(rng.normal(0, 0.25))
    wb = np.exp(rng.normal(0, 0.08, 3)).astype(np.float32)
    gamma = math.exp(rng.normal(0, 0.1))
    x = np.clip(x * exposure * wb, 0, 1) ** gamma
    sigma = np.float32(rng.uniform(1.0, 3.5))
    x = x * np.float32(255.0) + rng.standard_normal(x.shape, dtype=np.float32) * sigma
    out = Image.fromarray(np.clip(x + 0.5, 0, 255).astype(np.uint8))
    if satellite:
        out = out.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.8))))
    return out


def _save_jpeg(img: Image.Image, path: Path, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="JPEG", quality=int(rng.integers(72, 93)))


# ----------------------------------------------------------------------------- datasets


def _paths(spec: Spec, index: int) -> tuple[Path, Path]:
    """(panorama, tile) paths of location ``index`` (0-based, train then val)."""
    root = Path(spec.out)
    if spec.layout == "cvact":
        pid = _cvact_id(index)
        base = root / "ANU_data_small"
        return (
            base / "streetview" / f"{pid}_grdView.jpg",
            base / "satview_polish" / f"{pid}_satView_polish.jpg",
        )
    name = f"{index + 1:07d}.jpg"
    return root / "streetview" / "panos" / name, root / "bingmap" / "19" / name


def _cvact_id(index: int) -> str:
    return f"OG{index:07d}"


def _chunk_origin(chunk: int) -> tuple[float, float]:
    return (
        UTM_ORIGIN[0] + (chunk % 64) * CHUNK_SPACING,
        UTM_ORIGIN[1] + (chunk // 64) * CHUNK_SPACING,
    )


def _chunk_job(job: tuple[Spec, int, list[int]]) -> list[tuple[int, float, float]]:
    spec, chunk, indices = job
    grid = city_grid_angle(spec.seed)
    town = _build_town(np.random.default_rng([spec.seed, chunk, 0]), len(indices), grid)
    tile_town = town
    if spec.unrelated_tiles:  # another town, never shown from the ground
        tile_rng = np.random.default_rng([spec.seed, chunk, 1, 7])
        tile_town = _build_town(tile_rng, len(indices), grid)
    top_h = np.maximum(tile_town.sat_height, tile_town.ctop)
    shadow = shadow_map(top_h, tile_town.sun_sat)
    shadow_ground = shadow_map(np.maximum(town.height, town.ctop), town.sun_ground)
    shadow_ground = shadow_ground.astype(np.float32)
    band = spec.band()
    hw = (band[0], spec.pano_hw[1]) if band else spec.pano_hw
    ox, oy = _chunk_origin(chunk)
    rows = []
    for k, index in enumerate(indices):
        rng = np.random.default_rng([spec.seed, chunk, 2, k])
        cam = town.cams[k]
        pano = render_pano(town, cam, hw, band, shadow_ground, rng)
        a = rng.uniform(0, 2 * math.pi)
        r = rng.uniform(1.0, 2.0)
        centre = tile_town.cams[k] + np.array([r * math.cos(a), r * math.sin(a)])
        tile = render_tile(tile_town, shadow, centre, spec.tile, spec.tile_m)
        pano_path, tile_path = _paths(spec, index)
        _save_jpeg(_camera_effects(pano, rng, False), pano_path, rng)
        _save_jpeg(_camera_effects(tile, rng, True), tile_path, rng)
        rows.append((index, ox + float(cam[0]), oy + float(cam[1])))
    return rows


def _jobs(spec: Spec) -> list[tuple[Spec, int, list[int]]]:
    jobs = []
    chunk = 0
    for start, count in ((0, spec.n_train), (spec.n_train, spec.n_val)):
        for s in range(start, start + count, PER_CHUNK):
            jobs.append((spec, chunk, list(range(s, min(s + PER_CHUNK, start + count)))))
            chunk += 1
    return jobs


def _write_index(spec: Spec, utm: np.ndarray) -> None:
    root = Path(spec.out)
    n = spec.n_train + spec.n_val
    if spec.layout == "cvact":
        import scipy.io

        ids = np.array([_cvact_id(i) for i in range(n)])
        train = np.arange(1, spec.n_train + 1, dtype=np.float64).reshape(-1, 1)
        val = np.arange(spec.n_train + 1, n + 1, dtype=np.float64).reshape(-1, 1)
        scipy.io.savemat(
            root / "ACT_data.mat",
            {
                "panoIds": ids,
                "utm": utm.astype(np.float64),
                "trainSet": {"trainInd": train},
                "valSet": {"valInd": val},
            },
        )
        return
    splits = root / "splits"
    splits.mkdir(parents=True, exist_ok=True)
    for name, indices in (
        ("train-19zl.csv", range(spec.n_train)),
        ("val-19zl.csv", range(spec.n_train, n)),
    ):
        lines = [
            f"bingmap/19/{i + 1:07d}.jpg,streetview/panos/{i + 1:07d}.jpg,"
            f"streetview/annotations/{i + 1:07d}.png"
            for i in indices
        ]
        (splits / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def generate(
    out: str | Path,
    layout: str,
    n_train: int,
    n_val: int,
    seed: int = 0,
    *,
    pano_hw: tuple[int, int] = (256, 512),
    tile: int = 256,
    unrelated_tiles: bool = False,
    workers: int | None = None,
    verbose: bool = False,
) -> dict:
    """Write a CVACT- or CVUSA-like world to ``out`` (see the module docstring).

    Args:
        out: output folder; created; must be empty if it exists.
        layout: 'cvact' or 'cvusa'.
        n_train, n_val: locations per split.
        seed: everything is determined by it.
        pano_hw: full panorama size (H, W), H = W / 2; the CVUSA layout writes only the
            horizon band, W x round(W * 224 / 1232).
        tile: satellite tile side in pixels.
        unrelated_tiles: render every tile in another town than its panorama.
        workers: processes (default min(2, cpu count)); 1 runs in this process.

    Returns:
        A summary: counts, seconds, sizes, and the tile extent in metres.
    """
    layout = layout.lower()
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    if n_train < 0 or n_val < 0 or n_train + n_val == 0:
        raise ValueError("need n_train, n_val >= 0 and at least one location")
    h, w = (int(v) for v in pano_hw)
    if w != 2 * h or h < 2:
        raise ValueError(f"pano_hw must be (H, 2H), got {pano_hw}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    spec = Spec(str(out), layout, int(n_train), int(n_val), int(seed), (h, w), int(tile),
                bool(unrelated_tiles))  # fmt: skip
    jobs = _jobs(spec)
    workers = min(2, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    began = time.perf_counter()
    n = spec.n_train + spec.n_val
    utm = np.zeros((n, 2))
    done = 0

    def collect(rows):
        nonlocal done
        for index, e, nn in rows:
            utm[index] = (e, nn)
        done += len(rows)
        if verbose:
            el = time.perf_counter() - began
            print(f"\r{done}/{n} locations, {el:.0f} s", end="", file=sys.stderr, flush=True)

    if workers == 1 or len(jobs) == 1:
        for job in jobs:
            collect(_chunk_job(job))
    else:
        import multiprocessing as mp

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for rows in pool.map(_chunk_job, jobs):
                collect(rows)
    if verbose:
        print(file=sys.stderr)
    _write_index(spec, utm)
    band = spec.band()
    info = {
        "generator": "benchmarks/worlds/othergen.py",
        "purpose": "held-out evaluation only",
        **{k: v for k, v in asdict(spec).items() if k != "out"},
        "panorama_size_hw": [band[0], w] if band else [h, w],
        "band_elevations_deg": [band[1], band[2]] if band else None,
        "tile_extent_m": spec.tile_m,
        "camera_height_m": CAM_H,
        "chunks": len(jobs),
        "seconds": round(time.perf_counter() - began, 1),
    }
    (out / "othergen_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def _size(text: str) -> tuple[int, int]:
    h, _, w = text.lower().partition("x")
    return int(h), int(w)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--layout", choices=sorted(LAYOUTS), required=True)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pano", type=_size, default=(256, 512), help="full panorama HxW")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--unrelated-tiles", action="store_true")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    info = generate(
        args.out, args.layout, args.train, args.val, args.seed,
        pano_hw=args.pano, tile=args.tile, unrelated_tiles=args.unrelated_tiles,
        workers=args.workers, verbose=True,
    )  # fmt: skip
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
