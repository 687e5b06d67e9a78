"""Map metres to GPS with a local tangent plane, and the default origins per format."""

from __future__ import annotations

import math

import numpy as np

EARTH_RADIUS_M = 6378137.0

ORIGINS: dict[str, tuple[float, float]] = {
    "cvact": (-35.2809, 149.1300),  # Canberra
    "cvusa": (38.9717, -95.2353),  # Lawrence, Kansas
    "folder": (-35.2809, 149.1300),
    "Chicago": (41.8781, -87.6298),
    "NewYork": (40.7128, -74.0060),
    "SanFrancisco": (37.7749, -122.4194),
    "Seattle": (47.6062, -122.3321),
}
"""(lat, lon) degrees of the map origin per format or VIGOR city."""

CVACT_UTM_ORIGIN: tuple[float, float] = (692_000.0, 6_093_000.0)
"""(easting, northing) metres written to CVACT's ``utm`` at the map origin (UTM 55H)."""


def metres_to_latlon(
    x: np.ndarray, y: np.ndarray, origin: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Local east/north metres around ``origin`` -> (lat, lon) degrees.

    Args:
        x: east offsets [N] in metres.
        y: north offsets [N] in metres.
        origin: (lat, lon) of the point (0, 0).

    Returns:
        (lat [N], lon [N]) in degrees (equirectangular tangent-plane approximation,
        accurate to centimetres over a few kilometres).
    """
    lat0, lon0 = origin
    lat = lat0 + np.degrees(np.asarray(y, np.float64) / EARTH_RADIUS_M)
    lon = lon0 + np.degrees(
        np.asarray(x, np.float64) / (EARTH_RADIUS_M * math.cos(math.radians(lat0)))
    )
    return lat, lon


def latlon_to_metres(
    lat: np.ndarray, lon: np.ndarray, origin: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`metres_to_latlon`: (x east [N], y north [N]) metres."""
    lat0, lon0 = origin
    y = np.radians(np.asarray(lat, np.float64) - lat0) * EARTH_RADIUS_M
    x = (
        np.radians(np.asarray(lon, np.float64) - lon0)
        * EARTH_RADIUS_M
        * math.cos(math.radians(lat0))
    )
    return x, y
