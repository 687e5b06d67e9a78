"""``load_dataset``: one entry point that dispatches to the reader of each layout."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ucvgl.services.datasets.cvact import read_cvact
from ucvgl.services.datasets.cvusa import read_cvusa
from ucvgl.services.datasets.folder import read_folder
from ucvgl.services.datasets.index import CrossViewDataset
from ucvgl.services.datasets.layout import check_format_name, check_root, detect_format
from ucvgl.services.datasets.vigor import read_vigor
from ucvgl.services.progress import Progress
from ucvgl.shared.errors import ConfigError, DatasetError

READERS: dict[str, Callable[..., CrossViewDataset]] = {
    "cvusa": read_cvusa,
    "cvact": read_cvact,
    "vigor": read_vigor,
    "folder": read_folder,
}
_COMMON = {"skip_invalid", "validate_images", "name", "progress"}


def reader_options(format: str) -> list[str]:
    """The format-specific keyword options of a reader (e.g. VIGOR's cities, protocol)."""
    params = inspect.signature(READERS[check_format_name(format)]).parameters
    return [p for p, v in params.items() if v.kind is v.KEYWORD_ONLY and p not in _COMMON]


def load_dataset(
    root: Path,
    format: str,
    *,
    skip_invalid: bool = False,
    name: str | None = None,
    validate_images: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> CrossViewDataset:
    """Read a dataset folder in one of :data:`SUPPORTED_FORMATS` into the common index.

    Args:
        root: the dataset folder.
        format: "cvusa", "cvact", "vigor", "folder", or "auto" (see :func:`detect_format`).
        skip_invalid: drop entries with problems (recorded in ``dataset.report``) instead of
            raising.
        name: the dataset name (default: the folder name).
        validate_images: also open every image header with Pillow (slower).
        progress: reports progress and is polled for cancellation.
        **options: format-specific options, e.g. VIGOR's ``cities=("Seattle",)`` and
            ``protocol="cross_area"``.

    Returns:
        The dataset; every split has at least one panorama.

    Raises:
        DatasetError: wrong layout, problems found (without ``skip_invalid``), or nothing
            usable left.
        ConfigError: an option the format does not take.
    """
    root = check_root(root)
    if str(format).strip().lower() == "auto":
        detected = detect_format(root)
        if detected is None:
            raise DatasetError(
                f"cannot tell the format of {root}: it has none of the marker files; "
                "run `ucvgl data formats` for the layouts"
            )
        format = detected
    fmt = check_format_name(format)
    unknown = sorted(set(options) - set(reader_options(fmt)))
    if unknown:
        allowed = ", ".join(reader_options(fmt)) or "none"
        raise ConfigError(f"format {fmt!r} takes no option(s) {unknown}; its options: {allowed}")
    dataset = READERS[fmt](
        root,
        skip_invalid=skip_invalid,
        validate_images=validate_images,
        name=name,
        progress=progress,
        **options,
    )
    dataset.load_options = {"skip_invalid": skip_invalid, **options}
    return _drop_empty_splits(dataset)


def _drop_empty_splits(dataset: CrossViewDataset) -> CrossViewDataset:
    """Remove splits without panoramas; a dataset with none left is an error."""
    empty = [s for s, split in dataset.splits.items() if split.num_ground == 0]
    for s in empty:
        del dataset.splits[s]
    if not dataset.splits:
        skipped = dataset.report.skipped
        why = f" (all {skipped} entries were skipped as invalid)" if skipped else ""
        raise DatasetError(
            f"{dataset.format} dataset at {dataset.root} has no usable panoramas{why}; "
            f"check the folder {dataset.root}"
        )
    for s, split in dataset.splits.items():
        if split.num_satellite == 0:
            raise DatasetError(
                f"{dataset.format} dataset at {dataset.root}: split {s!r} has panoramas but "
                "no satellite tiles"
            )
    return dataset
