"""Image augmentations: joint ground/satellite pair transforms and single-view two-crops.

Orientation conventions (shared with the dataset readers and the BEV projection): a ground
panorama [3, H, W] is north-aligned with north at the centre column W/2, azimuth growing
clockwise to the right (east at 3W/4, south at the edges, west at W/4); a satellite tile has
north up and east to the right. Two geometric augmentations keep a pair consistent:

- joint horizontal flip: mirror the satellite left-right (east <-> west, north stays up) and
  the panorama left-right (column x -> W - x: the centre stays north, 3W/4 <-> W/4). Both
  are the same mirror about the north-south axis.
- joint rotation by k quarter turns: the satellite turns k*90 degrees counter-clockwise, so
  what was east (k=1) is now up/north; the panorama is rolled by -k*W/4 columns
  (``torch.roll(pano, -k*W//4, dims=-1)``) so that the old east column 3W/4 moves to the
  centre. Requires W divisible by 4 and a square satellite.

All randomness comes from torch's global generator (seed it per worker as usual).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from PIL import Image
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ucvgl.services.presets import INTRA_AUGMENTS, PHOTOMETRIC_POLICIES

ImageLike = Image.Image | Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def joint_hflip(ground: Tensor, satellite: Tensor) -> tuple[Tensor, Tensor]:
    """Mirror a pair about the north-south axis: both images flipped left-right."""
    return TF.horizontal_flip(ground), TF.horizontal_flip(satellite)


def joint_rotate90(ground: Tensor, satellite: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Turn the satellite k*90 deg counter-clockwise; roll the panorama by -k*W/4 columns.

    Args:
        ground: panorama [..., 3, H, W] with W divisible by 4 (north at column W/2).
        satellite: tile [..., 3, S, S] (north up).
        k: number of counter-clockwise quarter turns (any int; taken mod 4).

    Returns:
        (ground, satellite) showing the same place with the old east as the new north (k=1).
    """
    k = int(k) % 4
    width = ground.shape[-1]
    if width % 4:
        raise ValueError(f"joint rotation needs a panorama width divisible by 4, got {width}")
    if satellite.shape[-1] != satellite.shape[-2]:
        raise ValueError(f"joint rotation needs a square satellite, got {tuple(satellite.shape)}")
    if k == 0:
        return ground, satellite
    rolled = torch.roll(ground, shifts=-k * width // 4, dims=-1)
    rotated = torch.rot90(satellite, k=k, dims=(-2, -1))  # counter-clockwise, exact
    return _like(rolled, ground), _like(rotated, satellite)


def _like(out: Tensor, ref: Tensor) -> Tensor:
    """Re-wrap ``out`` as a tv_tensors.Image when ``ref`` is one (torch ops unwrap it)."""
    return tv_tensors.wrap(out, like=ref) if isinstance(ref, tv_tensors.Image) else out


def _to_uint8_image(img: ImageLike, what: str) -> tv_tensors.Image:
    if isinstance(img, Image.Image):
        img = img.convert("RGB")
    out = v2.functional.to_image(img)
    if out.ndim != 3 or out.shape[0] != 3:
        raise ValueError(f"{what} image must be RGB [3, H, W], got shape {tuple(out.shape)}")
    if out.dtype != torch.uint8:
        raise ValueError(f"{what} image must be PIL or a uint8 tensor, got {out.dtype}")
    return out


def photometric_transforms(
    mean: Sequence[float],
    std: Sequence[float],
    *,
    erase_p: float = 0.5,
    policy: str = "paper",
) -> v2.Compose:
    """uint8 [3, H, W] -> normalised float, augmented according to ``policy``.

    - "paper" (the authors'): colour jitter (0.4, 0.4, 0.4, 0.1) with p 0.8, random
      greyscale p 0.2, Gaussian blur (kernel 5, sigma 0.1-2.0) with p 0.5, ImageNet-style
      normalisation, then RandomErasing (one rectangle of 2-10% of the image, filled with
      0 = the mean colour) with ``erase_p``.
    - "light": brightness/contrast/saturation jitter 0.1 (no hue, no grey, no blur) with
      p 0.5, normalisation, RandomErasing with ``erase_p / 2``. For small models trained
      from scratch on few images, where colour is much of the signal: the paper policy
      measurably stalls them (see ``ucvgl.services.presets``).
    - "none": normalisation only.
    """
    if policy not in PHOTOMETRIC_POLICIES:
        raise ValueError(
            f"photometric policy must be one of {PHOTOMETRIC_POLICIES}, got {policy!r}"
        )
    normalise = [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ]
    if policy == "none":
        return v2.Compose(normalise)
    if policy == "light":
        return v2.Compose(
            [
                v2.RandomApply([v2.ColorJitter(0.1, 0.1, 0.1, 0.0)], p=0.5),
                *normalise,
                v2.RandomErasing(p=erase_p / 2, scale=(0.02, 0.1), ratio=(0.3, 3.3), value=0),
            ]
        )
    return v2.Compose(
        [
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(0.1, 2.0))], p=0.5),
            *normalise,
            v2.RandomErasing(p=erase_p, scale=(0.02, 0.1), ratio=(0.3, 3.3), value=0),
        ]
    )


