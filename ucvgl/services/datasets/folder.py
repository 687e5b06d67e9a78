"""The generic folder layout: unlabelled panoramas and a gallery of satellite tiles.

This is the case the project exists for: a user has street-level panoramas and satellite
tiles of the same area, and no (or few) known pairs. Layout::

    <root>/ground/...        panoramas (.jpg .jpeg .png .webp .tif .tiff, sub-folders allowed)
    <root>/satellite/...     tiles, any size
    <root>/satellite_coords.csv   optional: name,lat,lon   or   name,x,y,crs
    <root>/ground_meta.csv        optional: name[,heading_deg][,lat,lon][,split]
    <root>/pairs.csv              optional: ground,satellite[,split]   (known pairs)

Every CSV has a header row. ``name``/``ground``/``satellite`` give an image's path relative
to its folder, with or without its suffix ("0001.jpg", "0001", "area2/0001.png"). Ids are
those relative paths without suffix.

Panoramas are 360-degree equirectangular images (2:1), north at the centre column unless
``heading_deg`` (the azimuth of the centre column, degrees clockwise from north) says
otherwise; a blank heading means north-aligned (0).

Splits ("train", "val", "test") come from the ``split`` column of ground_meta.csv, else
from that of pairs.csv, else everything is "train". A tile paired with a panorama belongs
to the splits of its panoramas; every other tile is a gallery tile of every split.
With ``skip_invalid``, a bad CSV row drops the panorama or tile it describes.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ucvgl.services.datasets.index import CrossViewDataset, ViewSplit
from ucvgl.services.datasets.layout import _is_folder, check_root, layout_error
from ucvgl.services.datasets.validation import (
    IMAGE_SUFFIXES,
    IssueCollector,
    list_images,
    reader_progress,
    validate_image_headers,
)
from ucvgl.services.progress import NullProgress, Progress
from ucvgl.shared.errors import DatasetError

logger = logging.getLogger(__name__)

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
SATELLITE_COORDS = "satellite_coords.csv"
GROUND_META = "ground_meta.csv"
PAIRS = "pairs.csv"


@dataclass
class _Images:
    """The images of one folder, by id, with a name -> id lookup."""

    kind: str  # "ground" | "satellite"
    folder: Path
    ids: list[str] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)
    lookup: dict[str, str] = field(default_factory=dict)

    def key(self, image_id: str) -> tuple[str, str]:
        return (self.kind, image_id)

    def find(self, name: str) -> str | None:
        return self.lookup.get(name.strip().replace("\\", "/").removeprefix("./"))


def _scan(folder: Path, kind: str, issues: IssueCollector) -> _Images:
    images = _Images(kind, folder)
    for path in list_images(folder):
        rel = path.relative_to(folder).as_posix()
        image_id = rel.rsplit(".", 1)[0]
        if image_id in images.paths:
            issues.add(
                path, None, f"duplicate {kind} id {image_id!r} (also {images.paths[image_id]})"
            )
            issues.drop(images.key(image_id))
            continue
        images.ids.append(image_id)
        images.paths[image_id] = path
        images.lookup[rel] = image_id
        images.lookup[image_id] = image_id
    if not images.ids:
        raise DatasetError(
            f"no images in {folder} (expected {', '.join(IMAGE_SUFFIXES)} files); "
            "an empty dataset cannot be used"
        )
    return images


def _read_csv(
    path: Path, required: list[set[str]], optional: set[str]
) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (line number, row) pairs of a CSV file; a bad header raises.

    Args:
        required: alternative sets of required columns; one of them must be present.
        optional: other columns that are allowed.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the CSV file ({exc})") from exc
    reader = csv.reader(text.splitlines())
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise DatasetError(f"{path}: the file is empty; it needs a header row") from None
    columns = set(header)
    allowed = set().union(*required) | optional
    if not any(req <= columns for req in required) or not columns <= allowed:
        wanted = " or ".join(",".join(sorted(r)) for r in required)
        raise DatasetError(
            f"{path}:1: header {','.join(header)!r} must have the columns {wanted} "
            f"(optional: {', '.join(sorted(optional)) or 'none'})"
        )
    if len(columns) != len(header):
        raise DatasetError(f"{path}:1: duplicate column in header {','.join(header)!r}")
    rows = []
    for values in reader:
        lineno = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            rows.append((lineno, {"__error__": f"{len(values)} fields, header has {len(header)}"}))
            continue
        rows.append((lineno, {h: v.strip() for h, v in zip(header, values, strict=True)}))
    return header, rows


def _float(value: str, lo: float, hi: float) -> float | None:
    try:
        x = float(value)
    except ValueError:
        return None
    return x if np.isfinite(x) and lo <= x <= hi else None


def _read_satellite_coords(
    path: Path, sats: _Images, issues: IssueCollector
) -> tuple[str, dict[str, tuple[float, float]]]:
    """("latlon" | "xy", tile id -> coordinates) from satellite_coords.csv."""
    header, rows = _read_csv(path, [{"name", "lat", "lon"}, {"name", "x", "y"}], {"crs"})
    kind = "latlon" if "lat" in header else "xy"
    cols = ("lat", "lon") if kind == "latlon" else ("x", "y")
    bounds = ((-90.0, 90.0), (-180.0, 180.0)) if kind == "latlon" else ((-1e12, 1e12),) * 2
    coords: dict[str, tuple[float, float]] = {}
    first_line: dict[str, int] = {}
    crs_seen: dict[str, int] = {}
    for lineno, row in rows:
        bad = _row_error(row, "name")
        sat_id = None if bad else sats.find(row["name"])
        if bad is None and sat_id is None:
            bad = f"no tile {row['name']!r} in {sats.folder}"
        if bad is not None:
            issues.add(path, lineno, bad)
            issues.drop((path.name, lineno))
            continue
        values = [_float(row[c], *b) for c, b in zip(cols, bounds, strict=True)]
        if sat_id in first_line:
            bad = f"tile {row['name']!r} listed twice (first on line {first_line[sat_id]})"
        elif any(v is None for v in values):
            bad = f"bad {cols[0]}/{cols[1]} {row[cols[0]]!r},{row[cols[1]]!r}"
        elif row.get("crs"):
            crs_seen.setdefault(row["crs"], lineno)
            if len(crs_seen) > 1:
                bad = f"crs {row['crs']!r} differs from the crs of line {min(crs_seen.values())}"
        if bad is not None:
            issues.add(path, lineno, bad)
            issues.drop(sats.key(sat_id))
            continue
        first_line[sat_id] = lineno
        coords[sat_id] = (values[0], values[1])
    if crs_seen:
        logger.info("%s: tile coordinates in crs %s", path, next(iter(crs_seen)))
    return kind, coords


def _row_error(row: dict[str, str], *required: str) -> str | None:
    if "__error__" in row:
        return f"malformed row: {row['__error__']}"
    empty = [c for c in required if not row.get(c)]
    return f"malformed row: empty {', '.join(empty)}" if empty else None


def _split_value(value: str) -> str | None:
    """The split name, "" when blank, None when invalid."""
    v = value.strip().lower()
    return v if v in SPLIT_NAMES or v == "" else None


@dataclass
class _GroundMeta:
    heading: dict[str, float] = field(default_factory=dict)
    latlon: dict[str, tuple[float, float]] = field(default_factory=dict)
    split: dict[str, str] = field(default_factory=dict)
    has_heading: bool = False
    has_latlon: bool = False


def _read_ground_meta(path: Path, grounds: _Images, issues: IssueCollector) -> _GroundMeta:
    header, rows = _read_csv(path, [{"name"}], {"heading_deg", "lat", "lon", "split"})
    if ("lat" in header) != ("lon" in header):
        raise DatasetError(f"{path}:1: header needs both lat and lon, or neither")
    meta = _GroundMeta(has_heading="heading_deg" in header, has_latlon="lat" in header)
    first_line: dict[str, int] = {}
    for lineno, row in rows:
        bad = _row_error(row, "name")
        gid = None if bad else grounds.find(row["name"])
        if bad is None and gid is None:
            bad = f"no panorama {row['name']!r} in {grounds.folder}"
        if bad is not None:
            issues.add(path, lineno, bad)
            issues.drop((path.name, lineno))
            continue
        problems = []
        if gid in first_line:
            problems.append(f"panorama listed twice (first on line {first_line[gid]})")
        heading = row.get("heading_deg", "")
        if heading and _float(heading, -1e6, 1e6) is None:
            problems.append(f"bad heading_deg {heading!r}")
        lat, lon = row.get("lat", ""), row.get("lon", "")
        if (lat or lon) and (_float(lat, -90, 90) is None or _float(lon, -180, 180) is None):
            problems.append(f"bad lat/lon {lat!r},{lon!r}")
        split = _split_value(row.get("split", ""))
        if split is None:
            problems.append(f"split {row['split']!r} is not one of {', '.join(SPLIT_NAMES)}")
        if problems:
            issues.add(path, lineno, "; ".join(problems))
            issues.drop(grounds.key(gid))
            continue
        first_line[gid] = lineno
        if heading:
            meta.heading[gid] = float(heading)
        if lat:
            meta.latlon[gid] = (float(lat), float(lon))
        if split:
            meta.split[gid] = split
    return meta


@dataclass
class _Pairs:
    tile: dict[str, str] = field(default_factory=dict)  # ground id -> tile id
    split: dict[str, str] = field(default_factory=dict)


def _read_pairs(
    path: Path, grounds: _Images, sats: _Images, meta: _GroundMeta, issues: IssueCollector
) -> _Pairs:
    _, rows = _read_csv(path, [{"ground", "satellite"}], {"split"})
    pairs = _Pairs()
    first_line: dict[str, int] = {}
    for lineno, row in rows:
        bad = _row_error(row, "ground", "satellite")
        gid = None if bad else grounds.find(row["ground"])
        if bad is None and gid is None:
            bad = f"no panorama {row['ground']!r} in {grounds.folder}"
        if bad is not None:
            issues.add(path, lineno, bad)
            issues.drop((path.name, lineno))
            continue
        problems = []
        sid = sats.find(row["satellite"])
        if sid is None:
            problems.append(f"no tile {row['satellite']!r} in {sats.folder}")
        if gid in first_line:
            problems.append(f"panorama paired twice (first on line {first_line[gid]})")
        split = _split_value(row.get("split", ""))
        if split is None:
            problems.append(f"split {row['split']!r} is not one of {', '.join(SPLIT_NAMES)}")
        elif split and gid in meta.split and meta.split[gid] != split:
            problems.append(f"split {split!r} differs from {GROUND_META} ({meta.split[gid]!r})")
        if problems:
            issues.add(path, lineno, "; ".join(problems))
            issues.drop(grounds.key(gid))
            continue
        first_line[gid] = lineno
        pairs.tile[gid] = sid
        if split:
            pairs.split[gid] = split
    return pairs


def read_folder(
    root: Path,
    *,
    skip_invalid: bool = False,
    validate_images: bool = False,
    name: str | None = None,
    progress: Progress | None = None,
) -> CrossViewDataset:
    """Read a ``ground/`` + ``satellite/`` folder (with its optional CSV files).

    Args:
        root: the folder holding ``ground/`` and ``satellite/``.
        skip_invalid: drop the images of bad rows instead of raising.
        validate_images: also open every image header with Pillow.
        name: the dataset name (default: the folder name).
        progress: reports progress and is polled for cancellation.

    Raises:
        DatasetError: no ``ground/``/``satellite/``, an empty folder, a bad CSV header, or
            problems were found and not skipped.
    """
    root = check_root(root)
    progress = progress or NullProgress()
    if not _is_folder(root):
        raise layout_error(root, "folder", "ground/ and satellite/ folders")
    issues = IssueCollector(root)
    read, check = reader_progress(progress, validate_images)
    read.update("read folder", 0.0, "listing images")
    grounds = _scan(root / "ground", "ground", issues)
    sats = _scan(root / "satellite", "satellite", issues)
    progress.check_cancelled()
    coords_kind, coords = None, {}
    if (root / SATELLITE_COORDS).is_file():
        coords_kind, coords = _read_satellite_coords(root / SATELLITE_COORDS, sats, issues)
    meta = _GroundMeta()
    if (root / GROUND_META).is_file():
        meta = _read_ground_meta(root / GROUND_META, grounds, issues)
    pairs = None
    if (root / PAIRS).is_file():
        pairs = _read_pairs(root / PAIRS, grounds, sats, meta, issues)
    read.update("read folder", 1.0)
    if validate_images:
        todo = [(grounds.key(g), grounds.paths[g]) for g in grounds.ids]
        todo += [(sats.key(s), sats.paths[s]) for s in sats.ids]
        validate_image_headers(todo, issues, progress=check)
    report = issues.finish(skip_invalid, f"folder dataset at {root}")
    splits = _build_splits(grounds, sats, coords_kind, coords, meta, pairs, issues)
    progress.update("read folder", 1.0)
    return CrossViewDataset(
        name=name or root.name,
        format="folder",
        root=root,
        panorama="full",
        splits=splits,
        report=report,
    )


def _build_splits(
    grounds: _Images,
    sats: _Images,
    coords_kind: str | None,
    coords: dict[str, tuple[float, float]],
    meta: _GroundMeta,
    pairs: _Pairs | None,
    issues: IssueCollector,
) -> dict[str, ViewSplit]:
    kept_sats = [s for s in sats.ids if not issues.is_dropped(sats.key(s))]
    kept_grounds = [g for g in grounds.ids if not issues.is_dropped(grounds.key(g))]
    tile_of = {} if pairs is None else pairs.tile
    tile_of = {g: s for g, s in tile_of.items() if s in set(kept_sats)}
    split_of = {}
    for g in kept_grounds:
        split_of[g] = meta.split.get(g) or (pairs.split.get(g) if pairs else None) or "train"
    split_names = [s for s in SPLIT_NAMES if s in set(split_of.values())]
    tile_splits: dict[str, set[str]] = {}
    for g, s in tile_of.items():
        if g in split_of:
            tile_splits.setdefault(s, set()).add(split_of[g])
    splits: dict[str, ViewSplit] = {}
    for split in split_names:
        g_ids = [g for g in kept_grounds if split_of[g] == split]
        s_ids = [s for s in kept_sats if split in tile_splits.get(s, set(SPLIT_NAMES))]
        s_index = {s: i for i, s in enumerate(s_ids)}
        positives = None
        if pairs is not None:
            positives = np.asarray(
                [s_index[tile_of[g]] if g in tile_of else -1 for g in g_ids], dtype=np.int64
            )
        sat_coords = None
        if coords_kind is not None:
            sat_coords = np.asarray(
                [coords.get(s, (np.nan, np.nan)) for s in s_ids], dtype=np.float64
            ).reshape(-1, 2)
        splits[split] = ViewSplit(
            ground_ids=g_ids,
            ground_paths=[grounds.paths[g] for g in g_ids],
            satellite_ids=s_ids,
            satellite_paths=[sats.paths[s] for s in s_ids],
            positives=positives,
            satellite_latlon=sat_coords if coords_kind == "latlon" else None,
            satellite_xy=sat_coords if coords_kind == "xy" else None,
            ground_latlon=(
                np.asarray(
                    [meta.latlon.get(g, (np.nan, np.nan)) for g in g_ids], dtype=np.float64
                ).reshape(-1, 2)
                if meta.has_latlon
                else None
            ),
            ground_heading_deg=(
                np.asarray([meta.heading.get(g, 0.0) for g in g_ids], dtype=np.float32)
                if meta.has_heading
                else None
            ),
        )
    return splits
