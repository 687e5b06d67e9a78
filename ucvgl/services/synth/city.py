"""The procedural city/countryside generator and the sampling of capture locations.

A map is a jittered grid of streets (denser and busier in the centre, sparse country
roads outside; some street segments are left out so blocks merge). Each block between
streets gets a land use by its distance from the centre: downtown towers, commercial
lots with parking, residential houses with gardens, pools and trees, industrial sheds,
parks with ponds, forests, farm fields and lakes. Streets get sidewalks, lane markings
and cars. Capture locations are sampled on the streets (like street-view cars), at least
``min_spacing_m`` apart so that neighbouring satellite tiles overlap only partially.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ucvgl.services.synth.world import (
    KIND_CAR,
    RIDGE_EAST_WEST,
    RIDGE_FLAT,
    RIDGE_NORTH_SOUTH,
    World,
)

RGB = tuple[int, int, int]

ASPHALT: RGB = (72, 72, 76)
SIDEWALK: RGB = (168, 164, 156)
MARKING_WHITE: RGB = (230, 230, 225)
MARKING_YELLOW: RGB = (220, 185, 60)
WATER: RGB = (48, 82, 112)
POOL: RGB = (70, 170, 205)
SAND: RGB = (196, 180, 140)
GRASS: tuple[RGB, ...] = ((88, 128, 62), (104, 140, 70), (76, 112, 58), (120, 146, 82))
SOIL: tuple[RGB, ...] = ((132, 106, 78), (150, 124, 90), (112, 92, 70))
CROPS: tuple[RGB, ...] = ((150, 160, 80), (196, 178, 98), (96, 136, 64), (170, 140, 96))
PAVING: tuple[RGB, ...] = ((150, 146, 140), (128, 124, 120), (176, 166, 150))
ROOFS_HOUSE: tuple[RGB, ...] = (
    (150, 70, 50),
    (110, 60, 45),
    (80, 80, 86),
    (60, 60, 64),
    (130, 120, 110),
    (90, 100, 110),
)
ROOFS_FLAT: tuple[RGB, ...] = (
    (190, 190, 185),
    (120, 120, 122),
    (90, 92, 96),
    (210, 205, 195),
    (140, 150, 150),
)
FACADES: tuple[RGB, ...] = (
    (200, 185, 160),
    (160, 80, 60),
    (220, 215, 205),
    (140, 140, 145),
    (120, 150, 180),
    (190, 160, 120),
    (170, 110, 90),
    (90, 100, 120),
    (230, 200, 150),
)
FOLIAGE: tuple[RGB, ...] = ((50, 90, 40), (62, 104, 48), (40, 78, 44), (80, 110, 50))
CARS: tuple[RGB, ...] = (
    (200, 30, 30),
    (30, 60, 160),
    (230, 230, 230),
    (20, 20, 22),
    (150, 150, 155),
    (40, 120, 60),
    (220, 180, 40),
)


@dataclass(frozen=True)
class CityConfig:
    """Knobs of the procedural map (metres; the scene knobs are documented on
    :class:`~ucvgl.services.synth.settings.WorldSettings`, which sets them)."""

    resolution_m: float = 0.3
    margin_m: float = 60.0
    area_per_location_m2: float = 2200.0
    min_side_m: float = 240.0
    min_spacing_m: float = 22.86
    sun_azimuth_deg: float = 135.0
    sun_elevation_deg: float = 50.0
    scene_density: float = 1.0
    downtown_radius: float = 0.3
    suburb_radius: float = 0.7
    style: str = "textured"
    texture_strength: float = 1.0
    shadow_strength: float = 0.5
    transient_prob: float = 0.0


@dataclass(frozen=True)
class Road:
    """A straight street segment along x (``horizontal``) or y, with its width."""

    x0: float
    y0: float
    x1: float
    y1: float
    width: float
    main: bool

    @property
    def length(self) -> float:
        return abs(self.x1 - self.x0) + abs(self.y1 - self.y0)


@dataclass
class City:
    """A generated map: the finalized world, its streets and the capture locations."""

    world: World
    roads: list[Road]
    locations: np.ndarray
    """float64 [N, 2] (x, y) metres."""
    area: tuple[float, float, float, float]
    """(x0, y0, x1, y1) of the region where locations were sampled."""


def _jitter(rgb: RGB, rng: np.random.Generator, amount: float = 0.08) -> RGB:
    scale = rng.uniform(1 - amount, 1 + amount) * rng.uniform(1 - amount / 2, 1 + amount / 2, 3)
    return tuple(int(v) for v in np.clip(np.asarray(rgb) * scale, 0, 255))


def _pick(palette: tuple[RGB, ...], rng: np.random.Generator, amount: float = 0.08) -> RGB:
    return _jitter(palette[int(rng.integers(len(palette)))], rng, amount)


def _scaled(n: int, k: float) -> int:
    """``n`` things scaled by density ``k`` (exactly ``n`` at k == 1)."""
    return n if k == 1.0 else int(round(n * k))


def _grid_lines(extent: float, rng: np.random.Generator) -> list[float]:
    """Street positions across ``extent``: dense near the centre, sparse outside."""
    pos = [float(rng.uniform(-20.0, 30.0))]
    half = extent / 2.0
    while pos[-1] < extent + 20.0:
        d = min(abs(pos[-1] - half) / half, 1.0)
        spacing = (62.0 + 170.0 * d**2.5) * float(rng.uniform(0.75, 1.3))
        pos.append(pos[-1] + spacing)
    return pos


def _distance(x: float, y: float, side: float) -> float:
    """Normalised distance from the map centre (0 centre, ~1 at the edge of the area)."""
    h = side / 2.0
    return min(math.hypot(x - h, y - h) / h, 1.5)


# --------------------------------------------------------------------------- blocks
def _houses(
    world: World, b: tuple[float, float, float, float], rng: np.random.Generator, k: float = 1.0
) -> None:
    x0, y0, x1, y1 = b
    world.paint_rect(x0, y0, x1, y1, _pick(GRASS, rng), texture=0.25)
    lot = float(rng.uniform(17.0, 26.0)) / math.sqrt(k)
    nx, ny = max(int((x1 - x0) // lot), 1), max(int((y1 - y0) // lot), 1)
    lw, lh = (x1 - x0) / nx, (y1 - y0) / ny
    roof_base = _pick(ROOFS_HOUSE, rng, 0.05)
    for i in range(nx):
        for j in range(ny):
            if 0 < i < nx - 1 and 0 < j < ny - 1 and rng.random() < min(0.5 / k, 1.0):
                continue  # interior lots are back gardens
            if k < 1.0 and rng.random() > k:
                continue  # a sparse scene leaves street lots empty too
            lx, ly = x0 + i * lw, y0 + j * lh
            w, h = rng.uniform(0.45, 0.7) * lw, rng.uniform(0.45, 0.7) * lh
            hx = lx + rng.uniform(1.0, max(lw - w - 1.0, 1.0))
            hy = ly + rng.uniform(1.0, max(lh - h - 1.0, 1.0))
            if rng.random() < 0.25:
                world.paint_rect(
                    lx + 0.5, ly + 0.5, lx + lw - 0.5, ly + lh - 0.5, _pick(GRASS, rng), 0.3
                )
            if rng.random() < 0.12:
                px, py = lx + rng.uniform(1, lw - 7), ly + rng.uniform(1, lh - 5)
                world.paint_rect(px, py, px + 6.0, py + 3.5, POOL, 0.05)
            roof = _jitter(roof_base, rng, 0.12) if rng.random() < 0.6 else _pick(ROOFS_HOUSE, rng)
            ridge = RIDGE_EAST_WEST if w > h else RIDGE_NORTH_SOUTH
            world.add_box(
                hx,
                hy,
                hx + w,
                hy + h,
                rng.uniform(3.0, 9.0),
                roof,
                _pick(FACADES, rng),
                ridge=ridge,
                windows=True,
            )
            for _ in range(_scaled(int(rng.integers(0, 4)), k)):
                world.add_tree(
                    lx + rng.uniform(1, lw - 1),
                    ly + rng.uniform(1, lh - 1),
                    rng.uniform(1.5, 3.5),
                    rng.uniform(5.0, 12.0),
                    _pick(FOLIAGE, rng),
                )


def _split(b: tuple[float, float, float, float], n: int, rng: np.random.Generator) -> list:
    """Split a rectangle into about ``n`` parcels by random cuts."""
    parts = [b]
    while len(parts) < n:
        parts.sort(key=lambda r: (r[2] - r[0]) * (r[3] - r[1]))
        x0, y0, x1, y1 = parts.pop()
        if max(x1 - x0, y1 - y0) < 24.0:
            parts.append((x0, y0, x1, y1))
            break
        f = float(rng.uniform(0.35, 0.65))
        if x1 - x0 > y1 - y0:
            xm = x0 + f * (x1 - x0)
            parts += [(x0, y0, xm, y1), (xm, y0, x1, y1)]
        else:
            ym = y0 + f * (y1 - y0)
            parts += [(x0, y0, x1, ym), (x0, ym, x1, y1)]
    return parts


def _downtown(world: World, b: tuple, rng: np.random.Generator, k: float = 1.0) -> None:
    x0, y0, x1, y1 = b
    world.paint_rect(x0, y0, x1, y1, _pick(PAVING, rng), texture=0.08)
    for px0, py0, px1, py1 in _split(b, max(_scaled(int(rng.integers(1, 5)), k), 1), rng):
        g = rng.uniform(1.5, 5.0)
        if rng.random() < 0.12:
            world.paint_rect(px0 + g, py0 + g, px1 - g, py1 - g, _pick(GRASS, rng), 0.2)
            continue
        roof = _pick(ROOFS_FLAT, rng)
        world.add_box(
            px0 + g,
            py0 + g,
            px1 - g,
            py1 - g,
            rng.uniform(12.0, 30.0),
            roof,
            _pick(FACADES, rng),
            windows=True,
        )
        for _ in range(int(rng.integers(0, 4))):  # rooftop machinery
            if px1 - px0 < 2 * g + 4 or py1 - py0 < 2 * g + 4:
                break  # a parcel too narrow for it (only with moved land-use knobs)
            cx, cy = rng.uniform(px0 + g + 2, px1 - g - 2), rng.uniform(py0 + g + 2, py1 - g - 2)
            world.add_box(
                cx - 1.5,
                cy - 1.0,
                cx + 1.5,
                cy + 1.0,
                31.0,
                _jitter(roof, rng, 0.3),
                (120, 120, 120),
                windows=False,
            )


def _commercial(world: World, b: tuple, rng: np.random.Generator, k: float = 1.0) -> None:
    x0, y0, x1, y1 = b
    _parking(world, b, rng, k)
    w, h = x1 - x0, y1 - y0
    if w > h:
        bx0, bx1 = (
            (x0 + 2, x0 + w * rng.uniform(0.4, 0.6))
            if rng.random() < 0.5
            else (x1 - w * rng.uniform(0.4, 0.6), x1 - 2)
        )
        by0, by1 = y0 + 2, y1 - 2
    else:
        by0, by1 = (
            (y0 + 2, y0 + h * rng.uniform(0.4, 0.6))
            if rng.random() < 0.5
            else (y1 - h * rng.uniform(0.4, 0.6), y1 - 2)
        )
        bx0, bx1 = x0 + 2, x1 - 2
    world.paint_rect(bx0 - 1, by0 - 1, bx1 + 1, by1 + 1, _pick(PAVING, rng), 0.05)
    world.add_box(
        bx0,
        by0,
        bx1,
        by1,
        rng.uniform(5.0, 14.0),
        _pick(ROOFS_FLAT, rng),
        _pick(FACADES, rng),
        windows=True,
    )


def _parking(world: World, b: tuple, rng: np.random.Generator, k: float = 1.0) -> None:
    x0, y0, x1, y1 = b
    along_x = rng.random() < 0.5
    world.paint_stripes(
        x0, y0, x1, y1, _jitter(ASPHALT, rng, 0.1), (200, 200, 196), 2.6, not along_x, 0.08
    )
    # aisles without stall lines and parked cars
    period = 16.0
    start = (y0 if along_x else x0) + 5.5
    end = y1 if along_x else x1
    pos = start
    while pos < end - 5.5:
        if along_x:
            world.paint_rect(x0, pos, x1, pos + 5.0, ASPHALT, 0.08)
        else:
            world.paint_rect(pos, y0, pos + 5.0, y1, ASPHALT, 0.08)
        pos += period
    n_cars = int((x1 - x0) * (y1 - y0) / 60.0 * rng.uniform(0.2, 0.7) * k)
    for _ in range(n_cars):
        cx, cy = rng.uniform(x0 + 2, x1 - 2), rng.uniform(y0 + 2, y1 - 2)
        lx, ly = (1.0, 2.3) if along_x else (2.3, 1.0)
        world.add_box(
            cx - lx,
            cy - ly,
            cx + lx,
            cy + ly,
            1.5,
            (c := _pick(CARS, rng)),
            c,
            kind=KIND_CAR,
            windows=False,
        )


def _industrial(world: World, b: tuple, rng: np.random.Generator, k: float = 1.0) -> None:
    x0, y0, x1, y1 = b
    world.paint_rect(x0, y0, x1, y1, _pick(SOIL + PAVING, rng), texture=0.15)
    for px0, py0, px1, py1 in _split(b, max(_scaled(int(rng.integers(1, 3)), k), 1), rng):
        g = rng.uniform(3.0, 8.0)
        world.add_box(
            px0 + g,
            py0 + g,
            px1 - g,
            py1 - g,
            rng.uniform(5.0, 10.0),
            _pick(ROOFS_FLAT, rng),
            _pick(FACADES, rng),
            windows=rng.random() < 0.3,
        )


def _park(
    world: World, b: tuple, rng: np.random.Generator, k: float = 1.0, density: float = 1 / 90
) -> None:
    x0, y0, x1, y1 = b
    world.paint_rect(x0, y0, x1, y1, _pick(GRASS, rng), texture=0.3)
    if rng.random() < 0.5:  # crossing paths
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        world.paint_rect(x0, cy - 1.2, x1, cy + 1.2, _pick((SAND,) + PAVING, rng), 0.1)
        world.paint_rect(cx - 1.2, y0, cx + 1.2, y1, _pick((SAND,) + PAVING, rng), 0.1)
    if rng.random() < 0.4:
        r = min(x1 - x0, y1 - y0) * rng.uniform(0.15, 0.3)
        px, py = rng.uniform(x0 + r, x1 - r), rng.uniform(y0 + r, y1 - r)
        world.paint_disk(px, py, r + 1.5, SAND, 0.1)
        world.paint_disk(px, py, r, _jitter(WATER, rng), 0.1)
    for _ in range(int((x1 - x0) * (y1 - y0) * density * rng.uniform(0.5, 1.5) * k)):
        world.add_tree(
            rng.uniform(x0, x1),
            rng.uniform(y0, y1),
            rng.uniform(1.8, 4.5),
            rng.uniform(6.0, 15.0),
            _pick(FOLIAGE, rng, 0.15),
        )


def _farm(world: World, b: tuple, rng: np.random.Generator, k: float = 1.0) -> None:
    x0, y0, x1, y1 = b
    for px0, py0, px1, py1 in _split(b, int(rng.integers(1, 4)), rng):
        a, c = _pick(CROPS + SOIL, rng), _pick(CROPS + SOIL, rng, 0.05)
        world.paint_stripes(
            px0,
            py0,
            px1,
            py1,
            a,
            _jitter(a, rng, 0.15) if rng.random() < 0.5 else c,
            rng.uniform(2.0, 6.0),
            rng.random() < 0.5,
            0.2,
        )
        if rng.random() < 0.5:  # a hedge row of trees on one side
            step = 6 / k
            for t in range(int((px1 - px0) / step)):
                world.add_tree(
                    px0 + 3 + step * t,
                    py0 + 1.5,
                    rng.uniform(2.0, 3.5),
                    rng.uniform(6, 12),
                    _pick(FOLIAGE, rng),
                )
    if rng.random() < 0.35 and x1 - x0 >= 30 and y1 - y0 >= 30:  # a farm house and a barn
        cx, cy = rng.uniform(x0 + 15, x1 - 15), rng.uniform(y0 + 15, y1 - 15)
        world.paint_rect(cx - 14, cy - 12, cx + 14, cy + 12, _pick(SOIL, rng), 0.2)
        world.add_box(
            cx - 10,
            cy - 3,
            cx - 1,
            cy + 5,
            rng.uniform(4, 7),
            _pick(ROOFS_HOUSE, rng),
            _pick(FACADES, rng),
            ridge=RIDGE_EAST_WEST,
        )
        world.add_box(
            cx + 2,
            cy - 8,
            cx + 12,
            cy + 8,
            rng.uniform(5, 9),
            _pick(ROOFS_FLAT, rng),
            (150, 60, 45),
            ridge=RIDGE_NORTH_SOUTH,
            windows=False,
        )


def _water(world: World, b: tuple, rng: np.random.Generator, k: float = 1.0) -> None:
    x0, y0, x1, y1 = b
    world.paint_rect(x0, y0, x1, y1, _pick(GRASS, rng), 0.3)
    world.paint_rect(x0 + 3, y0 + 3, x1 - 3, y1 - 3, SAND, 0.1)
    world.paint_rect(x0 + 6, y0 + 6, x1 - 6, y1 - 6, _jitter(WATER, rng), 0.12)


_BLOCKS = {
    "downtown": _downtown,
    "commercial": _commercial,
    "parking": _parking,
    "houses": _houses,
    "industrial": _industrial,
    "park": _park,
    "forest": lambda w, b, r, k: _park(w, b, r, k, density=1 / 28),
    "farm": _farm,
    "water": _water,
}


def _land_use(d: float, rng: np.random.Generator, config: CityConfig) -> str:
    if d < config.downtown_radius:
        options = {"downtown": 0.62, "commercial": 0.1, "parking": 0.08, "park": 0.1, "houses": 0.1}
    elif d < config.suburb_radius:
        options = {
            "houses": 0.58,
            "commercial": 0.12,
            "park": 0.1,
            "industrial": 0.1,
            "water": 0.04,
            "parking": 0.06,
        }
    else:
        options = {"farm": 0.55, "forest": 0.15, "houses": 0.15, "water": 0.07, "industrial": 0.08}
    names = list(options)
    p = np.asarray([options[n] for n in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


# --------------------------------------------------------------------------- streets
def _street_network(side: float, rng: np.random.Generator) -> tuple[list, list, list[Road]]:
    xs, ys = _grid_lines(side, rng), _grid_lines(side, rng)

    def width(d: float) -> tuple[float, bool]:
        main = rng.random() < 0.22
        if d > 0.8:
            return (float(rng.uniform(5.5, 7.0)), False)
        return (
            (float(rng.uniform(13.0, 16.0)), True)
            if main
            else (float(rng.uniform(7.0, 10.0)), False)
        )

    xw = [width(_distance(x, side / 2, side)) for x in xs]
    yw = [width(_distance(side / 2, y, side)) for y in ys]
    roads: list[Road] = []
    for i, x in enumerate(xs):  # north-south segments
        for j in range(len(ys) - 1):
            d = _distance(x, (ys[j] + ys[j + 1]) / 2, side)
            if xw[i][1] or rng.random() < 0.95 - 0.45 * min(d, 1.0) ** 2:
                roads.append(Road(x, ys[j], x, ys[j + 1], xw[i][0], xw[i][1]))
    for j, y in enumerate(ys):  # east-west segments
        for i in range(len(xs) - 1):
            d = _distance((xs[i] + xs[i + 1]) / 2, y, side)
            if yw[j][1] or rng.random() < 0.95 - 0.45 * min(d, 1.0) ** 2:
                roads.append(Road(xs[i], y, xs[i + 1], y, yw[j][0], yw[j][1]))
    return (
        list(zip(xs, [w for w, _ in xw], strict=True)),
        list(zip(ys, [w for w, _ in yw], strict=True)),
        roads,
    )


def _paint_street(world: World, road: Road, side: float, rng: np.random.Generator) -> None:
    hw = road.width / 2.0
    horizontal = road.y0 == road.y1
    d = _distance((road.x0 + road.x1) / 2, (road.y0 + road.y1) / 2, side)
    walk = 2.5 if d < 0.8 else 0.0
    if horizontal:
        xa, xb = min(road.x0, road.x1), max(road.x0, road.x1)
        if walk:
            world.paint_rect(
                xa - hw - walk,
                road.y0 - hw - walk,
                xb + hw + walk,
                road.y0 + hw + walk,
                SIDEWALK,
                0.1,
            )
        world.paint_rect(xa - hw, road.y0 - hw, xb + hw, road.y0 + hw, ASPHALT, 0.12)
    else:
        ya, yb = min(road.y0, road.y1), max(road.y0, road.y1)
        if walk:
            world.paint_rect(
                road.x0 - hw - walk,
                ya - hw - walk,
                road.x0 + hw + walk,
                yb + hw + walk,
                SIDEWALK,
                0.1,
            )
        world.paint_rect(road.x0 - hw, ya - hw, road.x0 + hw, yb + hw, ASPHALT, 0.12)


def _paint_markings(world: World, road: Road) -> None:
    horizontal = road.y0 == road.y1
    a = min(road.x0, road.x1) if horizontal else min(road.y0, road.y1)
    b = max(road.x0, road.x1) if horizontal else max(road.y0, road.y1)
    a, b = a + 9.0, b - 9.0
    if b <= a:
        return
    c = road.y0 if horizontal else road.x0

    def line(offset: float, rgb: RGB, dash: float | None, w: float = 0.3) -> None:
        if dash is None:
            spans = [(a, b)]
        else:
            spans = [(s, min(s + dash, b)) for s in np.arange(a, b, dash * 2.5)]
        for s, e in spans:
            if horizontal:
                world.paint_rect(s, c + offset - w / 2, e, c + offset + w / 2, rgb)
            else:
                world.paint_rect(c + offset - w / 2, s, c + offset + w / 2, e, rgb)

    if road.main:
        line(-0.25, MARKING_YELLOW, None)
        line(0.25, MARKING_YELLOW, None)
        line(-road.width / 4, MARKING_WHITE, 3.0)
        line(road.width / 4, MARKING_WHITE, 3.0)
    elif road.width > 6.5:
        line(0.0, MARKING_WHITE, 3.0)
    # stop bars and zebra crossings at both ends
    for end, sign in ((a, -1.0), (b, 1.0)):
        for k in range(int(road.width // 1.2)):
            o = -road.width / 2 + 0.6 + k * 1.2
            s = end + sign * 2.0
            if horizontal:
                world.paint_rect(
                    min(s, s + sign * 3),
                    c + o - 0.3,
                    max(s, s + sign * 3),
                    c + o + 0.3,
                    MARKING_WHITE,
                )
            else:
                world.paint_rect(
                    c + o - 0.3,
                    min(s, s + sign * 3),
                    c + o + 0.3,
                    max(s, s + sign * 3),
                    MARKING_WHITE,
                )


def _street_trees_and_cars(
    world: World,
    road: Road,
    side: float,
    locations: np.ndarray,
    rng: np.random.Generator,
    k: float = 1.0,
) -> None:
    horizontal = road.y0 == road.y1
    d = _distance((road.x0 + road.x1) / 2, (road.y0 + road.y1) / 2, side)
    a = min(road.x0, road.x1) if horizontal else min(road.y0, road.y1)
    b = max(road.x0, road.x1) if horizontal else max(road.y0, road.y1)
    c = road.y0 if horizontal else road.x0
    hw = road.width / 2.0

    def at(s: float, o: float) -> tuple[float, float]:
        return (s, c + o) if horizontal else (c + o, s)

    if d < 0.8 and rng.random() < 0.55:  # street trees on one or both sidewalks
        spacing = rng.uniform(8.0, 14.0) / k
        foliage = _pick(FOLIAGE, rng)
        sides = [-1, 1] if rng.random() < 0.5 else [int(rng.choice([-1, 1]))]
        for sgn in sides:
            for s in np.arange(a + 10.0, b - 10.0, spacing):
                world.add_tree(
                    *at(s, sgn * (hw + 1.3)),
                    rng.uniform(1.6, 3.2),
                    rng.uniform(6.0, 11.0),
                    _jitter(foliage, rng, 0.05),
                    crown_base_m=3.0,
                )
    n_cars = int((b - a) / 30.0 * rng.uniform(0.0, 1.5) * (1.0 if d < 0.8 else 0.3) * k)
    lane = road.width / 4.0
    for _ in range(n_cars if b - a >= 20.0 else 0):  # (a dense scene on a short segment)
        s = rng.uniform(a + 10.0, b - 10.0)
        o = float(rng.choice([-1.0, 1.0])) * lane
        x, y = at(s, o)
        if len(locations) and np.min(np.hypot(locations[:, 0] - x, locations[:, 1] - y)) < 6.0:
            continue  # never park a car on the camera
        hx, hy = (2.3, 0.95) if horizontal else (0.95, 2.3)
        col = _pick(CARS, rng)
        world.add_box(x - hx, y - hy, x + hx, y + hy, 1.5, col, col, kind=KIND_CAR, windows=False)


# --------------------------------------------------------------------------- scene knobs
def _mark_transient_cars(world: World, prob: float, rng: np.random.Generator) -> None:
    """Each car, with probability ``prob``, is seen by one view only (50/50 which)."""
    cars = np.flatnonzero(np.asarray(world._kind) == KIND_CAR)
    transient = rng.random(len(cars)) < prob
    satellite = rng.random(len(cars)) < 0.5
    world.set_transient(cars[transient & satellite].tolist(), cars[transient & ~satellite].tolist())


FLAT_MIX = np.asarray(((0.55, 0.35, 0.10), (0.10, 0.55, 0.35), (0.35, 0.10, 0.55)), np.float32)
"""Channel mixing of the flat style's palette (rows: output R, G, B)."""
FLAT_LEVELS = 6
"""The flat style posterises each channel to this many levels."""


