"""Renderers of the synthetic world: orthographic satellite tiles and equirectangular
ground panoramas ray-marched through the height field.

Conventions (shared with the projection and the dataset readers):

- Satellite tile: a square of side ``extent_m`` centred on the location, north up
  (image up = north, right = east). Its geometric centre (the corner shared by pixels
  S/2-1 and S/2) is the location.
- Panorama (H x W, 2:1): pixel column ``u`` looks at azimuth
  ``heading + (u / W - 0.5) * 360`` degrees clockwise from north, so column W/2 looks at
  the heading (north for heading 0), W*3/4 east, W/4 west, the edges south. Pixel row
  ``v`` looks at elevation ``90 - v / H * 180`` degrees: row 0 the zenith, row H/2 the
  horizon (a camera pitch adds ``pitch_deg`` to every row's elevation, moving the horizon
  down for a positive pitch). The camera stands ``camera_height_m`` above the ground.

Rendering is vectorised per panorama: for each column the ray's horizontal path is
sampled at ``steps`` geometrically spaced distances (a 1-D profile of the height field),
then every row's ray height along that path is compared with the profile to find the
first object it enters; rays that enter nothing hit the ground plane (below the horizon)
or the sky.

``render_*`` give clean images; :func:`satellite_look` and :func:`panorama_look` add the
per-view colour, exposure and noise differences that make the two views differ the way
real satellite and street-level photographs do.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from ucvgl.services.synth.world import (
    HEIGHT_UNIT_M,
    KIND_BUILDING,
    KIND_CAR,
    KIND_TREE,
    RIDGE_EAST_WEST,
    RIDGE_NORTH_SOUTH,
    World,
)

CAMERA_HEIGHT_M = 2.0
BEV_FOV_DEG = 170.0
TILE_EXTENT_M = 2.0 * CAMERA_HEIGHT_M * math.tan(math.radians(BEV_FOV_DEG / 2.0))
"""45.72 m: the ground square that a 170-degree BEV from 2 m high covers."""
MAX_DISTANCE_M = 120.0
RAY_STEPS = 128

SKY_HORIZON = np.asarray((205, 218, 232), np.float32)
SKY_ZENITH = np.asarray((92, 140, 208), np.float32)
HAZE = np.asarray((196, 204, 214), np.float32)
SHADOW_FACTOR = 0.5
"""The default darkening of shadows (``World.shadow_strength`` 0.5 -> factor 0.5)."""


# --------------------------------------------------------------------------- satellite
def _top_colour(world: World, rs: slice, cs: slice) -> np.ndarray:
    """What the map looks like from straight above in a raster window: float32 [h, w, 3]."""
    ground = world.ground[rs, cs].astype(np.float32)
    ids = world.obj[rs, cs]
    if world.sat_hidden is not None:  # transient objects the satellite does not see
        ids = np.where(world.sat_hidden[ids], np.uint16(0), ids)
    if not ids.any():
        out = ground
    else:
        kind = world.kind[ids]
        tex = (world.tex[rs, cs].astype(np.float32) - 128.0) / 128.0
        colour = world.roof_rgb[ids]
        factor = np.ones(ids.shape, np.float32)
        # pitched roofs: the two slopes catch the light differently
        xs, ys = world.cell_centres(rs, cs)
        ridge = world.ridge[ids]
        ew = ridge == RIDGE_EAST_WEST
        ns = ridge == RIDGE_NORTH_SOUTH
        factor = np.where(ew, np.where(ys > world.ridge_y[ids], 0.82, 1.1), factor)
        factor = np.where(ns, np.where(xs > world.ridge_x[ids], 1.08, 0.86), factor)
        factor = factor * np.where(kind == KIND_BUILDING, 1.0 + 0.06 * tex, 1.0)
        # tree crowns: brighter in the middle, leafy texture
        top = world.height[rs, cs].astype(np.float32) * HEIGHT_UNIT_M
        rel = np.clip((top - world.crown_centre[ids]) / world.crown_half[ids], 0.0, 1.0)
        tree = kind == KIND_TREE
        factor = np.where(tree, (0.62 + 0.45 * rel) * (1.0 + 0.35 * tex), factor)
        obj_colour = colour * factor[..., None]
        out = np.where((ids > 0)[..., None], obj_colour, ground)
    factor = SHADOW_FACTOR if world.shadow_strength == 0.5 else 1.0 - world.shadow_strength
    shade = np.where(world.shadow[rs, cs], factor, 1.0).astype(np.float32)
    return out * shade[..., None]


def render_satellite(
    world: World, x: float, y: float, size: int = 128, *, extent_m: float = TILE_EXTENT_M
) -> np.ndarray:
    """An orthographic, north-up satellite tile centred on ``(x, y)``.

    Args:
        world: a finalized world.
        x, y: the tile centre in metres.
        size: S, the tile's side in pixels.
        extent_m: the tile's side in metres.

    Returns:
        uint8 [S, S, 3]; cells outside the map are black.
    """
    res = world.res
    # pixel-edge coordinates of the tile in the raster
    left, right = (x - extent_m / 2) / res, (x + extent_m / 2) / res
    upper, lower = (
        (world.height_m - (y + extent_m / 2)) / res,
        (world.height_m - (y - extent_m / 2)) / res,
    )
    pad = 3
    c0, c1 = int(math.floor(left)) - pad, int(math.ceil(right)) + pad
    r0, r1 = int(math.floor(upper)) - pad, int(math.ceil(lower)) + pad
    window = np.zeros((r1 - r0, c1 - c0, 3), np.float32)
    rr0, rr1, cc0, cc1 = max(r0, 0), min(r1, world.rows), max(c0, 0), min(c1, world.cols)
    if rr1 > rr0 and cc1 > cc0:
        window[rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0] = _top_colour(
            world, slice(rr0, rr1), slice(cc0, cc1)
        )
    img = Image.fromarray(np.clip(window + 0.5, 0, 255).astype(np.uint8))
    box = (left - c0, upper - r0, right - c0, lower - r0)
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR, box=box))


# --------------------------------------------------------------------------- panorama
def panorama_directions(
    height: int, width: int, heading_deg: float = 0.0, pitch_deg: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth [W] (radians, clockwise from north) and elevation [H] (radians) per pixel.

    ``pitch_deg`` shifts every row's elevation (clipped to +-90 degrees).
    """
    u = np.arange(width, dtype=np.float64)
    v = np.arange(height, dtype=np.float64)
    azimuth = np.radians(heading_deg + (u / width - 0.5) * 360.0)
    if pitch_deg == 0.0:
        elevation = np.radians(90.0 - v / height * 180.0)
    else:
        elevation = np.radians(np.clip(90.0 - v / height * 180.0 + pitch_deg, -90.0, 90.0))
    return azimuth, elevation


