"""Layout writers: where each rendered image goes and which index files describe them,
exactly as the public datasets ship (CVUSA, CVACT, VIGOR) or as the generic ``folder``
layout.

A writer plans the world in *chunks* (each chunk is its own procedural map of at most
``CHUNK_LOCATIONS`` locations, placed side by side in the global frame), turns a built
chunk into :class:`RenderTask` s, remembers the index rows, and writes the index files
in :meth:`LayoutWriter.finish`.
"""

from __future__ import annotations

import csv
import io
import math
import string
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ucvgl.services.synth.city import City, CityConfig
from ucvgl.services.synth.geo import CVACT_UTM_ORIGIN, ORIGINS, metres_to_latlon
from ucvgl.services.synth.settings import WorldSettings
from ucvgl.shared.errors import ConfigError
from ucvgl.shared.fileio import atomic_write, atomic_write_text

FORMATS: tuple[str, ...] = ("cvusa", "cvact", "vigor", "folder")
CHUNK_LOCATIONS = 500
"""At most this many locations share one procedural map (bounds memory to ~120 MB)."""
CHUNK_GAP_M = 300.0
ID_ALPHABET = string.ascii_letters + string.digits + "-_"
VIGOR_DEFAULT_CITIES: tuple[str, ...] = ("Chicago",)


@dataclass(frozen=True)
class SynthSpec:
    """Everything that determines a synthetic dataset (two equal specs -> equal bytes)."""

    format: str
    n_train: int
    n_val: int
    seed: int
    pano_size: tuple[int, int]
    sat_size: int
    band_deg: tuple[float, float] = (38.6, -26.9)
    cities: tuple[str, ...] = ()
    origin: tuple[float, float] | None = None
    jpeg_quality: int = 90
    world: WorldSettings = WorldSettings()
    n_test: int = 0
    """CVACT only: locations written to ``ANU_data_test/`` (CVACT_test), in no .mat split."""

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"unknown synth format {self.format!r}; choose one of {FORMATS}")
        if self.n_train < 0 or self.n_val < 0 or self.n_train + self.n_val == 0:
            raise ConfigError("n_train and n_val must be >= 0 and not both 0")
        if self.n_test < 0 or (self.n_test and self.format != "cvact"):
            raise ConfigError(
                f"n_test (CVACT_test locations) is for format cvact only and must be >= 0; "
                f"got {self.n_test} for format {self.format!r}"
            )
        h, w = self.pano_size
        if h < 8 or w < 16:
            raise ConfigError(f"pano_size {self.pano_size} is too small (at least 8x16)")
        if self.sat_size < 8:
            raise ConfigError(f"sat_size {self.sat_size} is too small (at least 8)")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality {self.jpeg_quality} must be in 1..100")
        if not isinstance(self.world, WorldSettings):
            raise ConfigError(f"world must be a WorldSettings, got {type(self.world).__name__}")
        top, bottom = self.band_deg
        if not (90.0 >= top > 0.0 > bottom >= -90.0):
            raise ConfigError(f"band_deg {self.band_deg} must be (top > 0 > bottom) in degrees")
        if self.format == "vigor":
            unknown = [c for c in self.cities if c not in ORIGINS or c in FORMATS]
            if unknown or not self.cities:
                raise ConfigError(
                    f"VIGOR cities must be among Chicago, NewYork, SanFrancisco, Seattle; "
                    f"got {list(self.cities)}"
                )
            if self.n_train + self.n_val < len(self.cities):
                raise ConfigError("VIGOR needs at least one panorama per city")

    def params(self) -> dict:
        """JSON-friendly parameters (compared on resume)."""
        d = asdict(self)
        d["pano_size"] = list(self.pano_size)
        d["band_deg"] = list(self.band_deg)
        d["cities"] = list(self.cities)
        d["origin"] = list(self.origin) if self.origin is not None else None
        d["world"] = self.world.params()
        if not self.n_test:  # worlds written before CVACT_test existed resume unchanged
            del d["n_test"]
        return d

    def band_rows(self) -> tuple[int, int]:
        """(top, bottom) rows of the full H x W panorama that a CVUSA band keeps."""
        h = self.pano_size[0]
        top, bottom = self.band_deg
        return int(round((90.0 - top) / 180.0 * h)), int(round((90.0 - bottom) / 180.0 * h))

    def origin_of(self, group: str) -> tuple[float, float]:
        if self.origin is not None and self.format != "vigor":
            return self.origin
        return ORIGINS[group or self.format]


