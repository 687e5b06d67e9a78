"""The knobs in which synthetic worlds (like real datasets) differ from one another.

:class:`WorldSettings` is frozen and JSON-friendly: it is part of
:class:`~ucvgl.services.synth.writers.SynthSpec`, written to ``synth_meta.json``'s
``params.world`` and compared when a run is resumed. Its defaults reproduce the original
single world byte for byte: a knob at its default draws nothing from any random stream and
changes no arithmetic, so only worlds that move a knob look different.

Knobs that change the *map* (density, land use, style, texture, sun, shadows, transient
cars) are applied by :func:`~ucvgl.services.synth.city.build_city` through
:meth:`WorldSettings.city_config`; knobs that change the *cameras* (height, pitch, tile
extent, GPS offset, photometric jitter) are applied when each image is rendered.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ucvgl.shared.errors import ConfigError

STYLES: tuple[str, ...] = ("textured", "flat")
"""``textured``: the original look (value-noise texture on ground, roofs and foliage).
``flat``: flat-shaded colours, no texture noise, a different (posterised, hue-mixed)
palette."""

DEFAULT_BEV_FOV_DEG = 170.0
"""The BEV field of view that the default tile extent matches from the camera height."""

HIDDEN_WHEN_UNRECORDED: tuple[str, ...] = ("camera_height_m", "tile_extent_m", "camera_pitch_deg")
"""Knobs that ``record_geometry=False`` keeps out of ``synth_meta.json`` (a digest of them
is written instead, so a resume still notices a change)."""


@dataclass(frozen=True)
class WorldSettings:
    """How a synthetic world looks and how its two cameras see it.

    Every default reproduces the original world exactly.
    """

    camera_height_m: float = 2.0
    """Height of the panorama camera above the ground, metres (> 0)."""
    tile_extent_m: float | None = None
    """Side of a satellite tile on the ground, metres; None: ``2 * camera_height_m *
    tan(85 deg)`` (45.72 m at 2 m), the square a 170-degree BEV from the camera covers."""
    camera_pitch_deg: float = 0.0
    """Camera pitch, degrees (-45..45). Shifts the elevation grid of the panorama: row ``v``
    looks at elevation ``90 - v/H*180 + pitch``, so a positive pitch (camera looking up)
    moves the horizon down by ``pitch/180*H`` rows (an uncalibrated crop, not a rotation)."""
    scene_density: float = 1.0
    """Scale (0.1..4) of the number of buildings per block, trees and cars."""
    downtown_radius: float = 0.3
    """Normalised distance from the map centre (0 centre, 1 the edge of the sampled area)
    below which blocks are downtown (towers, parking); 0..1.5."""
    suburb_radius: float = 0.7
    """Normalised distance below which blocks are suburban (houses, commercial); beyond it
    farms, forests and lakes. >= ``downtown_radius``, at most 1.5."""
    style: str = "textured"
    """``textured`` (the original) or ``flat`` (see :data:`STYLES`)."""
    texture_strength: float = 1.0
    """Scale (0..3) of the texture-noise amplitude on ground, roofs and foliage (ignored by
    the flat style, which has none)."""
    sun_azimuth_deg: float = 135.0
    """Where the sun stands, degrees clockwise from north (shadows point the other way)."""
    sun_elevation_deg: float = 50.0
    """Sun elevation, degrees (5..90); a low sun casts long shadows."""
    shadow_strength: float = 0.5
    """How much a shadow darkens a satellite pixel, 0 (no shadows) .. 0.95."""
    transient_prob: float = 0.0
    """Probability (0..1) that a car (parked or on the street) is transient: present in
    only one of the two views (satellite or panorama, 50/50). 0: every car in both views."""
    gps_offset_m: float = 0.0
    """Distance, metres (0..20), between the camera and the recorded location (the tile
    centre, the coordinates written to the index files), in a seeded random direction per
    location: a GPS error."""
    satellite_jitter: float = 1.0
    """Scale (0..3) of the satellite view's random exposure, white balance, gamma and
    saturation spread (1: the original ranges, 0: every tile the same look)."""
    panorama_jitter: float = 1.0
    """The same for the panoramas."""
    record_geometry: bool = True
    """Write camera height, tile extent, BEV FOV and the panorama's elevation geometry to
    ``synth_meta.json``. False makes the world look like a real dataset: the projection
    falls back to the format's default FOV and band placement."""

    def __post_init__(self) -> None:
        for f in fields(self):  # ints -> floats, so equal settings serialise equally
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
        _check_range("camera_height_m", self.camera_height_m, 0.2, 50.0)
        if self.tile_extent_m is not None:
            _check_range("tile_extent_m", self.tile_extent_m, 5.0, 500.0)
        _check_range("camera_pitch_deg", self.camera_pitch_deg, -45.0, 45.0)
        _check_range("scene_density", self.scene_density, 0.1, 4.0)
        _check_range("downtown_radius", self.downtown_radius, 0.0, 1.5)
        _check_range("suburb_radius", self.suburb_radius, self.downtown_radius, 1.5)
        if self.style not in STYLES:
            raise ConfigError(f"style must be one of {', '.join(STYLES)}; got {self.style!r}")
        _check_range("texture_strength", self.texture_strength, 0.0, 3.0)
        _check_range("sun_azimuth_deg", self.sun_azimuth_deg, -360.0, 360.0)
        _check_range("sun_elevation_deg", self.sun_elevation_deg, 5.0, 90.0)
        _check_range("shadow_strength", self.shadow_strength, 0.0, 0.95)
        _check_range("transient_prob", self.transient_prob, 0.0, 1.0)
        _check_range("gps_offset_m", self.gps_offset_m, 0.0, 20.0)
        _check_range("satellite_jitter", self.satellite_jitter, 0.0, 3.0)
        _check_range("panorama_jitter", self.panorama_jitter, 0.0, 3.0)
        if not isinstance(self.record_geometry, bool):
            raise ConfigError(
                f"record_geometry must be true or false; got {self.record_geometry!r}"
            )

    # ---- derived geometry
    @property
    def tile_extent(self) -> float:
        """The tile side in metres (resolved default)."""
        if self.tile_extent_m is not None:
            return float(self.tile_extent_m)
        return 2.0 * self.camera_height_m * math.tan(math.radians(DEFAULT_BEV_FOV_DEG / 2.0))

    @property
    def bev_fov_deg(self) -> float:
        """The full BEV field of view that covers the tile from the camera height."""
        if self.tile_extent_m is None:
            return DEFAULT_BEV_FOV_DEG
        return 2.0 * math.degrees(math.atan(self.tile_extent / (2.0 * self.camera_height_m)))

    def city_config(self, base):
        """``base`` (a :class:`~ucvgl.services.synth.city.CityConfig`) with the map knobs."""
        return replace(
            base,
            scene_density=self.scene_density,
            downtown_radius=self.downtown_radius,
            suburb_radius=self.suburb_radius,
            style=self.style,
            texture_strength=self.texture_strength,
            sun_azimuth_deg=self.sun_azimuth_deg,
            sun_elevation_deg=self.sun_elevation_deg,
            shadow_strength=self.shadow_strength,
            transient_prob=self.transient_prob,
        )

    # ---- serialisation
    def params(self) -> dict[str, Any]:
        """JSON-friendly knobs for ``synth_meta.json`` (compared on resume).

        With ``record_geometry=False`` the :data:`HIDDEN_WHEN_UNRECORDED` knobs are replaced
        by ``hidden_geometry``, a digest of their values.
        """
        d = asdict(self)
        if not self.record_geometry:
            hidden = {k: d.pop(k) for k in HIDDEN_WHEN_UNRECORDED}
            blob = json.dumps(hidden, sort_keys=True).encode()
            d["hidden_geometry"] = hashlib.sha256(blob).hexdigest()[:16]
        return d

    def changed(self) -> dict[str, Any]:
        """The knobs that differ from the defaults."""
        default = WorldSettings()
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> WorldSettings:
        """Build from a mapping of knob -> value (JSON types or strings), validated.

        Raises:
            ConfigError: naming an unknown knob (and listing the allowed ones) or a bad
                value.
        """
        allowed = knob_names()
        unknown = sorted(k for k in values if k not in allowed)
        if unknown:
            raise ConfigError(
                f"unknown world knob {', '.join(unknown)}; allowed: {', '.join(allowed)}"
            )
        return cls(**{k: coerce_knob(k, v) for k, v in values.items()})

    def with_updates(self, values: dict[str, Any]) -> WorldSettings:
        """A copy with ``values`` (as :meth:`from_dict`) applied on top."""
        merged = {**asdict(self), **values}
        return WorldSettings.from_dict(merged)