def _sky(elevation: np.ndarray) -> np.ndarray:
    """Sky colour per elevation: float32 [n, 3]."""
    t = np.clip(elevation / (math.pi / 2), 0.0, 1.0) ** 0.6
    return SKY_HORIZON * (1 - t)[:, None] + SKY_ZENITH * t[:, None]


def render_panorama(
    world: World,
    x: float,
    y: float,
    size: tuple[int, int] = (128, 256),
    *,
    heading_deg: float = 0.0,
    camera_height_m: float = CAMERA_HEIGHT_M,
    pitch_deg: float = 0.0,
    rows: tuple[int, int] | None = None,
    max_distance_m: float = MAX_DISTANCE_M,
    steps: int = RAY_STEPS,
) -> np.ndarray:
    """A 360 x 180 degree equirectangular panorama from ``(x, y)`` at camera height.

    Args:
        world: a finalized world.
        x, y: the camera position in metres.
        size: (H, W) of the full panorama (2:1 for a full sphere).
        heading_deg: azimuth of the centre column, degrees clockwise from north.
        camera_height_m: camera height above the ground.
        pitch_deg: camera pitch, degrees; added to every row's elevation (positive: the
            camera looks up, the horizon moves down).
        rows: (top, bottom) row range of the full H x W grid to render (a horizon band);
            None renders all H rows.
        max_distance_m: how far rays look for objects.
        steps: samples along each ray (geometrically spaced).

    Returns:
        uint8 [bottom - top, W, 3].
    """
    H, W = size
    top_row, bottom_row = rows if rows is not None else (0, H)
    azimuth, elevation = panorama_directions(H, W, heading_deg, pitch_deg)
    elevation = elevation[top_row:bottom_row]
    n_rows = len(elevation)
    h = float(camera_height_m)

    # ---- 1-D height-field profile along each column's horizontal ray: [W, K]
    t = np.geomspace(0.3, max_distance_m, steps)
    sin_a, cos_a = np.sin(azimuth)[:, None], np.cos(azimuth)[:, None]
    px, py = x + t[None, :] * sin_a, y + t[None, :] * cos_a
    r, c, inside = world.cell_of(px, py)
    ids = np.where(inside, world.obj[r, c], 0)
    if world.pano_hidden is not None:  # transient objects the panorama does not see
        ids = np.where(world.pano_hidden[ids], 0, ids)
    top = world.height[r, c].astype(np.float32) * HEIGHT_UNIT_M
    kind = world.kind[ids]
    is_tree = kind == KIND_TREE
    bottom = np.where(is_tree, 2.0 * world.crown_centre[ids] - top, 0.0).astype(np.float32)
    top = np.where(ids > 0, top, -1e9).astype(np.float32)

    # which face was crossed: the object also covers (x_k, y_{k-1}) -> the ray crossed an
    # east/west face, otherwise a north/south face; same object at k-1 -> roof/underside
    prev_x = np.concatenate([np.full((W, 1), x), px[:, :-1]], axis=1)
    prev_y = np.concatenate([np.full((W, 1), y), py[:, :-1]], axis=1)
    r2, c2, in2 = world.cell_of(px, prev_y)
    x_face = np.where(in2, world.obj[r2, c2], 0) == ids
    r3, c3, in3 = world.cell_of(prev_x, prev_y)
    same_prev = (np.where(in3, world.obj[r3, c3], 0) == ids) & (ids > 0)
    sun = math.radians(world.sun_azimuth_deg)
    normal_x = np.where(x_face, -np.sign(sin_a), 0.0)
    normal_y = np.where(x_face, 0.0, -np.sign(cos_a))
    face_light = 0.58 + 0.42 * np.clip(normal_x * math.sin(sun) + normal_y * math.cos(sun), 0, 1)
    along = np.where(x_face, py, px)  # coordinate along the crossed facade
    tex = (world.tex[r, c].astype(np.float32) - 128.0) / 128.0

    # ---- per-row ray heights [R, K] and ground distances [R]
    tan_e = np.tan(np.clip(elevation, -1.5707, 1.5707))
    # a cell sampled at t_k is entered somewhere in (t_{k-1}, t_k]: test the ray's height
    # at the (geometric) middle of that interval, which halves the stepping error
    t_mid = t * (t[0] / t[1]) ** 0.5
    z = (h + t_mid[None, :] * tan_e[:, None]).astype(np.float32)
    with np.errstate(divide="ignore"):
        t_ground = np.where(elevation < 0, h / np.maximum(-tan_e, 1e-9), np.inf)

    # z >= bottom >= 0 also means the ray has not reached the ground yet, so the first
    # step that satisfies bottom <= z <= top is the first thing the ray hits
    k = np.empty((n_rows, W), np.int64)
    any_hit = np.empty((n_rows, W), bool)
    block = max(1, int(400_000 // max(W * steps, 1)))  # rows per block (cache friendly)
    for b0 in range(0, n_rows, block):
        b1 = min(b0 + block, n_rows)
        zb = z[b0:b1, None, :]  # [B, 1, K]
        hit = zb <= top[None]
        hit &= zb >= bottom[None]
        kb = hit.argmax(axis=2)  # first hit step, 0 where none
        k[b0:b1] = kb
        any_hit[b0:b1] = np.take_along_axis(hit, kb[..., None], axis=2)[..., 0]

    # shade only the rays that hit an object (1-D over those pixels)
    hv, hu = np.nonzero(any_hit)
    kk = k[hv, hu]
    colour = _shade_hits(
        world,
        ids[hu, kk],
        kind[hu, kk],
        z[hv, kk],
        top[hu, kk],
        bottom[hu, kk],
        face_light[hu, kk],
        along[hu, kk],
        tex[hu, kk],
        same_prev[hu, kk],
        tan_e[hv],
    )
    # ground and sky for rays that hit nothing
    below = np.isfinite(t_ground)
    tg = np.where(below, t_ground, 0.0)[:, None]
    gr, gc, gin = world.cell_of(
        x + tg * np.sin(azimuth)[None, :], y + tg * np.cos(azimuth)[None, :]
    )
    ground = np.where(gin[..., None], world.ground[gr, gc], HAZE).astype(np.float32)
    sky = np.broadcast_to(_sky(elevation)[:, None, :], ground.shape)
    pix = np.where(below[:, None, None], ground, sky)
    pix[hv, hu] = colour
    dist = np.where(any_hit, t[k], np.where(below, t_ground, 0.0)[:, None])  # sky: no haze
    fog = (1.0 - np.exp(-np.minimum(dist, 1e4) / 260.0)).astype(np.float32)[..., None]
    out = pix * (1 - fog) + HAZE * fog
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _shade_hits(world: World, ids, kind, z, top, bottom, face_light, along, tex, same_prev, tan_e):
    """Colour of the object surface each ray entered: float32 [..., 3]."""
    side = world.side_rgb[ids]
    roof = world.roof_rgb[ids]
    going_down = tan_e < 0
    through_top = same_prev & going_down  # entered through the roof
    # facades: windows on a floor grid
    fz = np.mod(z, 3.2) / 3.2
    fs = np.mod(along, 2.6) / 2.6
    window = (
        world.windows[ids]
        & (fz > 0.3)
        & (fz < 0.75)
        & (fs > 0.25)
        & (fs < 0.75)
        & (z > 0.8)
        & (z < top - 0.6)
    )
    facade = np.where(window[..., None], side * 0.35 + np.asarray((25, 35, 52), np.float32), side)
    facade = facade * face_light[..., None]
    wheels = (kind == KIND_CAR) & (z < 0.45)
    facade = np.where(wheels[..., None], np.float32(28.0), facade)
    facade = np.where(through_top[..., None], roof, facade)
    # tree crowns: darker below, leafy texture
    rel = np.clip((z - bottom) / np.maximum(top - bottom, 0.1), 0.0, 1.0)
    foliage = roof * ((0.55 + 0.4 * rel) * (1.0 + 0.3 * tex))[..., None]
    return np.where((kind == KIND_TREE)[..., None], foliage, facade).astype(np.float32)


# --------------------------------------------------------------------------- appearance
def _adjust(
    img: np.ndarray,
    gain: np.ndarray,
    gamma: float,
    saturation: float,
    noise: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Per-channel gain and gamma (via lookup tables), saturation, Gaussian noise."""
    levels = np.arange(256, dtype=np.float32) / 255.0
    lut = np.clip(levels[None, :] * gain[:, None], 0.0, 1.0) ** gamma  # [3, 256]
    f = np.stack([lut[c][img[..., c]] for c in range(3)], axis=-1)
    grey = f.mean(axis=-1, keepdims=True)
    f = grey + (f - grey) * np.float32(saturation)
    f += rng.standard_normal(f.shape, dtype=np.float32) * np.float32(noise)
    return np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _range(lo: float, hi: float, jitter: float) -> tuple[float, float]:
    """``(lo, hi)`` with its spread around the middle scaled by ``jitter`` (1: unchanged)."""
    if jitter == 1.0:
        return lo, hi
    mid, half = (lo + hi) / 2.0, (hi - lo) / 2.0 * jitter
    return mid - half, mid + half


def satellite_look(img: np.ndarray, rng: np.random.Generator, jitter: float = 1.0) -> np.ndarray:
    """Satellite camera appearance: bluish, flatter, desaturated, random exposure, noise.

    ``jitter`` scales the random spread of exposure, white balance, gamma and saturation
    (1: the original ranges; 0: every tile gets the middle values).
    """
    gain = np.asarray((0.92, 0.97, 1.06), np.float32) * rng.uniform(*_range(0.85, 1.15, jitter))
    gain = gain * rng.uniform(*_range(0.96, 1.04, jitter), 3).astype(np.float32)
    gamma = float(rng.uniform(*_range(0.8, 1.0, jitter)))
    saturation = float(rng.uniform(*_range(0.65, 0.9, jitter)))
    return _adjust(img, gain, max(gamma, 0.2), max(saturation, 0.0), 0.015, rng)


def panorama_look(img: np.ndarray, rng: np.random.Generator, jitter: float = 1.0) -> np.ndarray:
    """Street-camera appearance: warm, contrasty, random exposure and white balance, noise.

    ``jitter`` scales the random spread as in :func:`satellite_look`.
    """
    gain = np.asarray((1.05, 1.0, 0.93), np.float32) * rng.uniform(*_range(0.8, 1.2, jitter))
    gain = gain * rng.uniform(*_range(0.94, 1.06, jitter), 3).astype(np.float32)
    gamma = float(rng.uniform(*_range(1.0, 1.25, jitter)))
    saturation = float(rng.uniform(*_range(1.0, 1.25, jitter)))
    return _adjust(img, gain, max(gamma, 0.2), max(saturation, 0.0), 0.01, rng)
