"""Recognising which public layout a dataset folder has.

Each format is recognised by the files its public release ships with:

- ``cvact``: ``ACT_data.mat`` at the root.
- ``cvusa``: ``splits/train-19zl.csv`` or ``splits/val-19zl.csv``.
- ``vigor``: ``splits/<City>/satellite_list.txt`` for at least one of the four cities.
- ``folder``: ``ground/`` and ``satellite/`` folders.
"""

from __future__ import annotations

from pathlib import Path

from ucvgl.shared.errors import DatasetError

SUPPORTED_FORMATS: tuple[str, ...] = ("cvusa", "cvact", "vigor", "folder")
VIGOR_CITIES: tuple[str, ...] = ("Chicago", "NewYork", "SanFrancisco", "Seattle")
CVUSA_SPLIT_FILES: dict[str, str] = {"train": "train-19zl.csv", "val": "val-19zl.csv"}


def _is_cvact(root: Path) -> bool:
    return (root / "ACT_data.mat").is_file()


def _is_cvusa(root: Path) -> bool:
    return any((root / "splits" / f).is_file() for f in CVUSA_SPLIT_FILES.values())


def _is_vigor(root: Path) -> bool:
    return any((root / "splits" / c / "satellite_list.txt").is_file() for c in VIGOR_CITIES)


def _is_folder(root: Path) -> bool:
    return (root / "ground").is_dir() and (root / "satellite").is_dir()


_DETECTORS = {"cvact": _is_cvact, "cvusa": _is_cvusa, "vigor": _is_vigor, "folder": _is_folder}


def matching_formats(root: Path) -> list[str]:
    """Every supported format whose marker files exist in ``root`` (possibly several)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [name for name, looks_like in _DETECTORS.items() if looks_like(root)]


def detect_format(root: Path) -> str | None:
    """The format the folder ``root`` looks like, or None when it matches none.

    When several match (a VIGOR tree that also has ``ground/`` and ``satellite/``), the
    public layouts win over the generic ``folder`` layout, in the order cvact, cvusa, vigor.
    """
    found = matching_formats(root)
    return found[0] if found else None


def check_format_name(format: str) -> str:
    """The normalised format name; raises DatasetError listing the supported ones."""
    name = str(format).strip().lower()
    if name not in SUPPORTED_FORMATS:
        raise DatasetError(
            f"unknown dataset format {format!r}; supported: {', '.join(SUPPORTED_FORMATS)}"
        )
    return name


def check_root(root: Path) -> Path:
    """``root`` as a Path, after checking it is an existing folder."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset folder does not exist: {root}")
    if not root.is_dir():
        raise DatasetError(f"dataset path is not a folder: {root}")
    return root


def layout_error(root: Path, format: str, missing: str) -> DatasetError:
    """A DatasetError saying what ``format`` expected and what ``root`` looks like instead."""
    others = [f for f in matching_formats(root) if f != format]
    if others:
        looks = f"the folder looks like: {', '.join(others)} (try format={others[0]!r})"
    else:
        supported = ", ".join(SUPPORTED_FORMATS)
        looks = f"the folder looks like none of the supported formats ({supported})"
    return DatasetError(
        f"{root} is not a {format} dataset: expected {missing}, which is missing; {looks}. "
        "Run `ucvgl data formats` for the layouts."
    )
