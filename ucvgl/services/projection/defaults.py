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
``fov_deg`` (full BEV field of view), else ``camera_height_m`` with ``tile_extent_m``
(FOV = 2 atan(extent / (2 height)), so that the BEV covers the tile exactly);
``panorama`` ('full' | 'band'); for band panoramas ``band_top_elevation_deg`` and
``band_bottom_elevation_deg`` (or ``band_elevation_deg: [top, bottom]``).
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
    fov = _number(meta, "fov_deg", path)
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

    top = _number(meta, "band_top_elevation_deg", path)
    bottom = _number(meta, "band_bottom_elevation_deg", path)
    pair = meta.get("band_elevation_deg")
    if top is None and bottom is None and pair is not None:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise ConfigError(f"{path}: 'band_elevation_deg' must be [top, bottom], got {pair!r}")
        top, bottom = (_number({"band_elevation_deg": v}, "band_elevation_deg", path) for v in pair)
    kind = meta.get("panorama")
    if kind not in (None, "full", "band"):
        raise ConfigError(f"{path}: 'panorama' must be 'full' or 'band', got {kind!r}")
    if top is not None or bottom is not None:
        return replace(
            params,
            band_top_elevation_deg=top,
            band_bottom_elevation_deg=bottom,
            band_offset_px=None,
        )
    if kind == "full":
        return _without_band(params)
    return params


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
