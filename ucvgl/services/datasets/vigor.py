"""VIGOR reader (Zhu et al., CVPR 2021): four US cities, many-to-one pairs with offsets.

Layout::

    <root>/<City>/panorama/<panoid>,<lat>,<lon>,.jpg       2048x1024 panoramas
    <root>/<City>/satellite/satellite_<lat>_<lon>.png      640x640 tiles
    <root>/splits/<City>/satellite_list.txt                one tile file name per line
    <root>/splits/<City>/same_area_balanced_train.txt      same-area protocol
    <root>/splits/<City>/same_area_balanced_test.txt
    <root>/splits/<City>/pano_label_balanced.txt           cross-area: every panorama

Each panorama line has 13 whitespace-separated fields::

    <pano file> <positive tile> <dy> <dx> <semi 1> <dy> <dx> <semi 2> <dy> <dx> <semi 3> <dy> <dx>

The offsets are the pixel offsets of the panorama's location from each tile's centre, kept
in the file's order as ``positive_offsets[g, k] = (first, second)`` for k = positive, semi
1..3.

Protocols: ``same_area`` gives "train" and "test" from the same cities, both against a
gallery of every tile of those cities; ``cross_area`` trains on NewYork + Seattle and tests
on SanFrancisco + Chicago (the VIGOR paper's split), each split against its own cities'
tiles. Only the cities that
are on disk are needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ucvgl.services.datasets.index import CrossViewDataset, ViewSplit
from ucvgl.services.datasets.layout import VIGOR_CITIES, _is_vigor, check_root, layout_error
from ucvgl.services.datasets.validation import (
    FileChecker,
    IssueCollector,
    reader_progress,
    resolve_inside,
    validate_image_headers,
)
from ucvgl.services.progress import NullProgress, Progress
from ucvgl.shared.errors import ConfigError

PROTOCOLS: tuple[str, ...] = ("same_area", "cross_area")
CROSS_AREA_CITIES: dict[str, tuple[str, ...]] = {
    "train": ("NewYork", "Seattle"),
    "test": ("SanFrancisco", "Chicago"),
}
"""The VIGOR paper's cross-area split (as in its released loader and TransGeo/Sample4Geo)."""
SAME_AREA_FILES: dict[str, str] = {
    "train": "same_area_balanced_train.txt",
    "test": "same_area_balanced_test.txt",
}
CROSS_AREA_FILE = "pano_label_balanced.txt"
N_FIELDS = 13


@dataclass(frozen=True)
class VigorOptions:
    """Which cities and protocol to read.

    Attributes:
        cities: city folder names; None = every one of the four that is on disk.
        protocol: "same_area" or "cross_area".
    """

    cities: tuple[str, ...] | None = None
    protocol: str = "same_area"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(
                f"VIGOR protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}"
            )
        if self.cities is not None:
            unknown = [c for c in self.cities if c not in VIGOR_CITIES]
            if unknown:
                raise ConfigError(
                    f"unknown VIGOR cit(y/ies) {unknown}; choose from {', '.join(VIGOR_CITIES)}"
                )


def parse_tile_latlon(file_name: str) -> tuple[float, float] | None:
    """(lat, lon) from ``satellite_<lat>_<lon>.png``, or None if the name does not parse."""
    if not file_name.startswith("satellite_") or not file_name.endswith(".png"):
        return None
    parts = file_name[len("satellite_") : -len(".png")].rsplit("_", 1)
    return _latlon(parts)


def parse_panorama_name(file_name: str) -> tuple[str, float, float] | None:
    """(panoid, lat, lon) from ``<panoid>,<lat>,<lon>,.jpg``, or None if it does not parse."""
    parts = file_name.split(",")
    if len(parts) != 4 or parts[3] != ".jpg" or not parts[0]:
        return None
    latlon = _latlon(parts[1:3])
    return None if latlon is None else (parts[0], *latlon)


def _latlon(parts: list[str]) -> tuple[float, float] | None:
    if len(parts) != 2:
        return None
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return None
    return lat, lon


@dataclass
class _Gallery:
    ids: list[str]
    paths: list[Path]
    latlon: list[tuple[float, float]]
    keys: list[tuple]
    index: dict[str, int]