def knob_names() -> list[str]:
    """The names of every :class:`WorldSettings` knob, in declaration order."""
    return [f.name for f in fields(WorldSettings)]


def coerce_knob(name: str, value: Any) -> Any:
    """Convert ``value`` (a JSON value or a command-line string) to knob ``name``'s type.

    Raises:
        ConfigError: naming the knob when the value does not fit its type.
    """
    if name not in knob_names():
        raise ConfigError(f"unknown world knob {name}; allowed: {', '.join(knob_names())}")
    text = value.strip() if isinstance(value, str) else None
    try:
        if name == "record_geometry":
            if isinstance(value, bool):
                return value
            if text is not None and text.lower() in ("true", "1", "yes", "on"):
                return True
            if text is not None and text.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if name == "style":
            if not isinstance(value, str):
                raise ValueError
            return text.lower()
        if name == "tile_extent_m" and (
            value is None or (text is not None and text.lower() in ("none", "auto", ""))
        ):
            return None
        if isinstance(value, bool):
            raise ValueError
        number = float(text if text is not None else value)
        if not math.isfinite(number):
            raise ValueError
        return number
    except (TypeError, ValueError):
        kind = {"record_geometry": "true or false", "style": f"one of {', '.join(STYLES)}"}.get(
            name, "a number" + (" or auto" if name == "tile_extent_m" else "")
        )
        raise ConfigError(f"world knob {name}: expected {kind}, got {value!r}") from None


def _check_range(name: str, value: Any, lo: float, hi: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not lo <= value <= hi
    ):
        raise ConfigError(f"world knob {name} must be a number in [{lo:g}, {hi:g}]; got {value!r}")


__all__ = [
    "DEFAULT_BEV_FOV_DEG",
    "HIDDEN_WHEN_UNRECORDED",
    "STYLES",
    "WorldSettings",
    "coerce_knob",
    "knob_names",
]
