"""Default projection parameters per dataset format, and from a synthetic world's metadata.

Defaults (paper and authors' code):

| format | FOV | BEV size | panorama |
|---|---|---|---|
| cvact  | 170 | 1200 (CVACT's satellite size) | full 2:1 |
| cvusa  | 175 | 750 (CVUSA's satellite size) | 1232x224 band, strip centre 20 px above the canvas
  centre (authors' offset, = elevations +38.6 .. -26.9 deg) |
| vigor  | 170 | 640 (VIGOR's satellite size) | full 2:1 |
| folder | 170 | 1200 | full 2:1 (a non-2:1 panorama is centred on the horizon) |

VIGOR is not projected by the authors (no VIGOR CycleGAN); we use CVACT's 170 degrees. With a
camera about 2 m high this covers the central ~46 m of VIGOR's ~73 m tiles; VIGOR panoramas
lie anywhere in their tile's central area, not at its centre, so a wider view would not
align better and would spend pixels on the stretched far field.

The pipeline trains at small sizes: pass ``out_size`` to override the paper's.

A synthetic world (``ucvgl.services.synth.generate_world``) writes ``synth_meta.json`` in
its root. :func:`bev_params_for_dataset` reads these keys from it (others are ignored):
``bev_fov_deg`` (full BEV field of view), else ``camera_height_m`` with ``tile_extent_m``
(FOV = 2 atan(extent / (2 height)), so that the BEV covers the tile exactly), and
``panorama: {"kind": "full" | "band", "top_elevation_deg", "bottom_elevation_deg"}`` (the
elevations of a band's top and bottom edges).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ucvgl.services.projection.geometry import (
    CVUSA_BAND_OFFSET_PX,
    CVUSA_REFERENCE_WIDTH,
    BEVParams,
)
from ucvgl.shared.errors import ConfigError

if TYPE_CHECKING:
    from ucvgl.services.datasets.index import CrossViewDataset

SYNTH_META_FILE = "synth_meta.json"

_DEFAULTS: dict[str, BEVParams] = {
    "cvact": BEVParams(fov_deg=170.0, out_size=1200),
    "cvusa": BEVParams(
        fov_deg=175.0,
        out_size=750,
        band_offset_px=CVUSA_BAND_OFFSET_PX,
        band_reference_width=CVUSA_REFERENCE_WIDTH,
    ),
    "vigor": BEVParams(fov_deg=170.0, out_size=640),
    "folder": BEVParams(fov_deg=170.0, out_size=1200),
}


def default_bev_params(format: str, out_size: int | None = None) -> BEVParams:
    """The paper's projection parameters for a dataset format.

    Args:
        format: 'cvusa', 'cvact', 'vigor' or 'folder'.
        out_size: BEV side in pixels; None keeps the paper's (1200 CVACT, 750 CVUSA...).

    Raises:
        ConfigError: for an unknown format.
    """
    key = str(format).lower()
    if key not in _DEFAULTS:
        raise ConfigError(
            f"unknown dataset format {format!r} for the projection; use one of {sorted(_DEFAULTS)}"
        )
    params = _DEFAULTS[key]
    return params if out_size is None else params.with_size(out_size)


def _number(meta: dict[str, Any], key: str, path: Path) -> float | None:
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{path}: {key!r} must be a finite number, got {value!r}")
    return float(value)


def params_from_synth_meta(meta: dict[str, Any], base: BEVParams, path: Path) -> BEVParams:
    """Apply a synthetic world's metadata (see module docstring) on top of ``base``.

    Raises:
        ConfigError: naming ``path`` when a value is missing, of the wrong type or invalid.
    """
    try:
        return _apply_synth_meta(meta, base, path)
    except ConfigError as exc:
        if str(path) in str(exc):
            raise
        raise ConfigError(f"{path}: {exc}") from exc


def _apply_synth_meta(meta: dict[str, Any], base: BEVParams, path: Path) -> BEVParams:
    fov = _number(meta, "bev_fov_deg", path)
    if fov is None:
        height = _number(meta, "camera_height_m", path)
        extent = _number(meta, "tile_extent_m", path)
        if height is not None and extent is not None:
            if height <= 0 or extent <= 0:
                raise ConfigError(
                    f"{path}: camera_height_m and tile_extent_m must be positive, "
                    f"got {height} and {extent}"
                )
            fov = 2.0 * math.degrees(math.atan(extent / (2.0 * height)))
    params = base if fov is None else replace(base, fov_deg=fov)

    pano = meta.get("panorama")
    if pano is None:
        return params
    if not isinstance(pano, dict) or pano.get("kind") not in ("full", "band"):
        raise ConfigError(
            f"{path}: 'panorama' must be an object with kind 'full' or 'band', got {pano!r}"
        )
    if pano["kind"] == "full":
        return _without_band(params)
    top = _number(pano, "top_elevation_deg", path)
    bottom = _number(pano, "bottom_elevation_deg", path)
    if top is None or bottom is None:
        raise ConfigError(
            f"{path}: a 'band' panorama needs top_elevation_deg and bottom_elevation_deg"
        )
    return replace(
        params, band_top_elevation_deg=top, band_bottom_elevation_deg=bottom, band_offset_px=None
    )


def _without_band(params: BEVParams) -> BEVParams:
    return replace(
        params, band_top_elevation_deg=None, band_bottom_elevation_deg=None, band_offset_px=None
    )


def bev_params_for_dataset(dataset: CrossViewDataset, out_size: int | None = None) -> BEVParams:
    """Projection parameters for a dataset: format defaults, its panorama kind, synth metadata.

    Args:
        dataset: the dataset index.
        out_size: BEV side in pixels; None keeps the format's default.

    Returns:
        :func:`default_bev_params` of its format; band settings dropped when the dataset's
        panoramas are full spheres; then ``<root>/synth_meta.json`` applied when present.

    Raises:
        ConfigError: when synth_meta.json is unreadable or holds invalid values.
    """
    params = default_bev_params(dataset.format, out_size)
    if dataset.panorama == "full":
        params = _without_band(params)
    meta_path = Path(dataset.root) / SYNTH_META_FILE
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(
                f"{meta_path}: cannot read the synthetic world's metadata: {exc}"
            ) from exc
        if not isinstance(meta, dict):
            raise ConfigError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}")
        params = params_from_synth_meta(meta, params, meta_path)
    return params
