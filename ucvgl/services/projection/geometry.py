"""Geometric projection of a ground panorama to a bird's-eye view (BEV), paper Eq. 2.

For BEV pixel (u_s, v_s) of an S x S image, with d = sqrt((S/2 - u_s)^2 + (S/2 - v_s)^2)
and f = (S/2) / tan(FOV/2) (the HALF angle, as in the authors' code)::

    u_g = W_g/2 * (1 - atan2(S/2 - u_s, S/2 - v_s) / pi)
    v_g = H_g   * (0.5 - atan2(-f, d) / pi)

North (the BEV's top row centre) is the panorama's centre column, east (right) its 3/4
column, south its seam (columns 0 / W_g) and the BEV centre the nadir (the bottom row of a
full panorama). Only the lower hemisphere is used. The BEV edge lies FOV/2 from the nadir,
i.e. (90 - FOV/2) degrees below the horizon: with a camera h metres high the BEV covers a
square of side 2 h tan(FOV/2) (45.7 m for h = 2 m, FOV 170).

Pixel conventions (ours; the authors' code differs by under one pixel):
    * BEV pixel (row i, column j) is sampled at its centre, u_s = j + 0.5, v_s = i + 0.5,
      so the BEV is symmetric about its centre (the nadir lies between the four middle
      pixels of an even-sized BEV). The authors use u_s = j.
    * Panorama coordinates are continuous with pixel k covering [k, k + 1): column k spans
      the azimuths [k, k + 1) * 360 / W_g. This is ``grid_sample(align_corners=False)``:
      x = 2 u_g / W_g - 1. The authors use ``align_corners=True``, which stretches the
      panorama by one pixel.
    * Horizontal wrap: the panorama is padded by one column on each side circularly before
      sampling, so the south seam interpolates between the last and the first column and
      shows no black line. Vertically a full panorama is clamped at its border (the nadir
      is its bottom edge).

Band panoramas (a horizon strip such as CVUSA's 1232 x 224) are placed on a virtual 2:1
canvas of width W_g (height W_g/2) before Eq. 2 is applied; the canvas is never built, the
grid maps straight into the strip. The strip's vertical placement is given either as an
elevation range (``band_top_elevation_deg``/``band_bottom_elevation_deg``: the elevations of
the strip's top and bottom edges, degrees above the horizon) or as the authors' pixel offset
(``band_offset_px``: the strip is drawn at its native angular scale, its centre
``band_offset_px`` pixels below the canvas centre on a canvas ``band_reference_width`` pixels
wide; CVUSA uses -20 on 1232, i.e. the strip's centre 20 px ABOVE the canvas's horizon row,
which spans elevations +38.6 to -26.9 degrees). Rows outside the strip are black
(``band_fill='zeros'``, as the authors' padded canvas) or repeat the strip's edge row
(``band_fill='edge'``). A non-2:1 panorama with no band placement is centred on the horizon
at its native angular scale (offset 0).

Precision: the grid is computed in float64 and cast to the sampling dtype. float16 and
bfloat16 panoramas are sampled in float32 and the result cast back to their dtype, because
bfloat16 grid coordinates (8 mantissa bits) would be off by several pixels on a 1664-wide
panorama.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ucvgl.shared.errors import ConfigError

BandFill = Literal["zeros", "edge"]

CVUSA_BAND_OFFSET_PX = -20.0
"""Authors' CVUSA strip placement: strip centre 20 px above the canvas centre (1232 wide)."""
CVUSA_REFERENCE_WIDTH = 1232
"""Width of the canvas on which ``band_offset_px`` is measured (CVUSA's panorama width)."""

