"""Show a model the panoramas of another vertical layout the way it learnt them.

A ground encoder learns one vertical layout: a CVUSA band (elevations +38.6 to -26.9
degrees, stretched to the encoder's input height) or a full 2:1 sphere (+90 to -90). Fed
the other layout it is at chance: a CVUSA-layout source model scored 0.4% R@1 on a
CVACT-layout target (``benchmarks/results/adaptation_rounds.json``). A run adapted from a
source model (``--init-from``, preset ``init_match_layout``) therefore reads the target's
panoramas through the rows that span the source's elevations: ``EncoderConfig.ground_rows``,
fractions (top, bottom) of the stored panorama's height, cut before the resize to
``ground_size``. Rows outside the image (a band shown to a full-sphere model) are black,
like the authors' padded canvas. The BEV projection still reads the whole panorama.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    from ucvgl.services.datasets.index import CrossViewDataset

log = logging.getLogger(__name__)

Elevations = tuple[float, float]
"""(top, bottom) elevations in degrees above the horizon of a panorama's first and last row."""

FULL_SPHERE: Elevations = (90.0, -90.0)
ROW_TOLERANCE = 1e-3
"""Rows this close to (0, 1) (a fraction of the height) need no cut."""


def dataset_elevations(dataset: CrossViewDataset) -> Elevations:
    """The elevations spanned by the dataset's panoramas (its format, kind and metadata).

    Read from the projection parameters (``bev_params_for_dataset``: a CVUSA band, a
    synthetic world's ``synth_meta.json``) and the size of the first panorama; a full 2:1
    panorama spans :data:`FULL_SPHERE`.
    """
    from ucvgl.services.pipeline import training_split_name
    from ucvgl.services.projection.defaults import bev_params_for_dataset

    params = bev_params_for_dataset(dataset)
    paths = dataset.split(training_split_name(dataset)).ground_paths
    if not paths:
        return FULL_SPHERE
    with Image.open(paths[0]) as image:  # the header only
        w, h = image.size
    band = params.band_elevations((h, w))
    return FULL_SPHERE if band is None else (float(band[0]), float(band[1]))


def seen_elevations(stored: Elevations, rows: tuple[float, float] | None) -> Elevations:
    """The elevations a model sees when it reads ``rows`` of panoramas spanning ``stored``."""
    if rows is None:
        return stored
    top, bottom = stored
    span = top - bottom
    return top - rows[0] * span, top - rows[1] * span


def rows_for(stored: Elevations, wanted: Elevations) -> tuple[float, float] | None:
    """Rows (top, bottom fractions) of a panorama spanning ``stored`` that span ``wanted``.

    None when they are the whole panorama (same layout). Fractions below 0 or above 1 are
    rows beyond the image, filled black by :func:`cut_rows`.

    Raises:
        ValueError: a range whose top is not above its bottom.
    """
    for name, (top, bottom) in (("stored", stored), ("wanted", wanted)):
        if not top > bottom:
            raise ValueError(f"{name} elevations need top > bottom, got {(top, bottom)}")
    span = stored[0] - stored[1]
    rows = ((stored[0] - wanted[0]) / span, (stored[0] - wanted[1]) / span)
    if abs(rows[0]) < ROW_TOLERANCE and abs(rows[1] - 1.0) < ROW_TOLERANCE:
        return None
    return rows


def cut_rows(image: Image.Image, rows: tuple[float, float] | None) -> Image.Image:
    """The rows ``rows`` (fractions of the height) of a panorama; beyond the image is black.

    Args:
        image: the panorama (W x H, any mode).
        rows: (top, bottom) fractions, top < bottom; None returns the image unchanged.
    """
    if rows is None:
        return image
    w, h = image.size
    top, bottom = round(rows[0] * h), round(rows[1] * h)
    return image.crop((0, top, w, max(bottom, top + 1)))


def source_view_rows(
    source_dataset: dict[str, Any],
    source_rows: tuple[float, float] | None,
    target: CrossViewDataset,
) -> tuple[dict[str, Any], tuple[float, float] | None]:
    """The rows a run from a source model reads of the target's panoramas.

    Args:
        source_dataset: the source run's ``{"format", "data"}`` (its run.json).
        source_rows: the source model's own ``ground_rows`` (a source adapted in its turn).
        target: the new run's dataset.

    Returns:
        (record, rows): the record for the report (both datasets' elevations, the rows, or
        why nothing is cut) and the rows (None: the layouts agree or the source's dataset
        cannot be read, then its panoramas are taken as they are, with a warning).
    """
    from ucvgl.services.datasets import load_dataset
    from ucvgl.shared.errors import ConfigError, DatasetError

    target_elev = dataset_elevations(target)
    record: dict[str, Any] = {"target_elevations": list(target_elev)}
    folder, fmt = source_dataset.get("data"), source_dataset.get("format")
    if not folder or not fmt or not Path(folder).is_dir():
        record["reason"] = f"the source's dataset folder {folder!r} is not here: read as they are"
        log.warning("init_match_layout: %s", record["reason"])
        return record | {"rows": None}, None
    try:
        source = load_dataset(Path(folder), fmt)
        source_elev = seen_elevations(dataset_elevations(source), source_rows)
    except (ConfigError, DatasetError, OSError) as exc:
        record["reason"] = f"the source's dataset {folder} cannot be read ({exc}): as they are"
        log.warning("init_match_layout: %s", record["reason"])
        return record | {"rows": None}, None
    rows = rows_for(target_elev, source_elev)
    record["source_elevations"] = list(source_elev)
    record["reason"] = (
        "same vertical layout" if rows is None else "the target's rows that span the source's"
    )
    return record | {"rows": None if rows is None else list(rows)}, rows
