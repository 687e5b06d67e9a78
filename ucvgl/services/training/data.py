"""Datasets and DataLoaders over a :class:`ViewSplit` for training and embedding.

Images are decoded once, resized to the size the encoder expects and kept as uint8
tensors [3, H, W] (optionally cached in memory, which matters on CPU where JPEG decoding
costs as much as a small model's forward pass); transforms (augmentations or the eval
normalisation) run on those tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ucvgl.services.datasets.index import ViewSplit

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pil_to_uint8(image: Image.Image, size: tuple[int, int]) -> Tensor:
    """Resize a PIL image to ``size`` (H, W) and return uint8 [3, H, W]."""
    h, w = size
    if image.size != (w, h):
        image = image.resize((w, h), Image.BILINEAR)
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


class Normalize:
    """uint8 [.., 3, H, W] -> float32 normalised with ``mean`` / ``std`` (the eval transform)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: Tensor) -> Tensor:
        x = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        return (x - self.mean) / self.std


class ImageListDataset(Dataset):
    """Images at ``paths`` resized to ``size``; item ``i`` is ``(transform(image), i)``.

    Args:
        paths: image files.
        size: (H, W) the images are resized to.
        headings: per-image heading in degrees for panoramas (rolled to north), or None.
        panorama: load with ``load_panorama`` (ground views) instead of ``load_rgb``.
        transform: applied to the uint8 [3, H, W] tensor; None returns it unchanged.
        cache: keep decoded, resized images in memory (per process).
    """

    def __init__(
        self,
        paths: Sequence[Path],
        size: tuple[int, int],
        *,
        headings: np.ndarray | None = None,
        panorama: bool = False,
        transform: Callable[[Tensor], object] | None = None,
        cache: bool = True,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.size = (int(size[0]), int(size[1]))
        self.headings = None if headings is None else np.asarray(headings, dtype=np.float64)
        if self.headings is not None and len(self.headings) != len(self.paths):
            raise ValueError("headings must have one value per path")
        self.panorama = panorama
        self.transform = transform
        self.cache = cache
        self._cache: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Tensor:
        """The resized uint8 [3, H, W] image ``index`` (from the cache when enabled)."""
        if index in self._cache:
            return self._cache[index]
        from ucvgl.services.datasets.images import load_panorama, load_rgb

        path = self.paths[index]
        if self.panorama:
            heading = None if self.headings is None else float(self.headings[index])
            image = load_panorama(path, heading)
        else:
            image = load_rgb(path)
        tensor = pil_to_uint8(image, self.size)
        if self.cache:
            self._cache[index] = tensor
        return tensor

    def __getitem__(self, index: int):
        image = self.load(index)
        return (image if self.transform is None else self.transform(image)), index


def ground_images(
    split: ViewSplit, size: tuple[int, int], transform=None, *, cache: bool = True
) -> ImageListDataset:
    """The ground panoramas of ``split``, north-aligned with their headings."""
    return ImageListDataset(
        split.ground_paths,
        size,
        headings=split.ground_heading_deg,
        panorama=True,
        transform=transform,
        cache=cache,
    )


def satellite_images(
    split: ViewSplit, size: int, transform=None, *, cache: bool = True
) -> ImageListDataset:
    """The satellite tiles of ``split``."""
    return ImageListDataset(split.satellite_paths, (size, size), transform=transform, cache=cache)


def fake_satellite_images(
    paths: Sequence[Path], size: int, transform=None, *, cache: bool = True
) -> ImageListDataset:
    """Fake satellite images (the CycleGAN's translations of the BEVs), one per panorama."""
    return ImageListDataset(paths, (size, size), transform=transform, cache=cache)


class TwoCropDataset(Dataset):
    """Two augmentations of one image: item ``i`` is ``(view1, view2, i)`` (intra-view)."""

    def __init__(self, images: ImageListDataset, two_crop: Callable[[Tensor], tuple]) -> None:
        self.images, self.two_crop = images, two_crop

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        v1, v2 = self.two_crop(self.images.load(index))
        return v1, v2, index


class PairDataset(Dataset):
    """Cross-view items ``(ground ground_idx[i], tile satellite_idx[i], positive[i])``.

    Item ``i`` is ``(ground, satellite, positive, ground_idx, satellite_idx)``. ``positive``
    False marks an unlabelled item whose two images are only negatives for the batch.

    Args:
        ground: panoramas (their transform is ignored).
        satellite: tiles or fake tiles (their transform is ignored).
        ground_idx: int [N] panorama of each item.
        satellite_idx: int [N] tile of each item.
        positive: bool [N] (default all True).
        pair_transform: ``(ground uint8, satellite uint8) -> (ground, satellite)`` tensors.
    """

    def __init__(
        self,
        ground: ImageListDataset,
        satellite: ImageListDataset,
        ground_idx: np.ndarray,
        satellite_idx: np.ndarray,
        positive: np.ndarray | None = None,
        pair_transform: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
    ) -> None:
        self.ground, self.satellite = ground, satellite
        self.ground_idx = np.asarray(ground_idx, dtype=np.int64)
        self.satellite_idx = np.asarray(satellite_idx, dtype=np.int64)
        if self.ground_idx.shape != self.satellite_idx.shape:
            raise ValueError("ground_idx and satellite_idx must have the same length")
        self.positive = (
            np.ones(len(self.ground_idx), dtype=bool)
            if positive is None
            else np.asarray(positive, dtype=bool)
        )
        self.pair_transform = pair_transform

    def __len__(self) -> int:
        return len(self.ground_idx)

    def __getitem__(self, index: int):
        gi, si = int(self.ground_idx[index]), int(self.satellite_idx[index])
        g, s = self.ground.load(gi), self.satellite.load(si)
        if self.pair_transform is not None:
            g, s = self.pair_transform(g, s)
        return g, s, bool(self.positive[index]), gi, si


def make_loader(
    dataset: Dataset,
    *,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    shuffle: bool = False,
    batch_sampler: Sampler | None = None,
    drop_last: bool = False,
    seed: int = 0,
    num_workers: int | None = None,
) -> DataLoader:
    """A DataLoader with workers from settings, pinned memory on CUDA, persistent workers.

    Give either ``batch_size`` (+ ``shuffle``/``drop_last``) or a ``batch_sampler``.
    """
    from ucvgl.shared.config import get_settings

    workers = get_settings().num_workers if num_workers is None else num_workers
    generator = torch.Generator().manual_seed(seed)
    common = dict(
        num_workers=workers,
        pin_memory=torch.device(device).type == "cuda",
        persistent_workers=workers > 0,
    )
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **common)
    return DataLoader(
        dataset,
        batch_size=batch_size or 1,
        shuffle=shuffle,
        drop_last=drop_last,
        generator=generator,
        **common,
    )