_LOW_PRECISION = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class BEVParams:
    """How to project a panorama to a bird's-eye view.

    Attributes:
        fov_deg: full field of view of the BEV camera in degrees (0 < fov < 180); the BEV's
            edge lies fov/2 from the nadir.
        out_size: side S of the square BEV in pixels.
        band_top_elevation_deg / band_bottom_elevation_deg: elevation (degrees above the
            horizon, -90..90) of the top and bottom edges of a band panorama. Set both or
            neither.
        band_offset_px: the authors' placement of a band panorama: the strip's centre lies
            this many pixels below the canvas centre (negative = above), measured on a canvas
            ``band_reference_width`` pixels wide and scaled with the actual width.
            Exclusive with the elevation range.
        band_reference_width: width the offset is measured on (1232, CVUSA).
        band_fill: 'zeros' (rows outside the strip are black, as in the authors' canvas) or
            'edge' (they repeat the strip's top/bottom row).

    With no band placement a 2:1 panorama is treated as a full sphere and any other aspect
    as a strip centred on the horizon at its native angular scale.
    """

    fov_deg: float = 170.0
    out_size: int = 256
    band_top_elevation_deg: float | None = None
    band_bottom_elevation_deg: float | None = None
    band_offset_px: float | None = None
    band_reference_width: int = CVUSA_REFERENCE_WIDTH
    band_fill: BandFill = "zeros"

    def __post_init__(self) -> None:
        if not 0.0 < float(self.fov_deg) < 180.0:
            raise ConfigError(f"BEVParams.fov_deg must be in (0, 180) degrees, got {self.fov_deg}")
        if int(self.out_size) != self.out_size or self.out_size < 1:
            raise ConfigError(f"BEVParams.out_size must be a positive integer, got {self.out_size}")
        top, bottom = self.band_top_elevation_deg, self.band_bottom_elevation_deg
        if (top is None) != (bottom is None):
            raise ConfigError(
                "BEVParams: set both band_top_elevation_deg and band_bottom_elevation_deg, "
                f"or neither (got top={top}, bottom={bottom})"
            )
        if top is not None and bottom is not None:
            if not -90.0 <= bottom < top <= 90.0:
                raise ConfigError(
                    "BEVParams: band elevations need -90 <= bottom < top <= 90 degrees, "
                    f"got top={top}, bottom={bottom}"
                )
            if self.band_offset_px is not None:
                raise ConfigError(
                    "BEVParams: give the band placement as an elevation range OR as "
                    "band_offset_px, not both"
                )
        if self.band_reference_width < 1:
            raise ConfigError(
                f"BEVParams.band_reference_width must be >= 1, got {self.band_reference_width}"
            )
        if self.band_fill not in ("zeros", "edge"):
            raise ConfigError(
                f"BEVParams.band_fill must be 'zeros' or 'edge', got {self.band_fill!r}"
            )

    @property
    def has_band_placement(self) -> bool:
        """Whether a band placement (elevation range or pixel offset) is set."""
        return self.band_top_elevation_deg is not None or self.band_offset_px is not None

    @property
    def focal_px(self) -> float:
        """Focal length of the BEV camera in BEV pixels: (S/2) / tan(FOV/2)."""
        return (self.out_size / 2.0) / math.tan(math.radians(self.fov_deg) / 2.0)

    def with_size(self, out_size: int) -> BEVParams:
        """A copy with another output size."""
        return replace(self, out_size=out_size)

    def band_elevations(self, pano_hw: tuple[int, int]) -> tuple[float, float] | None:
        """Elevations (top, bottom) in degrees of a panorama of this size, None if full.

        Args:
            pano_hw: (H_g, W_g) of the panorama as given to the projection.
        """
        h, w = _check_hw(pano_hw)
        if self.band_top_elevation_deg is not None:
            return float(self.band_top_elevation_deg), float(self.band_bottom_elevation_deg)
        if self.band_offset_px is None and w == 2 * h:
            return None
        offset = 0.0 if self.band_offset_px is None else float(self.band_offset_px)
        canvas_h = w / 2.0
        top_px = (canvas_h - h) / 2.0 + offset * w / self.band_reference_width
        top = 90.0 - 180.0 * top_px / canvas_h
        bottom = 90.0 - 180.0 * (top_px + h) / canvas_h
        return top, bottom


def _check_hw(pano_hw: tuple[int, int]) -> tuple[int, int]:
    h, w = (int(v) for v in pano_hw)
    if h < 1 or w < 1:
        raise ValueError(f"panorama size must be positive (H, W), got {tuple(pano_hw)}")
    return h, w


def bev_sampling_grid(
    params: BEVParams, pano_hw: tuple[int, int], dtype: torch.dtype = torch.float32
) -> Tensor:
    """The normalised ``grid_sample`` grid that turns a panorama into a BEV (Eq. 2).

    Coordinates are those of the UNPADDED panorama with ``align_corners=False``
    (x = 2 u_g / W_g - 1 in [-1, 1), y = 2 v / H_g - 1); for a band panorama y refers to
    the strip itself and leaves [-1, 1] where the BEV looks below the strip.
    :func:`panorama_to_bev` adds the circular column padding and rescales x.

    Args:
        params: projection parameters.
        pano_hw: (H_g, W_g) of the panorama.
        dtype: dtype of the result (computed in float64, then cast).

    Returns:
        Tensor [S, S, 2] on the CPU, last dim (x, y).
    """
    _check_hw(pano_hw)
    size = params.out_size
    centre = torch.arange(size, dtype=torch.float64) + 0.5  # pixel centres
    v_s, u_s = torch.meshgrid(centre, centre, indexing="ij")  # [S, S] rows, columns
    dx = size / 2.0 - u_s
    dy = size / 2.0 - v_s
    d = torch.sqrt(dx * dx + dy * dy)
    # Horizontal: u_g / W_g = (1 - atan2(dx, dy)/pi) / 2, so x = 2 u_g/W_g - 1 = -atan2/pi.
    x = -torch.atan2(dx, dy) / math.pi
    # Vertical: fraction t = v_g / H_g of a full 2:1 canvas, in (0.5, 1].
    t = 0.5 - torch.atan2(torch.full_like(d, -params.focal_px), d) / math.pi
    band = params.band_elevations(pano_hw)
    if band is None:
        y = 2.0 * t - 1.0
    else:
        top, bottom = band
        elevation = 180.0 * (0.5 - t)  # degrees above the horizon (negative below)
        y = 2.0 * (top - elevation) / (top - bottom) - 1.0
    return torch.stack([x, y], dim=-1).to(dtype)


