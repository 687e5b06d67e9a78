"""Panorama -> BEV projection (Eq. 2): numerics, orientation, seam, bands, gradients, dtypes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ucvgl.services.projection import (
    BEVParams,
    BEVProjector,
    bev_sampling_grid,
    panorama_to_bev,
)
from ucvgl.shared.errors import ConfigError

from .reference import band_canvas, reference_bev


def _to_torch(image: np.ndarray) -> torch.Tensor:
    """[H, W, C] float64 -> [1, C, H, W]."""
    return torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0)


def _to_numpy(bev: torch.Tensor) -> np.ndarray:
    return bev[0].permute(1, 2, 0).double().numpy()


@pytest.mark.parametrize(
    ("hw", "size", "fov"), [((16, 32), 20, 170.0), ((24, 48), 17, 150.0), ((10, 20), 12, 175.0)]
)
def test_matches_numpy_reference_of_eq2(hw, size, fov):
    rng = np.random.default_rng(0)
    pano = rng.random((*hw, 3))
    params = BEVParams(fov_deg=fov, out_size=size)
    ours = _to_numpy(panorama_to_bev(_to_torch(pano).float(), params))
    ref = reference_bev(pano, fov, size)
    assert ours.shape == ref.shape == (size, size, 3)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    ours64 = _to_numpy(panorama_to_bev(_to_torch(pano), params))  # float64 end to end
    np.testing.assert_allclose(ours64, ref, atol=1e-10)


def test_north_is_centre_column_and_east_is_three_quarter_column():
    h, w, size = 32, 64, 32
    pano = np.full((h, w, 3), 0.5)
    pano[:, w // 2 - 2 : w // 2 + 2] = (1.0, 0.0, 0.0)  # red around the centre column
    pano[:, 3 * w // 4 - 2 : 3 * w // 4 + 2] = (0.0, 0.0, 1.0)  # blue around the 3/4 column
    bev = _to_numpy(panorama_to_bev(_to_torch(pano).float(), BEVParams(out_size=size)))
    rows, cols = np.mgrid[0:size, 0:size] + 0.5
    red = (bev[..., 0] > 0.9) & (bev[..., 2] < 0.1)
    blue = (bev[..., 2] > 0.9) & (bev[..., 0] < 0.1)
    assert red.sum() > size // 4 and blue.sum() > size // 4
    # red: straight above the centre (north); blue: straight right of it (east)
    assert rows[red].max() < size / 2 and abs(cols[red].mean() - size / 2) < 0.5
    assert cols[blue].min() > size / 2 and abs(rows[blue].mean() - size / 2) < 0.5
    # the top-centre and right-centre edge pixels themselves
    np.testing.assert_allclose(bev[0, size // 2], (1, 0, 0), atol=1e-6)
    np.testing.assert_allclose(bev[size // 2, size - 1], (0, 0, 1), atol=1e-6)


def test_bev_centre_is_nadir_and_edge_is_fov_half_angle_from_it():
    size, fov, h, w = 33, 170.0, 180, 360  # odd size: the centre pixel is the nadir
    grid = bev_sampling_grid(BEVParams(fov_deg=fov, out_size=size), (h, w)).double()
    assert grid[size // 2, size // 2, 1] == pytest.approx(1.0)  # bottom edge of the panorama
    # The middle of the right edge looks (90 - fov/2) degrees below the horizon,
    # scaled by its pixel-centre distance (size/2 - 0.5) from the nadir.
    f = (size / 2) / math.tan(math.radians(fov) / 2)
    below = math.degrees(math.atan2(f, size / 2 - 0.5))
    v = (grid[size // 2, size - 1, 1] + 1) / 2 * h  # pixel row, 1 row = 1 degree
    assert v - h / 2 == pytest.approx(below, abs=1e-4)


def test_rolling_the_panorama_rotates_the_bev():
    """A quarter turn of the panorama is an exact quarter turn of the BEV (seam included)."""
    rng = np.random.default_rng(1)
    pano = torch.from_numpy(rng.random((1, 3, 16, 32))).float()
    params = BEVParams(out_size=24)
    bev = panorama_to_bev(pano, params)
    for quarter in (1, 2, 3):
        rolled = torch.roll(pano, shifts=quarter * 8, dims=-1)  # content moves right (east)
        expected = torch.rot90(bev, k=-quarter, dims=(-2, -1))  # clockwise
        torch.testing.assert_close(panorama_to_bev(rolled, params), expected, atol=1e-5, rtol=0)


def test_seam_has_no_black_line():
    params = BEVParams(out_size=32)
    constant = torch.full((1, 3, 16, 32), 0.7)
    torch.testing.assert_close(panorama_to_bev(constant, params), torch.full((1, 3, 32, 32), 0.7))
    # Straight south of the centre the BEV interpolates between the panorama's last columns
    # (0.6, east of south) and its first ones (1.0, west of south): no dark line.
    pano = torch.zeros(1, 1, 16, 32)
    pano[..., :4], pano[..., -4:] = 1.0, 0.6
    bev = panorama_to_bev(pano, params)[0, 0]
    south = bev[20:, 15:17]
    assert float(south.min()) >= 0.6 - 1e-6 and float(south.max()) <= 1.0 + 1e-6
    assert (south[:, 0] > south[:, 1]).all()  # west (left) of the ray is the first columns


def test_batch_is_consistent_with_single_images():
    pano = torch.rand(3, 3, 16, 32)
    params = BEVParams(out_size=16)
    batch = panorama_to_bev(pano, params)
    single = torch.cat([panorama_to_bev(pano[i : i + 1], params) for i in range(3)])
    torch.testing.assert_close(batch, single)
    assert batch.shape == (3, 3, 16, 16)


def test_is_differentiable():
    pano = torch.rand(1, 2, 6, 12, dtype=torch.float64, requires_grad=True)
    params = BEVParams(fov_deg=160, out_size=5)
    assert torch.autograd.gradcheck(lambda x: panorama_to_bev(x, params), (pano,))
    loss = panorama_to_bev(pano, params).sum()
    loss.backward()
    assert pano.grad is not None and float(pano.grad.abs().sum()) > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_dtypes(dtype):
    pano = torch.rand(2, 3, 32, 64)
    params = BEVParams(out_size=16)
    full = panorama_to_bev(pano, params)
    low = panorama_to_bev(pano.to(dtype), params)
    assert low.dtype == dtype
    tol = 1e-2 if dtype == torch.float16 else 2e-2  # input rounding only, not the grid
    torch.testing.assert_close(low.float(), full, atol=tol, rtol=0)


def test_projector_caches_grids_in_a_small_lru():
    projector = BEVProjector(BEVParams(out_size=8), cache_size=2)
    a = projector.grid((16, 32))
    assert projector.grid((16, 32)) is a
    projector.grid((8, 16))
    projector.grid((16, 32))  # refresh a
    projector.grid((4, 8))  # evicts (8, 16)
    assert projector.grid((16, 32)) is a
    assert len(projector._grids) == 2
    assert list(projector.state_dict()) == []
    out = projector(torch.rand(2, 3, 16, 32))
    assert out.shape == (2, 3, 8, 8)


def _cvusa_like_strip(rng) -> np.ndarray:
    # CVUSA is 1232x224; a quarter of it keeps the aspect: 308x56.
    return rng.random((56, 308, 3))


def test_band_with_authors_offset_equals_the_authors_padded_canvas():
    rng = np.random.default_rng(2)
    strip = _cvusa_like_strip(rng)
    # Authors: top row of the strip on the canvas = (W/2 - H)/2 - 20 px on a 1232 canvas,
    # here scaled by 308/1232 -> (154 - 56)/2 - 5 = 44.
    params = BEVParams(fov_deg=175, out_size=20, band_offset_px=-20, band_reference_width=1232)
    ref = reference_bev(band_canvas(strip, top_row=44), 175, 20)
    ours = _to_numpy(panorama_to_bev(_to_torch(strip).float(), params))
    np.testing.assert_allclose(ours, ref, atol=3e-5)  # float32 grid, strip rows magnified
    np.testing.assert_allclose(_to_numpy(panorama_to_bev(_to_torch(strip), params)), ref, atol=1e-9)
    assert (ours[9:11, 9:11] == 0).all()  # below the strip: black around the nadir
    # The same placement written as an elevation range gives the same BEV.
    top, bottom = params.band_elevations((56, 308))
    assert top == pytest.approx(90 - 180 * 44 / 154) and bottom == pytest.approx(
        90 - 180 * 100 / 154
    )
    by_elevation = BEVParams(
        fov_deg=175, out_size=20, band_top_elevation_deg=top, band_bottom_elevation_deg=bottom
    )
    ours_elev = _to_numpy(panorama_to_bev(_to_torch(strip), by_elevation))
    np.testing.assert_allclose(ours_elev, ref, atol=1e-9)


def test_band_edge_fill_and_full_size_cvusa_elevations():
    rng = np.random.default_rng(3)
    strip = _cvusa_like_strip(rng)
    params = BEVParams(fov_deg=175, out_size=20, band_offset_px=-20, band_fill="edge")
    ref = reference_bev(band_canvas(strip, top_row=44, fill="edge"), 175, 20)
    ours = _to_numpy(panorama_to_bev(_to_torch(strip), params))
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    assert (ours > 0).all()
    # Full-size CVUSA: the strip spans rows 176..400 of a 616-row canvas.
    top, bottom = BEVParams(band_offset_px=-20).band_elevations((224, 1232))
    assert top == pytest.approx(90 - 180 * 176 / 616)  # +38.57
    assert bottom == pytest.approx(90 - 180 * 400 / 616)  # -26.88


def test_non_2to1_panorama_without_band_is_centred_on_the_horizon():
    rng = np.random.default_rng(4)
    strip = rng.random((12, 48, 3))
    ref = reference_bev(band_canvas(strip, top_row=6), 170, 12)
    ours = _to_numpy(panorama_to_bev(_to_torch(strip), BEVParams(out_size=12)))
    np.testing.assert_allclose(ours, ref, atol=1e-9)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fov_deg": 180},
        {"fov_deg": 0},
        {"out_size": 0},
        {"band_top_elevation_deg": 30},
        {"band_top_elevation_deg": -10, "band_bottom_elevation_deg": 10},
        {"band_top_elevation_deg": 30, "band_bottom_elevation_deg": -30, "band_offset_px": -20},
        {"band_fill": "mirror"},
    ],
)
def test_invalid_params_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        BEVParams(**kwargs)


def test_invalid_input_raises_value_error():
    params = BEVParams(out_size=4)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        panorama_to_bev(torch.rand(3, 8, 16), params)
    with pytest.raises(ValueError, match="floating-point"):
        panorama_to_bev(torch.zeros(1, 3, 8, 16, dtype=torch.uint8), params)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    pano = torch.rand(2, 3, 32, 64)
    params = BEVParams(out_size=24)
    cpu = panorama_to_bev(pano, params)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        gpu = panorama_to_bev(pano.to("cuda", dtype), params)
        assert gpu.device.type == "cuda" and gpu.dtype == dtype
        torch.testing.assert_close(gpu.float().cpu(), cpu, atol=2e-2, rtol=0)