def _read_gallery(
    root: Path, cities: tuple[str, ...], issues: IssueCollector, files: FileChecker
) -> _Gallery:
    """Every tile of ``cities`` from their ``satellite_list.txt``, in city then line order."""
    gallery = _Gallery([], [], [], [], {})
    for city in cities:
        list_file = root / "splits" / city / "satellite_list.txt"
        rel = issues.rel(list_file)
        for lineno, raw in enumerate(list_file.read_text(encoding="utf-8").splitlines(), 1):
            name = raw.strip()
            if not name:
                continue
            key = (rel, lineno)
            latlon = parse_tile_latlon(name)
            if latlon is None or "/" in name or "\\" in name:
                expected = "satellite_<lat>_<lon>.png"
                issues.add(list_file, lineno, f"malformed tile name, expected {expected}: {name!r}")
                issues.drop(key)
                continue
            path = root / city / "satellite" / name
            if name in gallery.index:
                issues.add(list_file, lineno, f"tile {name!r} is listed twice")
                issues.drop(key)
                continue
            if not files.exists(path):
                issues.add(list_file, lineno, f"satellite tile file is missing: {path}")
                issues.drop(key)
            gallery.index[name] = len(gallery.ids)
            gallery.ids.append(name[: -len(".png")])
            gallery.paths.append(path)
            gallery.latlon.append(latlon)
            gallery.keys.append(key)
    return gallery


@dataclass
class _PanoLine:
    key: tuple
    pano_id: str
    path: Path
    latlon: tuple[float, float]
    tiles: list[str]
    offsets: np.ndarray  # [4, 2]


def _read_pano_file(
    root: Path,
    city: str,
    label_file: Path,
    gallery: _Gallery,
    seen: dict[str, str],
    issues: IssueCollector,
    files: FileChecker,
) -> list[_PanoLine]:
    """Parse one panorama label file of ``city``."""
    rel = issues.rel(label_file)
    out = []
    for lineno, raw in enumerate(label_file.read_text(encoding="utf-8").splitlines(), 1):
        fields = raw.split()
        if not fields:
            continue
        key = (rel, lineno)
        where = (label_file, lineno)
        if len(fields) != N_FIELDS:
            issues.add(*where, f"malformed line: expected {N_FIELDS} fields, got {len(fields)}")
            issues.drop(key)
            continue
        parsed = parse_panorama_name(fields[0])
        try:
            offsets = np.asarray(
                [fields[2:4], fields[5:7], fields[8:10], fields[11:13]], dtype=np.float32
            )
        except ValueError:
            offsets = None
        if parsed is None or offsets is None or not np.isfinite(offsets).all():
            what = "panorama name <panoid>,<lat>,<lon>,.jpg" if parsed is None else "offsets"
            issues.add(*where, f"malformed line: bad {what}: {raw.strip()[:120]!r}")
            issues.drop(key)
            continue
        pano_id, lat, lon = parsed
        path = resolve_inside(root / city / "panorama", fields[0])
        if path is None or "/" in fields[0]:
            issues.add(*where, f"panorama name must be a file name: {fields[0]!r}")
            issues.drop(key)
            continue
        if pano_id in seen:
            issues.add(*where, f"duplicate panorama id {pano_id!r} (first at {seen[pano_id]})")
            issues.drop(key)
            continue
        seen[pano_id] = f"{rel}:{lineno}"
        if not files.exists(path):
            issues.add(*where, f"panorama file is missing: {path}")
            issues.drop(key)
        tiles = [fields[1], fields[4], fields[7], fields[10]]
        for k, tile in enumerate(tiles):
            if tile not in gallery.index:
                role = "positive" if k == 0 else f"semi-positive {k}"
                issues.add(*where, f"{role} tile {tile!r} is not in the satellite lists")
                issues.drop(key)
        out.append(_PanoLine(key, pano_id, path, (lat, lon), tiles, offsets))
    return out


def _build_split(lines: list[_PanoLine], gallery: _Gallery, issues: IssueCollector) -> ViewSplit:
    """A ViewSplit of the kept lines against the gallery without its dropped tiles."""
    keep = np.asarray([not issues.is_dropped(k) for k in gallery.keys], dtype=bool)
    new_index = np.cumsum(keep) - 1
    kept_lines = []
    for line in lines:
        if issues.is_dropped(line.key):
            continue
        if not keep[gallery.index[line.tiles[0]]]:
            issues.drop(line.key)  # its positive tile is gone
            continue
        kept_lines.append(line)
    g = len(kept_lines)
    tiles = np.full((g, 4), -1, dtype=np.int64)
    for i, line in enumerate(kept_lines):
        for k, tile in enumerate(line.tiles):
            j = gallery.index[tile]
            tiles[i, k] = new_index[j] if keep[j] else -1
    offsets = np.stack([x.offsets for x in kept_lines]) if g else np.zeros((0, 4, 2), np.float32)
    return ViewSplit(
        ground_ids=[x.pano_id for x in kept_lines],
        ground_paths=[x.path for x in kept_lines],
        satellite_ids=[s for s, k in zip(gallery.ids, keep, strict=True) if k],
        satellite_paths=[p for p, k in zip(gallery.paths, keep, strict=True) if k],
        positives=tiles[:, 0].copy(),
        semi_positives=tiles[:, 1:].copy(),
        positive_offsets=offsets.astype(np.float32),
        satellite_latlon=np.asarray(gallery.latlon, dtype=np.float64).reshape(-1, 2)[keep],
        ground_latlon=np.asarray([x.latlon for x in kept_lines], dtype=np.float64).reshape(-1, 2),
    )