@dataclass(frozen=True)
class RenderTask:
    """One image to render: a panorama or a satellite tile at chunk-local metres."""

    kind: str  # "panorama" | "satellite"
    path: str  # relative to the output root
    x: float
    y: float
    key: tuple[int, ...]  # random-stream entropy, besides the seed
    heading_deg: float = 0.0
    rows: tuple[int, int] | None = None


def apply_gps_offset(tasks: list[RenderTask], spec: SynthSpec) -> list[RenderTask]:
    """Move each panorama's camera ``spec.world.gps_offset_m`` metres away from its recorded
    location (the tile centre), in a direction seeded by ``(seed, location)``.

    Returns ``tasks`` itself when the offset is 0 (nothing is drawn).
    """
    dist = spec.world.gps_offset_m
    if dist == 0.0:
        return tasks
    out = []
    for t in tasks:
        if t.kind == "panorama":
            angle = np.random.default_rng([spec.seed, *t.key, 4099]).uniform(0.0, 2.0 * math.pi)
            t = replace(t, x=t.x + dist * math.sin(angle), y=t.y + dist * math.cos(angle))
        out.append(t)
    return out


@dataclass(frozen=True)
class ChunkPlan:
    """A group (VIGOR city, else '') slice of locations that gets its own map."""

    group_index: int
    group: str
    index: int  # chunk index inside the group
    start: int  # first location index inside the group
    count: int
    is_val: np.ndarray = field(repr=False)  # bool [count]
    is_test: np.ndarray | None = field(default=None, repr=False)  # bool [count] (CVACT_test)

    def test_at(self, j: int) -> bool:
        """Whether location ``j`` of the chunk belongs to the test set (CVACT_test)."""
        return self.is_test is not None and bool(self.is_test[j])