def normalise_transforms(mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """uint8 [3, H, W] -> float32 in [0, 1] -> (x - mean) / std."""
    return v2.Compose(
        [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    )


def satellite_shift_scale() -> v2.RandomAffine:
    """Small shift (up to 5% of the size) and scale (0.95-1.05) of a satellite tile."""
    return v2.RandomAffine(degrees=0, translate=(0.05, 0.05), scale=(0.95, 1.05))


class CoarseDropout(torch.nn.Module):
    """Blank out ``holes`` random rectangles of a uint8 image [3, H, W] (filled with 0).

    The authors' (albumentations) coarse dropout: 10-25 holes, each 10-20% of the height
    and of the width, applied with probability ``p``. All randomness comes from torch's
    global generator.
    """

    def __init__(
        self,
        holes: tuple[int, int] = (10, 25),
        extent: tuple[float, float] = (0.1, 0.2),
        p: float = 0.5,
    ) -> None:
        super().__init__()
        if not 1 <= holes[0] <= holes[1]:
            raise ValueError(f"holes must be (min, max) with 1 <= min <= max, got {holes}")
        if not 0.0 < extent[0] <= extent[1] <= 1.0:
            raise ValueError(f"extent must be (min, max) in (0, 1], got {extent}")
        self.holes, self.extent, self.p = holes, extent, float(p)

    def forward(self, img: Tensor) -> Tensor:
        if self.p <= 0 or float(torch.rand(())) >= self.p:
            return img
        out = img.clone()
        h, w = img.shape[-2:]
        n = int(torch.randint(self.holes[0], self.holes[1] + 1, ()))
        lo, hi = self.extent
        for _ in range(n):
            hh = max(1, int(round(h * (lo + (hi - lo) * float(torch.rand(()))))))
            ww = max(1, int(round(w * (lo + (hi - lo) * float(torch.rand(()))))))
            top = int(torch.randint(0, h - hh + 1, ()))
            left = int(torch.randint(0, w - ww + 1, ()))
            out[..., top : top + hh, left : left + ww] = 0
        return _like(out, img)


def authors_shift_scale_rotate() -> v2.RandomApply:
    """The authors' ShiftScaleRotate of the second satellite crop: with p 0.5, a shift of
    up to 20% of the size, a scale of 0.8-1.2 and a rotation of up to 15 degrees."""
    return v2.RandomApply(
        [v2.RandomAffine(degrees=15, translate=(0.2, 0.2), scale=(0.8, 1.2))], p=0.5
    )


class PairTransform:
    """Transform a (ground panorama, satellite tile) pair consistently.

    Args:
        ground_size: (H, W) of the output panorama.
        satellite_size: (H, W) of the output tile.
        mean, std: normalisation (the encoder's ``data_config``; ImageNet by default).
        train: augment (True) or only resize + normalise (False).
        rotate: joint random quarter-turn rotation (train only).
        flip: joint random horizontal flip with p 0.5 (train only).
        photometric: colour jitter / grey / blur / coarse dropout per image, plus a small
            shift/scale of the satellite (train only).
        policy: photometric policy when ``photometric`` ("paper", "light" or "none"; see
            :func:`photometric_transforms`).

    Call:
        ``(ground_img, sat_img)`` (PIL images or uint8 [3, H, W] tensors) ->
        (ground float [3, Hg, Wg], satellite float [3, Hs, Ws]).
    """

    def __init__(
        self,
        ground_size: tuple[int, int],
        satellite_size: tuple[int, int],
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        train: bool = True,
        rotate: bool = True,
        flip: bool = True,
        photometric: bool = True,
        policy: str = "paper",
    ) -> None:
        self.policy = policy
        self.ground_size = (int(ground_size[0]), int(ground_size[1]))
        self.satellite_size = (int(satellite_size[0]), int(satellite_size[1]))
        self.train, self.rotate, self.flip, self.photometric = train, rotate, flip, photometric
        if train and rotate:
            if self.ground_size[1] % 4:
                raise ValueError(
                    f"joint rotation needs a panorama width divisible by 4, got ground_size "
                    f"{self.ground_size}; change the width or pass rotate=False"
                )
            if self.satellite_size[0] != self.satellite_size[1]:
                raise ValueError(
                    f"joint rotation needs a square satellite_size, got {self.satellite_size}"
                )
        self._resize_ground = v2.Resize(self.ground_size, antialias=True)
        self._resize_sat = v2.Resize(self.satellite_size, antialias=True)
        self._normalise = normalise_transforms(mean, std)
        self._photo_ground = photometric_transforms(mean, std, policy=policy)
        self._photo_sat = photometric_transforms(mean, std, policy=policy)
        self._shift_scale = satellite_shift_scale()

    def geometric(
        self, ground: Tensor, satellite: Tensor, flip: bool, k: int
    ) -> tuple[Tensor, Tensor]:
        """Apply the joint flip (if ``flip``) and then ``k`` joint quarter turns."""
        if flip:
            ground, satellite = joint_hflip(ground, satellite)
        return joint_rotate90(ground, satellite, k)

    def __call__(self, ground: ImageLike, satellite: ImageLike) -> tuple[Tensor, Tensor]:
        g = self._resize_ground(_to_uint8_image(ground, "ground"))
        s = self._resize_sat(_to_uint8_image(satellite, "satellite"))
        if not self.train:
            return self._normalise(g).as_subclass(Tensor), self._normalise(s).as_subclass(Tensor)
        flip = self.flip and bool(torch.rand(()) < 0.5)
        k = int(torch.randint(0, 4, ())) if self.rotate else 0
        g, s = self.geometric(g, s, flip, k)
        if self.photometric:
            s = self._shift_scale(s)
            g, s = self._photo_ground(g), self._photo_sat(s)
        else:
            g, s = self._normalise(g), self._normalise(s)
        return g.as_subclass(Tensor), s.as_subclass(Tensor)

    def __repr__(self) -> str:
        return (
            f"PairTransform(ground_size={self.ground_size}, satellite_size="
            f"{self.satellite_size}, train={self.train}, rotate={self.rotate}, "
            f"flip={self.flip}, photometric={self.photometric}, policy={self.policy!r})"
        )


class TwoCropTransform:
    """Two independent augmentations of one image (SimCLR-style intra-view positives).

    Each crop is: resize -> [satellite: small shift/scale] -> colour jitter / grey / blur ->
    normalise -> coarse dropout. Geometric changes that alter orientation are OFF by default:
    a random roll of a panorama (a heading change) or a random quarter turn / flip of a
    satellite would teach the encoder to ignore orientation, while the cross-view stage
    relies on north-aligned layouts (SAFA's spatial maps; the paper's Tab. 5 shows random
    rotation hurting). ``roll=True`` (ground: a random roll by any number of columns) and
    ``flip=True`` (either view: a random left-right mirror) turn them on.

    Args:
        size: (H, W) of the output.
        mean, std: normalisation.
        view: "ground" or "satellite".
        roll: ground only, random circular roll of the panorama.
        flip: random horizontal flip (independent per crop).
        policy: photometric policy ("paper", "light" or "none").
        augment: geometric policy, "ours" (above) or "authors".

    Call:
        image (PIL or uint8 [3, H, W]) -> (crop1 [3, H, W] float, crop2 [3, H, W] float).
    """

    def __init__(
        self,
        size: tuple[int, int],
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        view: Literal["ground", "satellite"] = "ground",
        roll: bool = False,
        flip: bool = False,
        policy: str = "paper",
        augment: str = "ours",
    ) -> None:
        if view not in ("ground", "satellite"):
            raise ValueError(f"view must be 'ground' or 'satellite', got {view!r}")
        if augment not in INTRA_AUGMENTS:
            raise ValueError(f"augment must be one of {INTRA_AUGMENTS}, got {augment!r}")
        if roll and view != "ground":
            raise ValueError("roll is a panorama augmentation; use it with view='ground'")
        self.size = (int(size[0]), int(size[1]))
        self.view, self.roll, self.flip = view, roll, flip
        steps: list[Any] = [v2.Resize(self.size, antialias=True)]
        if flip:
            steps.append(v2.RandomHorizontalFlip(p=0.5))
        if view == "satellite":
            steps.append(satellite_shift_scale())
        self._geometric = v2.Compose(steps)
        self.policy, self.augment = policy, augment
        authors = augment == "authors"
        self._photometric = photometric_transforms(
            mean, std, policy=policy, erase_p=0.0 if authors else 0.5
        )
        self._dropout = CoarseDropout() if authors else None
        self._first = v2.RandomHorizontalFlip(p=0.5) if authors else None
        self._second = authors_shift_scale_rotate() if authors and view == "satellite" else None

    def _one(self, img: tv_tensors.Image, extra: torch.nn.Module | None = None) -> Tensor:
        out = self._geometric(img if extra is None else extra(img))
        if self.roll:
            out = _like(torch.roll(out, int(torch.randint(0, out.shape[-1], ())), dims=-1), out)
        if self._dropout is not None:
            out = self._dropout(out)
        return self._photometric(out).as_subclass(Tensor)

    def __call__(self, image: ImageLike) -> tuple[Tensor, Tensor]:
        img = _to_uint8_image(image, self.view)
        return self._one(img, self._first), self._one(img, self._second)

    def __repr__(self) -> str:
        return (
            f"TwoCropTransform(size={self.size}, view={self.view!r}, roll={self.roll}, "
            f"flip={self.flip}, policy={self.policy!r}, augment={self.augment!r})"
        )
