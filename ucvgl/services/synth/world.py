"""The world map of the synthetic cross-view world: rasters on a metric grid.

Coordinates are metres: ``x`` grows east, ``y`` grows north, the map covers
``[0, width_m) x [0, height_m)``. Rasters are stored north-up (row 0 is the northern edge),
so a point ``(x, y)`` lies in raster cell ``(row, col) = (floor((height_m - y) / res),
floor(x / res))``.

Layers (``rows x cols`` each):

- ``ground``: uint8 [rows, cols, 3], the colour of the ground surface (grass, road...),
  also under trees and cars (panorama rays can see it there).
- ``obj``: uint16 [rows, cols], the id of the object standing on the cell (0 = none).
- ``height``: uint8 [rows, cols], the top of that object in units of ``HEIGHT_UNIT_M``.
- ``tex``: uint8 [rows, cols], a smooth noise field (128 = neutral) that textures
  ground, roofs and foliage.
- ``shadow``: bool [rows, cols], cells in the shadow of the sun (set by :meth:`finalize`).

Objects may be *transient* (:meth:`World.set_transient`): present in only one of the two
views. After :meth:`finalize`, ``sat_hidden`` / ``pano_hidden`` are bool [objects + 1]
tables of the objects a view does not see, or None when every object is in both views.

Objects are buildings and cars (boxes standing on the ground) and trees (an ellipsoidal
crown floating above the ground). Their colours and shapes live in small per-object
tables indexed by ``obj``.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

KIND_NONE, KIND_BUILDING, KIND_TREE, KIND_CAR = 0, 1, 2, 3
HEIGHT_UNIT_M = 0.125
"""Heights are stored as uint8 multiples of this (max 31.9 m)."""
MAX_OBJECTS = 65535
RIDGE_FLAT, RIDGE_EAST_WEST, RIDGE_NORTH_SOUTH = 0, 1, 2


def value_noise(shape: tuple[int, int], cell_px: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random noise in [-1, 1]: a coarse random grid, bilinearly upsampled.

    Args:
        shape: (rows, cols) of the output.
        cell_px: size in pixels of one grid cell of the coarse grid (feature size).
        rng: the random generator.

    Returns:
        float32 [rows, cols].
    """
    rows, cols = shape
    gr, gc = int(math.ceil(rows / cell_px)) + 2, int(math.ceil(cols / cell_px)) + 2
    coarse = rng.uniform(-1.0, 1.0, size=(gr, gc)).astype(np.float32)
    big = Image.fromarray(coarse, mode="F").resize(
        (cols, rows),
        Image.Resampling.BILINEAR,
        box=(0.5, 0.5, cols / cell_px + 0.5, rows / cell_px + 0.5),
    )
    return np.array(big, dtype=np.float32)