def _present_cities(root: Path) -> list[str]:
    return [
        c
        for c in VIGOR_CITIES
        if (root / "splits" / c / "satellite_list.txt").is_file() and (root / c).is_dir()
    ]


def read_vigor(
    root: Path,
    *,
    cities: tuple[str, ...] | list[str] | str | None = None,
    protocol: str = "same_area",
    skip_invalid: bool = False,
    validate_images: bool = False,
    name: str | None = None,
    progress: Progress | None = None,
) -> CrossViewDataset:
    """Read a VIGOR tree with the same-area or cross-area protocol.

    Args:
        root: the VIGOR folder (holding the city folders and ``splits/``).
        cities: which cities (a list or a comma-separated string); None = all present.
        protocol: "same_area" (train/test of the same cities) or "cross_area".
        skip_invalid: drop bad entries instead of raising.
        validate_images: also open every image header with Pillow.
        name: the dataset name (default: the folder name).
        progress: reports progress and is polled for cancellation.

    Raises:
        ConfigError: unknown city or protocol.
        DatasetError: the layout is not VIGOR, a requested city is missing, or problems
            were found and not skipped.
    """
    root = check_root(root)
    progress = progress or NullProgress()
    if isinstance(cities, str):
        cities = tuple(c.strip() for c in cities.split(",") if c.strip())
    options = VigorOptions(tuple(cities) if cities else None, protocol)
    if not _is_vigor(root):
        raise layout_error(root, "vigor", "splits/<City>/satellite_list.txt")
    present = _present_cities(root)
    chosen = list(options.cities) if options.cities else present
    if not chosen:
        raise layout_error(
            root, "vigor", "a city folder (<City>/panorama/, <City>/satellite/) beside its splits"
        )
    for city in chosen:
        if city not in present:
            raise layout_error(root, "vigor", f"{city}/ and splits/{city}/satellite_list.txt")
    issues, files = IssueCollector(root), FileChecker()
    plan: dict[str, tuple[tuple[str, ...], list[tuple[str, Path]]]] = {}
    if options.protocol == "same_area":
        for split, file_name in SAME_AREA_FILES.items():
            plan[split] = (tuple(chosen), [(c, root / "splits" / c / file_name) for c in chosen])
    else:
        for split, split_cities in CROSS_AREA_CITIES.items():
            here = tuple(c for c in split_cities if c in chosen)
            if here:
                plan[split] = (here, [(c, root / "splits" / c / CROSS_AREA_FILE) for c in here])
    for _, label_files in plan.values():
        for _, label_file in label_files:
            if not label_file.is_file():
                raise layout_error(root, "vigor", issues.rel(label_file))
    galleries: dict[tuple[str, ...], _Gallery] = {}
    parsed: dict[str, list[_PanoLine]] = {}
    read, check = reader_progress(progress, validate_images)
    for k, (split, (split_cities, label_files)) in enumerate(plan.items()):
        progress.check_cancelled()
        read.update("read VIGOR", k / len(plan), split)
        if split_cities not in galleries:
            galleries[split_cities] = _read_gallery(root, split_cities, issues, files)
        seen: dict[str, str] = {}
        parsed[split] = []
        for city, label_file in label_files:
            parsed[split] += _read_pano_file(
                root, city, label_file, galleries[split_cities], seen, issues, files
            )
    read.update("read VIGOR", 1.0)
    if validate_images:
        todo = [
            (key, path)
            for gallery in galleries.values()
            for key, path in zip(gallery.keys, gallery.paths, strict=True)
            if not issues.is_dropped(key)
        ]
        todo += [(x.key, x.path) for lines in parsed.values() for x in lines]
        validate_image_headers(todo, issues, progress=check)
    splits = {
        split: _build_split(parsed[split], galleries[split_cities], issues)
        for split, (split_cities, _) in plan.items()
    }
    report = issues.finish(skip_invalid, f"VIGOR dataset at {root}")
    progress.update("read VIGOR", 1.0)
    return CrossViewDataset(
        name=name or root.name,
        format="vigor",
        root=root,
        panorama="full",
        splits=splits,
        report=report,
    )