def _split_counts(total: int, parts: int) -> list[int]:
    base = [total // parts] * parts
    for i in range(total % parts):
        base[i] += 1
    return base


def _unique_ids(n: int, rng: np.random.Generator, length: int = 22) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    alphabet = np.asarray(list(ID_ALPHABET))
    while len(out) < n:
        s = "".join(alphabet[rng.integers(0, len(alphabet), length)])
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


class LayoutWriter:
    """Base class: chunk planning, global coordinates and the shared meta data."""

    def __init__(self, out: Path, spec: SynthSpec) -> None:
        self.out = Path(out)
        self.spec = spec
        self.rng = np.random.default_rng([spec.seed, 7919])
        self.groups = list(spec.cities) if spec.format == "vigor" else [""]
        self._offsets: dict[tuple[int, int], tuple[float, float]] = {}
        self._cursor: dict[int, float] = {}

    # ---- planning
    def chunks(self) -> list[ChunkPlan]:
        plans: list[ChunkPlan] = []
        trains = _split_counts(self.spec.n_train, len(self.groups))
        vals = _split_counts(self.spec.n_val, len(self.groups))
        tests = _split_counts(self.spec.n_test, len(self.groups))
        for gi, group in enumerate(self.groups):
            n = trains[gi] + vals[gi] + tests[gi]
            is_val = np.zeros(n, bool)
            is_test = np.zeros(n, bool)
            order = self.rng.permutation(n)
            is_val[order[: vals[gi]]] = True
            is_test[order[vals[gi] : vals[gi] + tests[gi]]] = True
            n_chunks = max(1, math.ceil(n / CHUNK_LOCATIONS))
            sizes = _split_counts(n, n_chunks)
            start = 0
            for ci, size in enumerate(sizes):
                part = slice(start, start + size)
                test = is_test[part] if tests[gi] else None
                plans.append(ChunkPlan(gi, group, ci, start, size, is_val[part], test))
                start += size
        return plans

    def base_city_config(self) -> CityConfig:
        """The map knobs of this layout (location density and spacing)."""
        return CityConfig()

    def city_config(self) -> CityConfig:
        """The layout's map knobs with the world settings' scene knobs."""
        return self.spec.world.city_config(self.base_city_config())

    def global_xy(self, chunk: ChunkPlan, city: City, xy: np.ndarray) -> np.ndarray:
        """Chunk-local metres -> metres around the group's origin.

        The first chunk of a group is centred on the origin; later ones follow to the
        east, ``CHUNK_GAP_M`` apart (chunks must be visited in order).
        """
        key = (chunk.group_index, chunk.index)
        if key not in self._offsets:
            left = self._cursor.get(chunk.group_index, -city.world.width_m / 2.0)
            self._offsets[key] = (left, -city.world.height_m / 2.0)
            self._cursor[chunk.group_index] = left + city.world.width_m + CHUNK_GAP_M
        return np.asarray(xy, np.float64).reshape(-1, 2) + np.asarray(self._offsets[key])

    def latlon(self, chunk: ChunkPlan, city: City, xy: np.ndarray) -> np.ndarray:
        g = self.global_xy(chunk, city, xy)
        lat, lon = metres_to_latlon(g[:, 0], g[:, 1], self.spec.origin_of(chunk.group))
        return np.stack([lat, lon], axis=1)

    # ---- per format
    def chunk_tasks(self, chunk: ChunkPlan, city: City) -> list[RenderTask]:
        raise NotImplementedError

    def finish(self) -> dict:
        """Write the index files; returns counts for the meta file."""
        raise NotImplementedError

    def horizon_row(self) -> int:
        """The row of the full H x W panorama that looks at the horizon (H/2 at pitch 0)."""
        h = self.spec.pano_size[0]
        pitch = self.spec.world.camera_pitch_deg
        return h // 2 if pitch == 0.0 else int(round((90.0 + pitch) / 180.0 * h))

    def panorama_info(self) -> dict:
        h, w = self.spec.pano_size
        return {"kind": "full", "size": [h, w], "horizon_row": self.horizon_row()}

    def describe(self) -> dict:
        """Geometry facts every consumer needs (written to synth_meta.json).

        With ``record_geometry=False`` the camera height, tile extent, BEV FOV, metres per
        pixel and the panorama's elevation geometry are left out, like a real dataset.
        """
        world = self.spec.world
        extent = world.tile_extent
        satellite = {
            "size": self.spec.sat_size,
            "orientation": "north up, east right; the location is the tile centre",
        }
        if not world.record_geometry:
            return {
                "satellite": satellite,
                "origins": self.origins(),
                "geometry_recorded": False,
            }
        convention = "row v of the full sphere looks at elevation 90 - v/H*180 deg"
        if world.camera_pitch_deg != 0.0:
            convention = (
                f"row v of the full sphere looks at elevation 90 - v/H*180 "
                f"+ {world.camera_pitch_deg:g} deg (camera pitch)"
            )
        return {
            "camera_height_m": world.camera_height_m,
            "tile_extent_m": extent,
            "bev_fov_deg": world.bev_fov_deg,
            "satellite": {**satellite, "metres_per_pixel": extent / self.spec.sat_size},
            "panorama": self.panorama_info(),
            "panorama_convention": (
                "column u looks at azimuth heading + (u/W - 0.5)*360 deg clockwise from north; "
                + convention
            ),
            "origins": self.origins(),
        }

    def origins(self) -> dict:
        return {g or self.spec.format: list(self.spec.origin_of(g)) for g in self.groups}


def _loc_key(chunk: ChunkPlan, j: int, kind: int) -> tuple[int, ...]:
    return (chunk.group_index, chunk.start + j, kind)


# --------------------------------------------------------------------------- CVUSA
class CvusaWriter(LayoutWriter):
    """``bingmap/19/NNNNNNN.jpg``, ``streetview/panos/NNNNNNN.jpg`` (horizon band) and
    ``splits/{train,val}-19zl.csv``."""

    def __init__(self, out: Path, spec: SynthSpec) -> None:
        super().__init__(out, spec)
        self.rows: dict[str, list[str]] = {"train": [], "val": []}

    def panorama_info(self) -> dict:
        h, w = self.spec.pano_size
        top, bottom = self.spec.band_rows()
        pitch = self.spec.world.camera_pitch_deg
        return {
            "kind": "band",
            "full_size": [h, w],
            "size": [bottom - top, w],
            "band_rows_in_full": [top, bottom],
            "top_elevation_deg": 90.0 - top / h * 180.0 + pitch,
            "bottom_elevation_deg": 90.0 - bottom / h * 180.0 + pitch,
            "horizon_row_in_band": self.horizon_row() - top,
            "placement": (
                f"paste the band at rows [{top}, {bottom}) of a {h}x{w} (2:1) canvas to get "
                "the full-sphere geometry; row H/2 of that canvas is the horizon"
            ),
        }

    def chunk_tasks(self, chunk: ChunkPlan, city: City) -> list[RenderTask]:
        tasks = []
        rows = self.spec.band_rows()
        for j, (x, y) in enumerate(city.locations):
            ident = f"{chunk.start + j + 1:07d}"
            sat = f"bingmap/19/{ident}.jpg"
            pano = f"streetview/panos/{ident}.jpg"
            tasks.append(RenderTask("satellite", sat, x, y, _loc_key(chunk, j, 0)))
            tasks.append(RenderTask("panorama", pano, x, y, _loc_key(chunk, j, 1), rows=rows))
            split = "val" if chunk.is_val[j] else "train"
            self.rows[split].append(f"{sat},{pano},streetview/annotations/{ident}.png")
        return tasks

    def finish(self) -> dict:
        for split, name in (("train", "train-19zl.csv"), ("val", "val-19zl.csv")):
            text = "".join(r + "\n" for r in self.rows[split])
            atomic_write_text(self.out / "splits" / name, text)
        return {k: len(v) for k, v in self.rows.items()}


# --------------------------------------------------------------------------- CVACT
class CvactWriter(LayoutWriter):
    """``ACT_data.mat`` (panoIds, utm, trainSet.trainInd, valSet.valInd; 1-based) and
    ``ANU_data_small/{streetview,satview_polish}/<id>_*.jpg``; with ``n_test`` also
    CVACT_test in ``ANU_data_test/{streetview,satview_polish}/`` (its ids are rows of
    panoIds/utm but in neither split struct, paired by id like the real CVACT_test)."""

    def __init__(self, out: Path, spec: SynthSpec) -> None:
        super().__init__(out, spec)
        self.ids = _unique_ids(spec.n_train + spec.n_val + spec.n_test, self.rng)
        self.utm = np.zeros((len(self.ids), 2), np.float64)
        self.is_val = np.zeros(len(self.ids), bool)
        self.is_test = np.zeros(len(self.ids), bool)

    def chunk_tasks(self, chunk: ChunkPlan, city: City) -> list[RenderTask]:
        tasks = []
        g = self.global_xy(chunk, city, city.locations)
        for j, (x, y) in enumerate(city.locations):
            k = chunk.start + j
            ident = self.ids[k]
            folder = "ANU_data_test" if chunk.test_at(j) else "ANU_data_small"
            tasks.append(
                RenderTask(
                    "satellite",
                    f"{folder}/satview_polish/{ident}_satView_polish.jpg",
                    x,
                    y,
                    _loc_key(chunk, j, 0),
                )
            )
            tasks.append(
                RenderTask(
                    "panorama",
                    f"{folder}/streetview/{ident}_grdView.jpg",
                    x,
                    y,
                    _loc_key(chunk, j, 1),
                )
            )
            self.utm[k] = (CVACT_UTM_ORIGIN[0] + g[j, 0], CVACT_UTM_ORIGIN[1] + g[j, 1])
            self.is_val[k] = chunk.is_val[j]
            self.is_test[k] = chunk.test_at(j)
        return tasks

    def finish(self) -> dict:
        from scipy.io import savemat

        train = (np.flatnonzero(~self.is_val & ~self.is_test) + 1).astype(np.int32).reshape(-1, 1)
        val = (np.flatnonzero(self.is_val) + 1).astype(np.int32).reshape(-1, 1)
        mdict = {
            "panoIds": np.asarray(self.ids),
            "utm": self.utm,
            "trainSet": {"trainNum": np.int32(len(train)), "trainInd": train},
            "valSet": {"valNum": np.int32(len(val)), "valInd": val},
        }
        buf = io.BytesIO()
        savemat(buf, mdict, do_compression=False)
        atomic_write(self.out / "ACT_data.mat", lambda fh: fh.write(buf.getvalue()))
        counts = {"train": int(len(train)), "val": int(len(val))}
        if self.spec.n_test:
            counts["test"] = int(self.is_test.sum())
        return counts


# --------------------------------------------------------------------------- VIGOR
class VigorWriter(LayoutWriter):
    """``<City>/panorama/<id>,<lat>,<lon>,.jpg``, ``<City>/satellite/satellite_<lat>_<lon>.png``
    on a half-overlapping grid, and ``splits/<City>/*.txt``.

    Label lines: ``<pano> <pos> <dy> <dx> <semi1> <dy> <dx> <semi2> <dy> <dx> <semi3> <dy> <dx>``
    with real VIGOR's sign convention: ``dy, dx`` = (tile centre - panorama) along
    (north, east) in tile pixels, i.e. the panorama sits at pixel
    ``(row, col) = (S/2 + dy, S/2 - dx)`` of that tile.
    """

    def __init__(self, out: Path, spec: SynthSpec) -> None:
        super().__init__(out, spec)
        n = spec.n_train + spec.n_val
        self.pano_ids = _unique_ids(n, self.rng)
        self.tiles: dict[str, list[str]] = {c: [] for c in self.groups}
        self.lines: dict[str, list[tuple[bool, str]]] = {c: [] for c in self.groups}
        self._id_base = {
            c: sum(_split_counts(spec.n_train, len(self.groups))[:i])
            + sum(_split_counts(spec.n_val, len(self.groups))[:i])
            for i, c in enumerate(self.groups)
        }

    def base_city_config(self) -> CityConfig:
        """Denser panoramas than the one-to-one layouts: real VIGOR has about 1.2
        panoramas per tile of its half-overlapping grid; here about 1 per 700 m^2, at least
        12 m apart, which is ~0.75 per tile (a tile step is 22.9 m)."""
        return CityConfig(area_per_location_m2=700.0, min_spacing_m=12.0)

    def chunk_tasks(self, chunk: ChunkPlan, city: City) -> list[RenderTask]:
        city_name = chunk.group
        ax0, ay0, ax1, ay1 = city.area
        half = self.spec.world.tile_extent / 2.0
        cx = ax0 - half + np.arange(int(math.ceil((ax1 - ax0) / half)) + 3) * half
        cy = ay0 - half + np.arange(int(math.ceil((ay1 - ay0) / half)) + 3) * half
        grid = np.stack(np.meshgrid(cx, cy, indexing="ij"), axis=-1).reshape(-1, 2)
        ll = self.latlon(chunk, city, grid)
        names = [f"satellite_{float(a)!r}_{float(b)!r}.png" for a, b in ll]
        tasks = []
        for t, ((x, y), name) in enumerate(zip(grid, names, strict=True)):
            tasks.append(
                RenderTask(
                    "satellite",
                    f"{city_name}/satellite/{name}",
                    x,
                    y,
                    (chunk.group_index, 1_000_000 + chunk.index * 100_000 + t, 2),
                )
            )
        self.tiles[city_name] += names
        scale = self.spec.sat_size / self.spec.world.tile_extent
        pano_ll = self.latlon(chunk, city, city.locations)
        for j, (x, y) in enumerate(city.locations):
            ix, iy = int(np.argmin(np.abs(cx - x))), int(np.argmin(np.abs(cy - y)))
            sx = ix + (1 if x >= cx[ix] else -1)
            sy = iy + (1 if y >= cy[iy] else -1)
            fields = []
            for gx, gy in ((ix, iy), (sx, iy), (ix, sy), (sx, sy)):
                name = names[gx * len(cy) + gy]
                dy = (cy[gy] - y) * scale
                dx = (cx[gx] - x) * scale
                fields += [name, f"{dy:.4f}", f"{dx:.4f}"]
            ident = self.pano_ids[self._id_base[city_name] + chunk.start + j]
            lat, lon = pano_ll[j]
            pano = f"{ident},{lat:.6f},{lon:.6f},.jpg"
            tasks.append(
                RenderTask("panorama", f"{city_name}/panorama/{pano}", x, y, _loc_key(chunk, j, 1))
            )
            self.lines[city_name].append((bool(chunk.is_val[j]), " ".join([pano, *fields])))
        return tasks

    def finish(self) -> dict:
        counts = {}
        for c in self.groups:
            d = self.out / "splits" / c
            atomic_write_text(d / "satellite_list.txt", "".join(n + "\n" for n in self.tiles[c]))
            lines = self.lines[c]
            atomic_write_text(
                d / "same_area_balanced_train.txt", "".join(s + "\n" for v, s in lines if not v)
            )
            atomic_write_text(
                d / "same_area_balanced_test.txt", "".join(s + "\n" for v, s in lines if v)
            )
            atomic_write_text(d / "pano_label_balanced.txt", "".join(s + "\n" for _, s in lines))
            counts[c] = {
                "satellite": len(self.tiles[c]),
                "train": sum(1 for v, _ in lines if not v),
                "test": sum(1 for v, _ in lines if v),
            }
        return counts

    def describe(self) -> dict:
        d = super().describe()
        if self.spec.world.record_geometry:
            d["vigor_grid_stride_m"] = self.spec.world.tile_extent / 2.0
        d["vigor_offset_convention"] = (
            "dy dx = (tile centre - panorama) along (north, east) in tile pixels; the panorama "
            "is at pixel (row, col) = (S/2 + dy, S/2 - dx)"
        )
        return d


# --------------------------------------------------------------------------- folder
class FolderWriter(LayoutWriter):
    """``ground/``, ``satellite/``, ``satellite_coords.csv``, ``ground_meta.csv`` (random
    headings: each panorama is rendered rotated) and ``pairs.csv``."""

    def __init__(self, out: Path, spec: SynthSpec) -> None:
        super().__init__(out, spec)
        w = spec.pano_size[1]
        n = spec.n_train + spec.n_val
        # headings on whole columns, so rolling back to north is exact
        self.headings = self.rng.integers(0, w, n) * (360.0 / w)
        self.sat_rows: list[tuple[str, float, float]] = []
        self.ground_rows: list[tuple[str, float, float, float, str]] = []
        self.pairs: list[tuple[str, str, str]] = []

    def chunk_tasks(self, chunk: ChunkPlan, city: City) -> list[RenderTask]:
        tasks = []
        ll = self.latlon(chunk, city, city.locations)
        for j, (x, y) in enumerate(city.locations):
            k = chunk.start + j
            g, s = f"g{k + 1:06d}.jpg", f"s{k + 1:06d}.jpg"
            heading = float(self.headings[k])
            tasks.append(RenderTask("satellite", f"satellite/{s}", x, y, _loc_key(chunk, j, 0)))
            tasks.append(
                RenderTask(
                    "panorama", f"ground/{g}", x, y, _loc_key(chunk, j, 1), heading_deg=heading
                )
            )
            split = "val" if chunk.is_val[j] else "train"
            lat, lon = ll[j]
            self.sat_rows.append((s, lat, lon))
            self.ground_rows.append((g, heading, lat, lon, split))
            self.pairs.append((g, s, split))
        return tasks

    def finish(self) -> dict:
        def table(header: list[str], rows: list[tuple]) -> str:
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(header)
            for r in rows:
                w.writerow([f"{v:.8f}" if isinstance(v, float) else v for v in r])
            return buf.getvalue()

        atomic_write_text(
            self.out / "satellite_coords.csv", table(["name", "lat", "lon"], self.sat_rows)
        )
        atomic_write_text(
            self.out / "ground_meta.csv",
            table(["name", "heading_deg", "lat", "lon", "split"], self.ground_rows),
        )
        atomic_write_text(
            self.out / "pairs.csv", table(["ground", "satellite", "split"], self.pairs)
        )
        return {s: sum(1 for p in self.pairs if p[2] == s) for s in ("train", "val")}


WRITERS: dict[str, type[LayoutWriter]] = {
    "cvusa": CvusaWriter,
    "cvact": CvactWriter,
    "vigor": VigorWriter,
    "folder": FolderWriter,
}


def make_writer(out: Path, spec: SynthSpec) -> LayoutWriter:
    """The writer of ``spec.format``."""
    return WRITERS[spec.format](out, spec)