def flat_colours(rgb: np.ndarray) -> np.ndarray:
    """The flat style's palette: ``rgb`` [..., 3] (0..255) channel-mixed, saturated and
    posterised to :data:`FLAT_LEVELS` levels per channel. float32 [..., 3]."""
    c = np.asarray(rgb, np.float32) @ FLAT_MIX.T
    grey = c.mean(axis=-1, keepdims=True)
    c = np.clip(grey + 1.6 * (c - grey) + 12.0, 0.0, 255.0)
    step = 255.0 / (FLAT_LEVELS - 1)
    return (np.round(c / step) * step).astype(np.float32)


def _flatten_palette(world: World) -> None:
    """Repaint a finalized world in the flat style's palette (every distinct colour once)."""
    packed = world.ground.reshape(-1, 3).astype(np.uint32)
    packed = (packed[:, 0] << 16) | (packed[:, 1] << 8) | packed[:, 2]
    values, inverse = np.unique(packed, return_inverse=True)
    distinct = np.stack([(values >> 16) & 255, (values >> 8) & 255, values & 255], axis=1)
    table = np.clip(flat_colours(distinct) + 0.5, 0, 255).astype(np.uint8)
    world.ground = table[inverse.reshape(-1)].reshape(world.ground.shape)
    world.roof_rgb = flat_colours(world.roof_rgb)
    world.side_rgb = flat_colours(world.side_rgb)


