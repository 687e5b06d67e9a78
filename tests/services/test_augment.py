"""Pair and two-crop augmentations; the joint flip/rotation keep a pair's geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from ucvgl.services.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PairTransform,
    TwoCropTransform,
    joint_hflip,
    joint_rotate90,
)


def marker_pair(pano_hw: tuple[int, int] = (16, 64), sat: int = 32) -> tuple[torch.Tensor, ...]:
    """A black pair with a red marker EAST of the camera: satellite right of centre,
    panorama at the 3/4 column (north = centre column, azimuth clockwise)."""
    h, w = pano_hw
    pano = torch.zeros(3, h, w, dtype=torch.uint8)
    east = 3 * w // 4
    pano[0, h // 2 :, east - w // 32 : east + w // 32] = 255
    tile = torch.zeros(3, sat, sat, dtype=torch.uint8)
    c, off, half = sat // 2, sat // 4, max(1, sat // 16)
    tile[0, c - half : c + half, c + off - half : c + off + half] = 255
    return pano, tile


def red_weight(img: torch.Tensor) -> np.ndarray:
    """Per-pixel 'redness' of a uint8 or a normalised float image [3, H, W]."""
    x = img.double()
    if img.dtype == torch.uint8:
        x = x / 255.0
    else:  # undo the normalisation
        x = x * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    return (x[0] - x[1]).clamp(min=0).numpy()


def circular_mean_deg(angles_deg: np.ndarray, weights: np.ndarray) -> float:
    a = np.deg2rad(angles_deg)
    return math.degrees(math.atan2((weights * np.sin(a)).sum(), (weights * np.cos(a)).sum())) % 360


def satellite_azimuth(tile: torch.Tensor) -> float:
    """Azimuth (deg, clockwise from north = up) of the marker seen from the tile centre."""
    wgt = red_weight(tile)
    s = tile.shape[-1]
    ys, xs = np.mgrid[0 : tile.shape[-2], 0:s] + 0.5
    az = np.degrees(np.arctan2(xs - s / 2, -(ys - tile.shape[-2] / 2)))
    return circular_mean_deg(az, wgt)


def panorama_azimuth(pano: torch.Tensor) -> float:
    """Azimuth (deg) of the marker in a panorama with north at the centre column."""
    wgt = red_weight(pano).sum(axis=0)
    w = pano.shape[-1]
    az = (np.arange(w) + 0.5 - w / 2) / w * 360.0
    return circular_mean_deg(az, wgt)


def angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180) % 360 - 180)


def test_marker_pair_is_consistent_to_start_with() -> None:
    pano, tile = marker_pair()
    assert angle_diff(satellite_azimuth(tile), 90) < 1
    assert angle_diff(panorama_azimuth(pano), 90) < 1


def test_quarter_turn_brings_east_to_north() -> None:
    pano, tile = marker_pair()
    g, s = joint_rotate90(pano, tile, 1)
    # satellite turned 90 deg counter-clockwise: the east marker is now straight up
    rows, cols = np.nonzero(red_weight(s))
    assert rows.mean() < 16 and abs(cols.mean() + 0.5 - 16) < 1
    # panorama: the old 3/4 (east) column is now the centre column (north)
    cols = np.nonzero(red_weight(g).sum(axis=0))[0]
    assert abs(cols.mean() + 0.5 - 32) < 1
    assert angle_diff(panorama_azimuth(g), 0) < 1 and angle_diff(satellite_azimuth(s), 0) < 1


def test_flip_mirrors_east_to_west() -> None:
    pano, tile = marker_pair()
    g, s = joint_hflip(pano, tile)
    assert angle_diff(panorama_azimuth(g), 270) < 1
    assert angle_diff(satellite_azimuth(s), 270) < 1


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_every_joint_transform_keeps_the_pair_consistent(flip: bool, k: int) -> None:
    pano, tile = marker_pair()
    t = PairTransform((16, 64), (32, 32), train=True)
    g, s = t.geometric(pano, tile, flip, k)
    expected = ((270 if flip else 90) - 90 * k) % 360
    assert angle_diff(panorama_azimuth(g), expected) < 1
    assert angle_diff(satellite_azimuth(s), expected) < 1


def test_random_pair_transform_stays_consistent_and_covers_all_cases() -> None:
    pano, tile = marker_pair((64, 128), 64)
    t = PairTransform((32, 64), (32, 32), train=True, photometric=False)
    seen = set()
    torch.manual_seed(0)
    for _ in range(40):
        g, s = t(pano, tile)
        assert g.shape == (3, 32, 64) and s.shape == (3, 32, 32) and g.dtype == torch.float32
        az_g, az_s = panorama_azimuth(g), satellite_azimuth(s)
        assert angle_diff(az_g, az_s) < 5
        seen.add(round(az_g / 90) % 4)
    assert seen == {0, 1, 2, 3}


def test_eval_mode_is_resize_and_normalise_only() -> None:
    rng = np.random.default_rng(0)
    pano = Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8))
    tile = Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    t = PairTransform((16, 32), (10, 10), train=False)
    g1, s1 = t(pano, tile)
    g2, s2 = t(pano, tile)
    assert torch.equal(g1, g2) and torch.equal(s1, s2)
    assert type(g1) is torch.Tensor and s1.shape == (3, 10, 10)
    # exactly torchvision's antialiased resize followed by (x/255 - mean) / std
    arr = torch.from_numpy(np.array(pano)).permute(2, 0, 1)
    resized = TF.resize(arr, [16, 32], antialias=True).double() / 255
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    want = (resized - mean.view(3, 1, 1).double()) / std.view(3, 1, 1).double()
    torch.testing.assert_close(g1.double(), want, atol=1e-5, rtol=0)
    # a flat colour stays that colour
    flat = torch.full((3, 20, 20), 200, dtype=torch.uint8)
    _, s_flat = t(flat, flat)
    torch.testing.assert_close(s_flat, ((200 / 255 - mean) / std).view(3, 1, 1).expand(3, 10, 10))


def test_train_mode_augments_and_accepts_pil() -> None:
    rng = np.random.default_rng(1)
    pano = Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8))
    tile = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    t = PairTransform((32, 64), (32, 32), train=True)
    torch.manual_seed(0)
    outs = [t(pano, tile) for _ in range(3)]
    assert all(g.shape == (3, 32, 64) and s.shape == (3, 32, 32) for g, s in outs)
    assert not torch.equal(outs[0][0], outs[1][0])
    assert all(torch.isfinite(g).all() and torch.isfinite(s).all() for g, s in outs)


def test_pair_transform_validates_sizes_and_inputs() -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        PairTransform((16, 62), (32, 32), train=True)
    with pytest.raises(ValueError, match="square"):
        PairTransform((16, 64), (32, 40), train=True)
    PairTransform((16, 62), (32, 40), train=True, rotate=False)  # fine without rotation
    t = PairTransform((16, 64), (32, 32), train=False)
    with pytest.raises(ValueError, match="uint8"):
        t(torch.rand(3, 16, 64), torch.zeros(3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="RGB"):
        t(torch.zeros(1, 16, 64, dtype=torch.uint8), torch.zeros(3, 32, 32, dtype=torch.uint8))


@pytest.mark.parametrize("view", ["ground", "satellite"])
def test_two_crops_are_independent_augmentations(view: str) -> None:
    rng = np.random.default_rng(2)
    img = torch.from_numpy(rng.integers(0, 256, (3, 40, 80), dtype=np.uint8))
    size = (16, 32) if view == "ground" else (24, 24)
    t = TwoCropTransform(size, view=view)
    torch.manual_seed(0)
    a, b = t(img)
    assert a.shape == b.shape == (3, *size) and a.dtype == torch.float32
    assert not torch.equal(a, b)


def test_two_crop_roll_is_a_ground_option() -> None:
    with pytest.raises(ValueError, match="roll"):
        TwoCropTransform((24, 24), view="satellite", roll=True)
    with pytest.raises(ValueError, match="view"):
        TwoCropTransform((24, 24), view="aerial")  # type: ignore[arg-type]
    pano, _ = marker_pair()
    t = TwoCropTransform((16, 64), view="ground", roll=True)
    torch.manual_seed(3)
    azimuths = {round(panorama_azimuth(t(pano)[0])) for _ in range(6)}
    assert len(azimuths) > 1  # the marker moves around the panorama


@pytest.mark.realdata
def test_real_pairs_go_through_both_modes(real_pairs_dir) -> None:
    import csv

    with open(real_pairs_dir / "pairs.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    kinds = {}
    for row in rows:  # one pair of each dataset
        kinds.setdefault(row["dataset"], row)
    train = PairTransform((32, 64), (32, 32), train=True)
    evaluate = PairTransform((32, 64), (32, 32), train=False)
    torch.manual_seed(0)
    for row in kinds.values():
        with (
            Image.open(real_pairs_dir / row["ground"]) as g,
            Image.open(real_pairs_dir / row["satellite"]) as s,
        ):
            g, s = g.convert("RGB"), s.convert("RGB")
        for t in (train, evaluate):
            gt, st = t(g, s)
            assert gt.shape == (3, 32, 64) and st.shape == (3, 32, 32)
            assert torch.isfinite(gt).all() and torch.isfinite(st).all()


def test_photometric_policy_none_is_normalise_only_and_light_is_mild() -> None:
    torch.manual_seed(0)
    img = torch.randint(0, 256, (3, 16, 32), dtype=torch.uint8)
    expected = TF.normalize(img.float() / 255.0, list(IMAGENET_MEAN), list(IMAGENET_STD))
    t = PairTransform((16, 32), (16, 16), train=True, rotate=False, flip=False, policy="none")
    g, s = t(img, img[:, :, :16].contiguous())
    torch.testing.assert_close(g, expected)
    # "light": never greyscale, never a hue shift, so the mean colour stays close.
    light = PairTransform((16, 32), (16, 16), train=True, rotate=False, flip=False, policy="light")
    paper = PairTransform((16, 32), (16, 16), train=True, rotate=False, flip=False)
    torch.manual_seed(1)
    d_light = [
        (light(img, img[:, :, :16].contiguous())[0] - expected).abs().mean() for _ in range(20)
    ]
    torch.manual_seed(1)
    d_paper = [
        (paper(img, img[:, :, :16].contiguous())[0] - expected).abs().mean() for _ in range(20)
    ]
    assert float(torch.stack(d_light).mean()) < 0.5 * float(torch.stack(d_paper).mean())


def test_unknown_photometric_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="photometric policy"):
        PairTransform((16, 32), (16, 16), policy="strong")
    with pytest.raises(ValueError, match="photometric policy"):
        TwoCropTransform((16, 32), policy="strong")


def test_coarse_dropout_blanks_10_to_25_holes_of_10_to_20_percent() -> None:
    from ucvgl.services.augment import CoarseDropout

    torch.manual_seed(0)
    img = torch.full((3, 100, 100), 200, dtype=torch.uint8)
    drop = CoarseDropout(p=1.0)
    for _ in range(20):
        out = drop(img)
        blank = (out == 0).all(0)
        share = float(blank.float().mean())
        # at least one 10x10 hole, at most 25 holes of 20x20
        assert 0.01 <= share <= 25 * 0.04
        assert torch.equal(out[:, ~blank], img[:, ~blank])
    assert torch.equal(CoarseDropout(p=0.0)(img), img)
    with pytest.raises(ValueError, match="holes"):
        CoarseDropout(holes=(5, 2))


def test_authors_two_crops_flip_only_the_first_and_turn_only_the_second_tile() -> None:
    torch.manual_seed(0)
    ramp = torch.arange(48, dtype=torch.float32).repeat(3, 48, 1)  # rises left to right
    img = (ramp * 5 + 10).to(torch.uint8)  # no zero pixel: dropout is recognisable
    normalise = TwoCropTransform((48, 48), view="ground", policy="none")._photometric
    plain = normalise(img)
    mirrored = normalise(TF.horizontal_flip(img))
    blank = normalise(torch.zeros_like(img))[:, 0, 0]

    def matches(crop, ref):
        keep = ~torch.isclose(crop, blank[:, None, None]).all(0)
        return torch.allclose(crop[:, keep], ref[:, keep], atol=1e-4)

    ground = TwoCropTransform((48, 48), view="ground", policy="none", augment="authors")
    flips = 0
    for _ in range(40):
        first, second = ground(img)
        assert matches(second, plain)  # never flipped
        assert matches(first, plain) or matches(first, mirrored)
        flips += matches(first, mirrored)
    assert 5 < flips < 35
    sat = TwoCropTransform((48, 48), view="satellite", policy="none", augment="authors")
    assert sat._second is not None and ground._second is None
    ours = TwoCropTransform((48, 48), view="satellite", policy="none")
    assert ours._first is None and ours._second is None and ours._dropout is None
    with pytest.raises(ValueError, match="augment"):
        TwoCropTransform((48, 48), augment="albumentations")
