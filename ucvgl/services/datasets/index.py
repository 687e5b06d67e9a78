"""The common index of a cross-view dataset, whatever its on-disk layout.

A :class:`CrossViewDataset` holds one :class:`ViewSplit` per split ("train", "val",
"test"). A split is a list of ground panoramas, a gallery of satellite tiles, and, where
the dataset has them, the known ground -> satellite pairs. Known pairs are used only for
evaluation and for the semi-supervised / supervised modes; the unsupervised pipeline
never reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

DatasetFormat = Literal["cvusa", "cvact", "vigor", "folder"]
PanoramaKind = Literal["full", "band"]
"""'full': 360x180 degree equirectangular (2:1). 'band': a horizon strip (CVUSA)."""


@dataclass
class ValidationIssue:
    """One problem found while reading a dataset."""

    path: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.reason}"


@dataclass
class ValidationReport:
    """What a reader found wrong, and how many entries it skipped because of it."""

    issues: list[ValidationIssue] = field(default_factory=list)
    skipped: int = 0

    @property
    def ok(self) -> bool:
        return not self.issues

    def summary(self, limit: int = 10) -> str:
        """A human-readable summary naming the first ``limit`` problems."""
        if self.ok:
            return "no problems found"
        head = "\n".join(f"  - {i}" for i in self.issues[:limit])
        more = f"\n  ... and {len(self.issues) - limit} more" if len(self.issues) > limit else ""
        return f"{len(self.issues)} problem(s), {self.skipped} entr(y/ies) skipped:\n{head}{more}"

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "skipped": self.skipped,
            "count": len(self.issues),
            "issues": [
                {"path": i.path, "line": i.line, "reason": i.reason} for i in self.issues[:100]
            ],
        }


@dataclass
class ViewSplit:
    """One split: ground panoramas, a satellite gallery and optional known pairs.

    Attributes:
        ground_ids: stable id per panorama (file stem or dataset id), length G.
        ground_paths: absolute path per panorama, length G.
        satellite_ids: stable id per tile, length S.
        satellite_paths: absolute path per tile, length S.
        positives: int64 [G], index into the satellite gallery of each panorama's true
            tile, -1 where unknown; ``None`` when the dataset has no ground truth at all.
        semi_positives: int64 [G, 3] VIGOR semi-positive tiles (-1 where absent), or None.
        positive_offsets: float32 [G, 4, 2] VIGOR pixel offsets (positive + 3 semi), or None.
        satellite_latlon: float64 [S, 2] (lat, lon) degrees of tile centres, or None.
        satellite_xy: float64 [S, 2] projected (x, y) metres (UTM...), or None.
        ground_latlon / ground_xy: the same for panoramas, or None.
        ground_heading_deg: float32 [G] heading of each panorama's centre column
            (degrees clockwise from north); the loader rolls it to north. None = north-aligned.
    """

    ground_ids: list[str]
    ground_paths: list[Path]
    satellite_ids: list[str]
    satellite_paths: list[Path]
    positives: np.ndarray | None = None
    semi_positives: np.ndarray | None = None
    positive_offsets: np.ndarray | None = None
    satellite_latlon: np.ndarray | None = None
    satellite_xy: np.ndarray | None = None
    ground_latlon: np.ndarray | None = None
    ground_xy: np.ndarray | None = None
    ground_heading_deg: np.ndarray | None = None

    @property
    def num_ground(self) -> int:
        return len(self.ground_paths)

    @property
    def num_satellite(self) -> int:
        return len(self.satellite_paths)

    @property
    def has_ground_truth(self) -> bool:
        return self.positives is not None and bool((self.positives >= 0).any())

    def counts(self) -> dict[str, int]:
        known = int((self.positives >= 0).sum()) if self.positives is not None else 0
        return {"ground": self.num_ground, "satellite": self.num_satellite, "known_pairs": known}


@dataclass
class CrossViewDataset:
    """A cross-view dataset: its format, root, panorama kind, splits and validation report.

    ``load_options`` are the options it was read with (``load_dataset``'s ``skip_invalid``
    and format options such as VIGOR's ``protocol``), so it can be read again the same way.
    """

    name: str
    format: DatasetFormat
    root: Path
    panorama: PanoramaKind
    splits: dict[str, ViewSplit]
    report: ValidationReport = field(default_factory=ValidationReport)
    load_options: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> ViewSplit:
        """The split called ``name``; raises KeyError naming the splits that exist."""
        try:
            return self.splits[name]
        except KeyError:
            raise KeyError(
                f"dataset {self.name!r} has no split {name!r}; it has {sorted(self.splits)}"
            ) from None

    @property
    def has_ground_truth(self) -> bool:
        return any(s.has_ground_truth for s in self.splits.values())

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: s.counts() for name, s in self.splits.items()}