# --------------------------------------------------------------------------- locations
def sample_locations(
    roads: list[Road],
    n: int,
    min_spacing: float,
    area: tuple[float, float, float, float],
    rng: np.random.Generator,
) -> np.ndarray:
    """Up to ``n`` points on the driving lanes of ``roads``, inside ``area``, pairwise at
    least ``min_spacing`` apart (greedy dart throwing). Returns float64 [M, 2], M <= n."""
    if n <= 0 or not roads:
        return np.zeros((0, 2))
    x0, y0, x1, y1 = area
    lengths = np.asarray([r.length for r in roads])
    n_cand = max(40 * n, 2000)
    idx = rng.choice(len(roads), size=n_cand, p=lengths / lengths.sum())
    t = rng.uniform(0.0, 1.0, n_cand)
    lateral = rng.uniform(-0.3, 0.3, n_cand)
    cell = min_spacing / math.sqrt(2.0)
    grid: dict[tuple[int, int], tuple[float, float]] = {}
    out: list[tuple[float, float]] = []
    for k in range(n_cand):
        r = roads[idx[k]]
        off = lateral[k] * r.width
        if r.y0 == r.y1:
            x, y = r.x0 + t[k] * (r.x1 - r.x0), r.y0 + off
        else:
            x, y = r.x0 + off, r.y0 + t[k] * (r.y1 - r.y0)
        if not (x0 <= x <= x1 and y0 <= y <= y1):
            continue
        gi, gj = int(x // cell), int(y // cell)
        ok = True
        for di in (-2, -1, 0, 1, 2):
            for dj in (-2, -1, 0, 1, 2):
                q = grid.get((gi + di, gj + dj))
                if q is not None and (q[0] - x) ** 2 + (q[1] - y) ** 2 < min_spacing**2:
                    ok = False
                    break
            if not ok:
                break
        if ok:
            grid[(gi, gj)] = (x, y)
            out.append((x, y))
            if len(out) == n:
                break
    return np.asarray(out, np.float64).reshape(-1, 2)


def build_city(
    n_locations: int,
    rng: np.random.Generator,
    config: CityConfig = CityConfig(),
    *,
    min_side_m: float | None = None,
) -> City:
    """Generate a map big enough for ``n_locations`` capture points and sample them.

    The map side grows (deterministically) until enough street locations fit.

    Args:
        n_locations: how many capture locations to place on the streets.
        rng: the random generator (the whole map follows from its state).
        config: the map's knobs.
        min_side_m: a lower bound on the side of the sampled area (VIGOR grids use it).

    Returns:
        The finalized :class:`City`; ``locations`` has exactly ``n_locations`` rows.
    """
    side = max(
        config.min_side_m,
        math.sqrt(max(n_locations, 1) * config.area_per_location_m2),
        min_side_m or 0.0,
    )
    m = config.margin_m
    for _attempt in range(8):
        xs, ys, roads = _street_network(side + 2 * m, rng)
        area = (m, m, m + side, m + side)
        locs = sample_locations(roads, n_locations, config.min_spacing_m, area, rng)
        if len(locs) == n_locations:
            break
        side *= 1.2
    else:
        raise RuntimeError(f"could not place {n_locations} locations on the synthetic map")
    total = side + 2 * m
    world = World(
        total,
        total,
        config.resolution_m,
        ground_rgb=GRASS[0],
        sun_azimuth_deg=config.sun_azimuth_deg,
        sun_elevation_deg=config.sun_elevation_deg,
        shadow_strength=config.shadow_strength,
        rng=rng,
    )
    if config.style == "flat":
        world.tex[:] = 128  # no texture noise (the noise was drawn: the layout is unchanged)
    elif config.texture_strength != 1.0:
        amp = (world.tex.astype(np.float32) - 128.0) * np.float32(config.texture_strength)
        world.tex = np.clip(128.0 + amp + 0.5, 0, 255).astype(np.uint8)
    k = config.scene_density
    world.paint_rect(0, 0, total, total, GRASS[1], texture=0.3)
    # blocks, inset from the streets around them
    for i in range(len(xs) - 1):
        for j in range(len(ys) - 1):
            (xa, wa), (xb, wb) = xs[i], xs[i + 1]
            (ya, va), (yb, vb) = ys[j], ys[j + 1]
            block = (xa + wa / 2 + 3.5, ya + va / 2 + 3.5, xb - wb / 2 - 3.5, yb - vb / 2 - 3.5)
            if block[2] - block[0] < 8 or block[3] - block[1] < 8:
                continue
            if block[2] < 0 or block[3] < 0 or block[0] > total or block[1] > total:
                continue
            d = _distance((xa + xb) / 2, (ya + yb) / 2, total)
            _BLOCKS[_land_use(d, rng, config)](world, block, rng, k)
            if world.num_objects > 55000:
                break
    full = total
    for road in roads:
        _paint_street(world, road, full, rng)
    for road in roads:
        _paint_markings(world, road)
    for road in roads:
        if world.num_objects > 64000:
            break
        _street_trees_and_cars(world, road, full, locs, rng, k)
    if config.transient_prob > 0.0:
        _mark_transient_cars(world, config.transient_prob, rng)
    world.finalize()
    if config.style == "flat":
        _flatten_palette(world)
    return City(world=world, roads=roads, locations=locs, area=area)


__all__ = ["City", "CityConfig", "Road", "build_city", "sample_locations", "RIDGE_FLAT"]