def _padding_mode(params: BEVParams, pano_hw: tuple[int, int]) -> str:
    """'border' for full panoramas (nadir on the edge) and edge-filled bands, else 'zeros'."""
    if params.band_elevations(pano_hw) is not None and params.band_fill == "zeros":
        return "zeros"
    return "border"


def _padded_grid(params: BEVParams, pano_hw: tuple[int, int], dtype: torch.dtype) -> Tensor:
    """The grid [S, S, 2] for the panorama padded by one column each side (W_g + 2 wide)."""
    grid = bev_sampling_grid(params, pano_hw, torch.float64)
    width = pano_hw[1]
    # x of the unpadded panorama -> x of the padded one (align_corners=False):
    # u' = u + 1  =>  x' = x * W / (W + 2).
    grid[..., 0] *= width / (width + 2.0)
    return grid.to(dtype)


def _sample(pano: Tensor, padded_grid: Tensor, padding_mode: str) -> Tensor:
    """Pad ``pano`` [B, C, H, W] by one column each side circularly and sample the grid."""
    padded = F.pad(pano, (1, 1, 0, 0), mode="circular")
    grid = padded_grid.unsqueeze(0).expand(pano.shape[0], -1, -1, -1)
    return F.grid_sample(
        padded, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False
    )


def _check_pano(pano: Tensor) -> None:
    if not isinstance(pano, Tensor) or pano.dim() != 4:
        shape = tuple(pano.shape) if isinstance(pano, Tensor) else type(pano).__name__
        raise ValueError(f"panorama must be a tensor [B, C, H, W], got {shape}")
    if not pano.is_floating_point():
        raise ValueError(
            f"panorama must be a floating-point tensor (got {pano.dtype}); "
            "convert uint8 images with .float() first"
        )


class BEVProjector(nn.Module):
    """Projects batches of panoramas to BEVs, caching one grid per (size, device, dtype).

    The cache is a small LRU inside the module (no global state); the module has no
    parameters and its state_dict is empty.

    Args:
        params: projection parameters.
        cache_size: how many grids to keep (one per panorama size / device / dtype).
    """

    def __init__(self, params: BEVParams, cache_size: int = 8) -> None:
        super().__init__()
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self.params = params
        self.cache_size = cache_size
        self._grids: OrderedDict[tuple, Tensor] = OrderedDict()

    def grid(
        self,
        pano_hw: tuple[int, int],
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """The cached grid [S, S, 2] for panoramas of size ``pano_hw`` padded circularly.

        The grid addresses the panorama after one column of circular padding on each side
        ([B, C, H_g, W_g + 2]); :func:`bev_sampling_grid` gives the unpadded one.
        """
        key = (tuple(int(v) for v in pano_hw), torch.device(device), dtype)
        cached = self._grids.get(key)
        if cached is not None:
            self._grids.move_to_end(key)
            return cached
        grid = _padded_grid(self.params, key[0], dtype).to(device=device)
        self._grids[key] = grid
        while len(self._grids) > self.cache_size:
            self._grids.popitem(last=False)
        return grid

    def forward(self, pano: Tensor) -> Tensor:
        """Project panoramas to BEVs.

        Args:
            pano: [B, C, H_g, W_g] floating-point panoramas, north at the centre column.

        Returns:
            [B, C, S, S] BEVs in ``pano``'s dtype and device; differentiable w.r.t. ``pano``.
        """
        _check_pano(pano)
        hw = (pano.shape[-2], pano.shape[-1])
        work_dtype = torch.float32 if pano.dtype in _LOW_PRECISION else pano.dtype
        grid = self.grid(hw, pano.device, work_dtype)
        out = _sample(pano.to(work_dtype), grid, _padding_mode(self.params, hw))
        return out.to(pano.dtype)

    def extra_repr(self) -> str:
        return f"params={self.params}, cache_size={self.cache_size}"


def panorama_to_bev(pano: Tensor, params: BEVParams) -> Tensor:
    """Project panoramas to bird's-eye views (paper Eq. 2), bilinear and differentiable.

    Args:
        pano: [B, C, H_g, W_g] floating-point panoramas, north at the centre column.
        params: projection parameters.

    Returns:
        [B, C, S, S] with S = ``params.out_size``. Use :class:`BEVProjector` to reuse the
        sampling grid across calls.
    """
    return BEVProjector(params, cache_size=1)(pano)
