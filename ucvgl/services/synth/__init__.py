"""A procedural cross-view world: satellite tiles and ground panoramas of a seeded
synthetic city, written in the public dataset layouts (CVUSA, CVACT, VIGOR, folder).

Modules: ``world`` (the raster map), ``city`` (the procedural generator and the capture
locations), ``render`` (satellite and panorama renderers), ``writers`` (dataset layouts),
``geo`` (metres <-> GPS), ``settings`` (:class:`WorldSettings`, the knobs in which worlds
differ), ``family`` (the registry of named tuning and report worlds), ``generate``
(:func:`generate_world`, the entry point).
"""

from ucvgl.services.synth.generate import META_FILE, generate_world
from ucvgl.services.synth.render import (
    BEV_FOV_DEG,
    CAMERA_HEIGHT_M,
    TILE_EXTENT_M,
    render_panorama,
    render_satellite,
)
from ucvgl.services.synth.settings import WorldSettings
from ucvgl.services.synth.world import World
from ucvgl.services.synth.writers import FORMATS

__all__ = [
    "BEV_FOV_DEG",
    "CAMERA_HEIGHT_M",
    "FORMATS",
    "META_FILE",
    "TILE_EXTENT_M",
    "World",
    "WorldSettings",
    "generate_world",
    "render_panorama",
    "render_satellite",
]
