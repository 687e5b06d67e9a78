"""A family of named synthetic worlds: TUNING worlds and REPORT worlds.

The rule: **presets and any other knob of the method are tuned on ``tune-*`` worlds only,
and quality is reported on ``report-*`` worlds only.** A report world is never looked at
while choosing settings; a number measured on a tuning world is a development number,
never a reported result.

The worlds differ in the knobs in which real datasets differ (camera height and pitch,
tile extent, scene density and land use, rendering style and texture, sun and shadows,
transient cars, GPS error, photometric jitter, JPEG quality, whether the geometry is
recorded), not only in the seed. Some report-world settings (the flat style, tiles of 60
and 92 m, a 2.5 m camera, a 1.5 m GPS error in VIGOR) occur in no tuning world, so a
report number also says how a method tuned on one generator transfers to another.

``WORLDS`` maps a name to its :class:`NamedWorld`; :func:`generate_named_world` writes one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ucvgl.services.progress import NullProgress, Progress
from ucvgl.services.synth.generate import generate_world
from ucvgl.services.synth.settings import WorldSettings
from ucvgl.services.synth.writers import FORMATS
from ucvgl.shared.errors import ConfigError

ROLES: tuple[str, ...] = ("tune", "report")

CVUSA_TILE_EXTENT_M = 2.0 * 2.0 * math.tan(math.radians(175.0 / 2.0))
"""91.6 m: the ground square that CVUSA's default 175-degree BEV covers from 2 m."""


@dataclass(frozen=True)
class NamedWorld:
    """One registry entry: everything :func:`generate_world` needs besides the counts."""

    name: str
    role: str
    """"tune" or "report" (see the module docstring for the rule)."""
    format: str
    seed: int
    settings: WorldSettings
    description: str
    pano_size: tuple[int, int] = (128, 256)
    sat_size: int = 128
    jpeg_quality: int = 90
    band_deg: tuple[float, float] = (38.6, -26.9)
    cities: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(f"world {self.name}: role must be one of {ROLES}")
        if not self.name.startswith(f"{self.role}-"):
            raise ConfigError(f"world {self.name}: a {self.role} world is named {self.role}-N")
        if self.format not in FORMATS:
            raise ConfigError(f"world {self.name}: unknown format {self.format!r}")

    def key_settings(self) -> str:
        """The knobs that differ from the defaults, as ``k=v`` text (plus the JPEG quality)."""
        items = [f"{k}={_fmt(v)}" for k, v in self.settings.changed().items()]
        if self.jpeg_quality != 90:
            items.append(f"jpeg_quality={self.jpeg_quality}")
        if self.cities:
            items.append(f"cities={','.join(self.cities)}")
        return " ".join(items) or "defaults (the original world)"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


_ENTRIES: tuple[NamedWorld, ...] = (
    # ------------------------------------------------------------------ tuning worlds
    NamedWorld(
        "tune-1",
        "tune",
        "cvact",
        1001,
        WorldSettings(),
        "the original generator: 2 m camera, 45.7 m tiles, textured mixed city, noon sun",
    ),
    NamedWorld(
        "tune-2",
        "tune",
        "cvusa",
        1002,
        WorldSettings(
            camera_height_m=2.2,
            tile_extent_m=50.0,
            camera_pitch_deg=3.0,
            scene_density=1.3,
            sun_azimuth_deg=200.0,
            sun_elevation_deg=35.0,
            transient_prob=0.2,
            panorama_jitter=1.5,
        ),
        "CVUSA band layout, busier streets, afternoon sun, some transient cars, tilted camera",
        jpeg_quality=80,
    ),
    NamedWorld(
        "tune-3",
        "tune",
        "folder",
        1003,
        WorldSettings(
            camera_height_m=1.8,
            scene_density=0.7,
            downtown_radius=0.1,
            suburb_radius=1.2,
            texture_strength=0.6,
            sun_azimuth_deg=60.0,
            sun_elevation_deg=60.0,
            shadow_strength=0.35,
            gps_offset_m=1.0,
            satellite_jitter=1.5,
            record_geometry=False,
        ),
        "own-imagery folder layout, random headings, suburb, 1 m GPS error, geometry unrecorded",
    ),
    # ------------------------------------------------------------------ report worlds
    NamedWorld(
        "report-1",
        "report",
        "cvact",
        2001,
        WorldSettings(camera_height_m=2.5, tile_extent_m=60.0, record_geometry=False),
        "taller camera (2.5 m) and wider tiles (60 m), geometry unrecorded: default FOV is wrong",
    ),
    NamedWorld(
        "report-2",
        "report",
        "cvact",
        2002,
        WorldSettings(
            style="flat",
            transient_prob=0.5,
            satellite_jitter=2.0,
            panorama_jitter=2.5,
        ),
        "another look: flat-shaded palette without texture, strong photometric jitter, "
        "half the cars in one view only",
    ),
    NamedWorld(
        "report-3",
        "report",
        "vigor",
        2003,
        WorldSettings(
            scene_density=1.6,
            downtown_radius=1.0,
            suburb_radius=1.5,
            sun_azimuth_deg=250.0,
            sun_elevation_deg=20.0,
            shadow_strength=0.6,
            gps_offset_m=1.5,
        ),
        "dense downtown in the VIGOR layout, low evening sun with long shadows, 1.5 m GPS error",
        cities=("Seattle",),
    ),
    NamedWorld(
        "report-4",
        "report",
        "cvusa",
        2004,
        WorldSettings(
            tile_extent_m=CVUSA_TILE_EXTENT_M,
            scene_density=0.5,
            downtown_radius=0.0,
            suburb_radius=1.5,
            record_geometry=False,
        ),
        "CVUSA layout with 91.6 m tiles (175 deg at 2 m, the CVUSA default), sparse suburb",
    ),
    NamedWorld(
        "report-5",
        "report",
        "folder",
        2005,
        WorldSettings(
            camera_height_m=1.6,
            camera_pitch_deg=-4.0,
            texture_strength=1.8,
            sun_azimuth_deg=10.0,
            sun_elevation_deg=70.0,
            gps_offset_m=3.0,
        ),
        "low camera looking down (horizon raised), heavy texture, 3 m GPS error, JPEG 60",
        jpeg_quality=60,
    ),
)

