"""CVUSA reader (the 44,416-pair subset of Zhai et al. used by every CVGL paper).

Layout::

    <root>/splits/train-19zl.csv     35,532 lines
    <root>/splits/val-19zl.csv        8,884 lines
    <root>/bingmap/19/0000001.jpg     satellite tiles, 750x750
    <root>/streetview/panos/0000001.jpg   panoramas, 1232x224 horizon bands

Each split line, no header: ``bingmap/19/NNNNNNN.jpg,streetview/panos/NNNNNNN.jpg,
streetview/annotations/NNNNNNN.png`` (the annotation file is never read and need not exist).
Pairs are one-to-one: panorama i's tile is gallery entry i. Ids are the file stems.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ucvgl.services.datasets.index import CrossViewDataset, ViewSplit
from ucvgl.services.datasets.layout import CVUSA_SPLIT_FILES, _is_cvusa, check_root, layout_error
from ucvgl.services.datasets.validation import (
    FileChecker,
    IssueCollector,
    reader_progress,
    resolve_inside,
    validate_image_headers,
)
from ucvgl.services.progress import NullProgress, Progress

LINE_FORMAT = "bingmap/19/<id>.jpg,streetview/panos/<id>.jpg[,streetview/annotations/<id>.png]"


@dataclass
class _Pair:
    key: tuple[str, int]
    ground_id: str
    ground_path: Path
    satellite_id: str
    satellite_path: Path


def _read_split_file(
    root: Path, split_file: Path, issues: IssueCollector, files: FileChecker
) -> list[_Pair]:
    """Parse one split file, recording malformed lines, missing images and duplicate ids."""
    rel = issues.rel(split_file)
    pairs: list[_Pair] = []
    seen_ground: dict[str, int] = {}
    seen_sat: dict[str, int] = {}
    try:
        text = split_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        issues.add(split_file, None, f"cannot read split file: {exc}")
        issues.drop((rel, 0))
        return pairs
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        key = (rel, lineno)
        fields = [f.strip() for f in line.split(",")]
        if len(fields) not in (2, 3) or not fields[0] or not fields[1]:
            issues.add(split_file, lineno, f"malformed line, expected {LINE_FORMAT!r}: {line!r}")
            issues.drop(key)
            continue
        sat_path = resolve_inside(root, fields[0])
        pano_path = resolve_inside(root, fields[1])
        if sat_path is None or pano_path is None:
            issues.add(split_file, lineno, f"path is absolute or leaves the dataset: {line!r}")
            issues.drop(key)
            continue
        for kind, path in (("satellite tile", sat_path), ("panorama", pano_path)):
            if not files.exists(path):
                issues.add(split_file, lineno, f"{kind} file is missing: {path}")
                issues.drop(key)
        ground_id, sat_id = pano_path.stem, sat_path.stem
        if ground_id in seen_ground:
            issues.add(
                split_file,
                lineno,
                f"duplicate panorama id {ground_id!r} (first on line {seen_ground[ground_id]})",
            )
            issues.drop(key)
        if sat_id in seen_sat:
            issues.add(
                split_file,
                lineno,
                f"duplicate satellite id {sat_id!r} (first on line {seen_sat[sat_id]})",
            )
            issues.drop(key)
        seen_ground.setdefault(ground_id, lineno)
        seen_sat.setdefault(sat_id, lineno)
        pairs.append(_Pair(key, ground_id, pano_path, sat_id, sat_path))
    return pairs


def read_cvusa(
    root: Path,
    *,
    skip_invalid: bool = False,
    validate_images: bool = False,
    name: str | None = None,
    progress: Progress | None = None,
) -> CrossViewDataset:
    """Read a CVUSA tree into a :class:`CrossViewDataset` with splits "train" and "val".

    Args:
        root: the CVUSA folder (holding ``splits/``, ``bingmap/``, ``streetview/``).
        skip_invalid: drop bad lines instead of raising.
        validate_images: also open every image header with Pillow.
        name: the dataset name (default: the folder name).
        progress: reports progress and is polled for cancellation.

    Raises:
        DatasetError: the layout is not CVUSA, or problems were found and not skipped.
    """
    root = check_root(root)
    progress = progress or NullProgress()
    if not _is_cvusa(root):
        expected = " or ".join(f"splits/{f}" for f in CVUSA_SPLIT_FILES.values())
        raise layout_error(root, "cvusa", expected)
    issues, files = IssueCollector(root), FileChecker()
    parsed: dict[str, list[_Pair]] = {}
    read, check = reader_progress(progress, validate_images)
    for k, (split, file_name) in enumerate(CVUSA_SPLIT_FILES.items()):
        progress.check_cancelled()
        read.update("read CVUSA splits", k / len(CVUSA_SPLIT_FILES), file_name)
        split_file = root / "splits" / file_name
        if split_file.is_file():
            parsed[split] = _read_split_file(root, split_file, issues, files)
    read.update("read CVUSA splits", 1.0)
    if validate_images:
        todo = [
            (p.key, path)
            for pairs in parsed.values()
            for p in pairs
            if not issues.is_dropped(p.key)
            for path in (p.ground_path, p.satellite_path)
        ]
        validate_image_headers(todo, issues, progress=check)
    report = issues.finish(skip_invalid, f"CVUSA dataset at {root}")
    splits: dict[str, ViewSplit] = {}
    for split, pairs in parsed.items():
        kept = [p for p in pairs if not issues.is_dropped(p.key)]
        splits[split] = ViewSplit(
            ground_ids=[p.ground_id for p in kept],
            ground_paths=[p.ground_path for p in kept],
            satellite_ids=[p.satellite_id for p in kept],
            satellite_paths=[p.satellite_path for p in kept],
            positives=np.arange(len(kept), dtype=np.int64),
        )
    progress.update("read CVUSA splits", 1.0)
    return CrossViewDataset(
        name=name or root.name,
        format="cvusa",
        root=root,
        panorama="band",
        splits=splits,
        report=report,
    )