class World:
    """A rasterised map plus the table of objects standing on it.

    Build one with the painting methods (``paint_rect``, ``paint_disk``, ``add_box``,
    ``add_tree``), then call :meth:`finalize` once before rendering.

    Args:
        width_m, height_m: extent east-west and north-south in metres.
        resolution_m: size of one raster cell in metres.
        ground_rgb: the initial ground colour.
        sun_azimuth_deg: where the sun is, degrees clockwise from north.
        sun_elevation_deg: the sun's elevation above the horizon.
        shadow_strength: how much a shadow darkens the satellite view (0 none, 0.5: to half).
        rng: random generator for the texture field; None gives a flat (untextured) map.
    """

    def __init__(
        self,
        width_m: float,
        height_m: float,
        resolution_m: float = 0.3,
        *,
        ground_rgb: tuple[int, int, int] = (110, 130, 80),
        sun_azimuth_deg: float = 135.0,
        sun_elevation_deg: float = 50.0,
        shadow_strength: float = 0.5,
        rng: np.random.Generator | None = None,
    ) -> None:
        if resolution_m <= 0 or width_m <= 0 or height_m <= 0:
            raise ValueError("world size and resolution must be positive")
        self.res = float(resolution_m)
        self.cols = int(math.ceil(width_m / self.res))
        self.rows = int(math.ceil(height_m / self.res))
        self.width_m = self.cols * self.res
        self.height_m = self.rows * self.res
        self.sun_azimuth_deg = float(sun_azimuth_deg)
        self.sun_elevation_deg = float(sun_elevation_deg)
        self.shadow_strength = float(shadow_strength)
        self.ground = np.empty((self.rows, self.cols, 3), np.uint8)
        self.ground[:] = np.asarray(ground_rgb, np.uint8)
        self.obj = np.zeros((self.rows, self.cols), np.uint16)
        self.height = np.zeros((self.rows, self.cols), np.uint8)
        if rng is None:
            self.tex = np.full((self.rows, self.cols), 128, np.uint8)
        else:
            # three octaves of value noise, summed at half resolution, then upsampled
            half = 2.0 * self.res
            shape = ((self.rows + 1) // 2, (self.cols + 1) // 2)
            noise = value_noise(shape, 24.0 / half, rng)
            noise *= 0.5
            noise += 0.3 * value_noise(shape, 5.0 / half, rng)
            noise += 0.2 * value_noise(shape, 1.2 / half, rng)
            noise *= 127.0
            noise += 128.0
            small = Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8), mode="L")
            full = small.resize((self.cols, self.rows), Image.Resampling.BILINEAR)
            self.tex = np.asarray(full, dtype=np.uint8).copy()
        self.shadow = np.zeros((self.rows, self.cols), bool)
        # Object tables; index 0 is "no object".
        self._kind: list[int] = [KIND_NONE]
        self._roof: list[tuple[int, int, int]] = [(0, 0, 0)]
        self._side: list[tuple[int, int, int]] = [(0, 0, 0)]
        self._crown: list[tuple[float, float]] = [(0.0, 1.0)]  # (centre height, half height)
        self._ridge: list[tuple[int, float, float]] = [(RIDGE_FLAT, 0.0, 0.0)]
        self._windows: list[bool] = [False]
        self._sat_only: list[int] = []
        self._pano_only: list[int] = []
        self.sat_hidden: np.ndarray | None = None
        self.pano_hidden: np.ndarray | None = None
        self.finalized = False

    # ------------------------------------------------------------------ geometry helpers
    @property
    def num_objects(self) -> int:
        return len(self._kind) - 1

    def _slices(self, x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice] | None:
        """Raster slices of the cells whose centres lie in the rectangle, or None if empty."""
        xa, xb = sorted((x0, x1))
        ya, yb = sorted((y0, y1))
        c0 = max(int(math.ceil(xa / self.res - 0.5)), 0)
        c1 = min(int(math.ceil(xb / self.res - 0.5)), self.cols)
        r0 = max(int(math.ceil((self.height_m - yb) / self.res - 0.5)), 0)
        r1 = min(int(math.ceil((self.height_m - ya) / self.res - 0.5)), self.rows)
        if c1 <= c0 or r1 <= r0:
            return None
        return slice(r0, r1), slice(c0, c1)

    def cell_centres(self, rs: slice, cs: slice) -> tuple[np.ndarray, np.ndarray]:
        """World (x [1, w], y [h, 1]) of the cell centres of a raster window."""
        xs = (np.arange(cs.start, cs.stop, dtype=np.float32) + 0.5) * self.res
        ys = self.height_m - (np.arange(rs.start, rs.stop, dtype=np.float32) + 0.5) * self.res
        return xs[None, :], ys[:, None]

    def _shade(self, rgb: tuple[int, int, int], rs: slice, cs: slice, texture: float) -> np.ndarray:
        """uint8 [h, w, 3]: ``rgb`` modulated by ``1 + texture * (tex - 128) / 128``."""
        colour = np.asarray(rgb, np.float32)
        if texture == 0:
            flat = np.clip(colour, 0, 255).astype(np.uint8)
            return np.broadcast_to(flat, (rs.stop - rs.start, cs.stop - cs.start, 3))
        levels = (np.arange(256, dtype=np.float32) - 128.0) / 128.0
        lut = np.clip(colour[None, :] * (1.0 + texture * levels)[:, None] + 0.5, 0, 255)
        return lut.astype(np.uint8)[self.tex[rs, cs]]  # a table lookup per cell

    # ------------------------------------------------------------------ ground painting
    def paint_rect(
        self,
        x0: float,
        y0: float,
        x1: float,
        y1: float,
        rgb: tuple[int, int, int],
        texture: float = 0.0,
    ) -> None:
        """Paint the ground of an axis-aligned rectangle (metres) with a textured colour."""
        sl = self._slices(x0, y0, x1, y1)
        if sl is None:
            return
        rs, cs = sl
        self.ground[rs, cs] = self._shade(rgb, rs, cs, texture)

    def paint_stripes(
        self,
        x0: float,
        y0: float,
        x1: float,
        y1: float,
        rgb_a: tuple[int, int, int],
        rgb_b: tuple[int, int, int],
        period_m: float,
        along_x: bool,
        texture: float = 0.0,
    ) -> None:
        """Paint a rectangle with alternating stripes (crop rows, parking stalls)."""
        sl = self._slices(x0, y0, x1, y1)
        if sl is None:
            return
        rs, cs = sl
        xs, ys = self.cell_centres(rs, cs)
        coord = np.broadcast_to(ys if along_x else xs, (rs.stop - rs.start, cs.stop - cs.start))
        band = (np.floor(coord / (period_m / 2.0)).astype(np.int64) % 2).astype(bool)
        a = self._shade(rgb_a, rs, cs, texture)
        b = self._shade(rgb_b, rs, cs, texture)
        self.ground[rs, cs] = np.where(band[..., None], b, a)

    def paint_disk(
        self, cx: float, cy: float, radius: float, rgb: tuple[int, int, int], texture: float = 0.0
    ) -> None:
        """Paint the ground of a disk (ponds, roundabouts)."""
        sl = self._slices(cx - radius, cy - radius, cx + radius, cy + radius)
        if sl is None:
            return
        rs, cs = sl
        xs, ys = self.cell_centres(rs, cs)
        inside = (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2
        colour = self._shade(rgb, rs, cs, texture)
        self.ground[rs, cs] = np.where(inside[..., None], colour, self.ground[rs, cs])

    # ------------------------------------------------------------------ objects
    def _new_object(
        self,
        kind: int,
        roof: tuple[int, int, int],
        side: tuple[int, int, int],
        crown: tuple[float, float] = (0.0, 1.0),
        ridge: tuple[int, float, float] = (RIDGE_FLAT, 0.0, 0.0),
        windows: bool = False,
    ) -> int:
        if self.finalized:
            raise RuntimeError("the world is finalized; build a new World to add objects")
        if len(self._kind) > MAX_OBJECTS:
            raise ValueError(f"a World holds at most {MAX_OBJECTS} objects")
        self._kind.append(kind)
        self._roof.append(tuple(int(v) for v in roof))
        self._side.append(tuple(int(v) for v in side))
        self._crown.append((float(crown[0]), float(crown[1])))
        self._ridge.append((int(ridge[0]), float(ridge[1]), float(ridge[2])))
        self._windows.append(bool(windows))
        return len(self._kind) - 1

    def add_box(
        self,
        x0: float,
        y0: float,
        x1: float,
        y1: float,
        height_m: float,
        roof_rgb: tuple[int, int, int],
        facade_rgb: tuple[int, int, int],
        *,
        kind: int = KIND_BUILDING,
        ridge: int = RIDGE_FLAT,
        windows: bool = True,
    ) -> int:
        """Add a box standing on the ground (a building or a car); returns its id (0 if
        it covers no free cell). Cells already taken by another object are left alone."""
        sl = self._slices(x0, y0, x1, y1)
        if sl is None:
            return 0
        rs, cs = sl
        free = self.obj[rs, cs] == 0
        if not free.any():
            return 0
        ridge_spec = (ridge, (x0 + x1) / 2.0, (y0 + y1) / 2.0)
        oid = self._new_object(kind, roof_rgb, facade_rgb, ridge=ridge_spec, windows=windows)
        h = np.uint8(min(max(round(height_m / HEIGHT_UNIT_M), 1), 255))
        self.obj[rs, cs] = np.where(free, oid, self.obj[rs, cs])
        self.height[rs, cs] = np.where(free, h, self.height[rs, cs])
        return oid

    def add_tree(
        self,
        cx: float,
        cy: float,
        radius_m: float,
        height_m: float,
        foliage_rgb: tuple[int, int, int],
        *,
        crown_base_m: float = 2.5,
    ) -> int:
        """Add a tree: an ellipsoidal crown of horizontal radius ``radius_m`` whose top is
        at ``height_m`` and whose bottom is not below ``crown_base_m``. Returns its id."""
        half = min(radius_m, max((height_m - crown_base_m) / 2.0, 0.5))
        centre = height_m - half
        sl = self._slices(cx - radius_m, cy - radius_m, cx + radius_m, cy + radius_m)
        if sl is None:
            return 0
        rs, cs = sl
        xs, ys = self.cell_centres(rs, cs)
        r2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / radius_m**2
        mask = (r2 < 1.0) & (self.obj[rs, cs] == 0)
        if not mask.any():
            return 0
        oid = self._new_object(KIND_TREE, foliage_rgb, foliage_rgb, crown=(centre, half))
        top = centre + half * np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
        h = np.clip(np.round(top / HEIGHT_UNIT_M), 1, 255).astype(np.uint8)
        self.obj[rs, cs] = np.where(mask, oid, self.obj[rs, cs])
        self.height[rs, cs] = np.where(mask, h, self.height[rs, cs])
        return oid

    def set_transient(self, satellite_only: list[int], panorama_only: list[int]) -> None:
        """Mark objects as seen by one view only (before :meth:`finalize`)."""
        if self.finalized:
            raise RuntimeError("the world is finalized; mark transient objects before")
        self._sat_only += [int(i) for i in satellite_only]
        self._pano_only += [int(i) for i in panorama_only]

    # ------------------------------------------------------------------ finishing
    def finalize(self) -> World:
        """Freeze the object tables into arrays and compute the sun's shadows."""
        self.kind = np.asarray(self._kind, np.uint8)
        self.roof_rgb = np.asarray(self._roof, np.float32).reshape(-1, 3)
        self.side_rgb = np.asarray(self._side, np.float32).reshape(-1, 3)
        crown = np.asarray(self._crown, np.float32).reshape(-1, 2)
        self.crown_centre, self.crown_half = crown[:, 0], crown[:, 1]
        ridge = np.asarray(self._ridge, np.float32).reshape(-1, 3)
        self.ridge, self.ridge_x, self.ridge_y = (
            ridge[:, 0].astype(np.uint8),
            ridge[:, 1],
            ridge[:, 2],
        )
        self.windows = np.asarray(self._windows, bool)
        if self._sat_only or self._pano_only:
            n = len(self._kind)
            self.sat_hidden = np.zeros(n, bool)
            self.pano_hidden = np.zeros(n, bool)
            self.sat_hidden[self._pano_only] = True
            self.pano_hidden[self._sat_only] = True
        self.shadow = self._compute_shadow()
        self.finalized = True
        return self

    def _compute_shadow(self) -> np.ndarray:
        """Cells from which the sun is hidden by a taller object (half-resolution march)."""
        f = 2  # march on a 2x2 max-pooled height map
        rows, cols = self.rows // f * f, self.cols // f * f
        height = self.height
        if self.sat_hidden is not None:  # what the satellite does not see casts no shadow
            height = np.where(self.sat_hidden[self.obj], np.uint8(0), height)
        hm = height[:rows, :cols].reshape(rows // f, f, cols // f, f).max(axis=(1, 3))
        hm = hm.astype(np.float32) * HEIGHT_UNIT_M
        step_m = self.res * f
        tan_e = math.tan(math.radians(max(self.sun_elevation_deg, 5.0)))
        az = math.radians(self.sun_azimuth_deg)
        dc, dr = math.sin(az), -math.cos(az)  # raster direction towards the sun
        n_steps = int(math.ceil(float(hm.max(initial=0.0)) / tan_e / step_m)) + 1
        shadow = np.zeros_like(hm, dtype=bool)
        hr, hc = hm.shape
        for s in range(1, n_steps + 1):
            oy, ox = int(round(s * dr)), int(round(s * dc))
            if abs(oy) >= hr or abs(ox) >= hc:
                break
            src = hm[max(oy, 0) : hr + min(oy, 0), max(ox, 0) : hc + min(ox, 0)]
            dst = (slice(max(-oy, 0), hr + min(-oy, 0)), slice(max(-ox, 0), hc + min(-ox, 0)))
            shadow[dst] |= src > hm[dst] + s * step_m * tan_e
        full = np.zeros((self.rows, self.cols), bool)
        full[:rows, :cols] = shadow.repeat(f, axis=0).repeat(f, axis=1)
        return full

    def cell_of(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raster (row, col) of world points and whether they lie inside the map."""
        col = np.floor(np.asarray(x) / self.res).astype(np.int64)
        row = np.floor((self.height_m - np.asarray(y)) / self.res).astype(np.int64)
        inside = (row >= 0) & (row < self.rows) & (col >= 0) & (col < self.cols)
        return np.clip(row, 0, self.rows - 1), np.clip(col, 0, self.cols - 1), inside

    @property
    def nbytes(self) -> int:
        """Memory held by the rasters."""
        arrays = (self.ground, self.obj, self.height, self.tex, self.shadow)
        return int(sum(a.nbytes for a in arrays))