WORLDS: dict[str, NamedWorld] = {w.name: w for w in _ENTRIES}
"""Every named world by name: ``tune-*`` for tuning, ``report-*`` for reported quality."""


def world_names(role: str | None = None) -> list[str]:
    """Names of the registered worlds, optionally of one role ("tune" or "report")."""
    return [n for n, w in WORLDS.items() if role is None or w.role == role]


def get_world(name: str) -> NamedWorld:
    """The registry entry ``name``.

    Raises:
        ConfigError: for an unknown name (listing the known ones).
    """
    try:
        return WORLDS[name]
    except KeyError:
        raise ConfigError(f"unknown synthetic world {name!r}; known: {', '.join(WORLDS)}") from None


def generate_named_world(
    name: str,
    out: Path,
    n_train: int,
    n_val: int,
    *,
    pano_size: tuple[int, int] | None = None,
    sat_size: int | None = None,
    workers: int = 2,
    progress: Progress = NullProgress(),
    settings: WorldSettings | None = None,
) -> Path:
    """Generate registry world ``name`` (its format, seed, knobs, JPEG quality) in ``out``.

    Args:
        name: a key of :data:`WORLDS`.
        out: the output folder (as :func:`generate_world`).
        n_train, n_val: the number of locations.
        pano_size, sat_size: image sizes; None keeps the entry's (128x256 and 128).
        workers: rendering processes.
        progress: receives the stage's progress and is checked for cancellation.
        settings: replaces the entry's knobs (then it is no longer that world; callers
            should say so).

    Returns:
        ``out``.

    Raises:
        ConfigError: unknown name or bad parameters.
    """
    world = get_world(name)
    return generate_world(
        out,
        world.format,
        n_train,
        n_val,
        seed=world.seed,
        pano_size=pano_size if pano_size is not None else world.pano_size,
        sat_size=sat_size if sat_size is not None else world.sat_size,
        workers=workers,
        progress=progress,
        band_deg=world.band_deg,
        cities=world.cities,
        jpeg_quality=world.jpeg_quality,
        world=settings if settings is not None else world.settings,
    )


def registry_table() -> str:
    """The registry as a plain-text table (name, role, format, seed, key settings)."""
    rows = [("name", "role", "format", "seed", "key settings")]
    for w in WORLDS.values():
        rows.append((w.name, w.role, w.format, str(w.seed), w.key_settings()))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for r in rows:
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:4])) + "  " + r[4])
        if r[0] != "name":
            lines.append(" " * (sum(widths) + 8) + WORLDS[r[0]].description)
    return "\n".join(lines)


__all__ = [
    "CVUSA_TILE_EXTENT_M",
    "ROLES",
    "WORLDS",
    "NamedWorld",
    "generate_named_world",
    "get_world",
    "registry_table",
    "world_names",
]
