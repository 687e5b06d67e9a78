"""Datasets and DataLoaders over a :class:`ViewSplit` for training and embedding.

Images stream: each item is decoded (JPEG draft mode at the target size where the file is
at least twice as large), resized to the size the encoder expects as uint8 [3, H, W], in
the DataLoader's worker processes (``settings.loader_workers()``, persistent, prefetching,
pinned memory on CUDA). Decoded images are kept only within the process's byte budget
(``settings.image_cache_mb``, :mod:`ucvgl.services.training.image_cache`: shared memory
filled and read by every worker), so memory does not grow with the dataset. Transforms
(augmentations or the eval normalisation) run on the uint8 tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler

from ucvgl.services.datasets.index import ViewSplit
from ucvgl.services.training.image_cache import ImageCache

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
        rows: panoramas only: the rows (top, bottom fractions of the height) kept before the
            resize (``EncoderConfig.ground_rows``, :mod:`ucvgl.services.panorama_view`);
            None keeps the whole panorama.
        scale: other images only: resampled to cover this many times their ground extent
            before the resize (``EncoderConfig.satellite_scale``,
            :mod:`ucvgl.services.tile_scale`); None keeps them as they are.
        transform: applied to the uint8 [3, H, W] tensor; None returns it unchanged.
        cache: keep decoded images within the process's byte budget (an
            :class:`ImageCache` reserved now, shared with the DataLoader workers); an
            ``ImageCache`` of this dataset's length and size is used as it is.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        size: tuple[int, int],
        *,
        headings: np.ndarray | None = None,
        panorama: bool = False,
        rows: tuple[float, float] | None = None,
        scale: float | None = None,
        transform: Callable[[Tensor], object] | None = None,
        cache: bool | ImageCache = True,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.rows = None if rows is None or not panorama else (float(rows[0]), float(rows[1]))
        self.scale = None if scale is None or panorama else float(scale)
        self.size = (int(size[0]), int(size[1]))
        self.headings = None if headings is None else np.asarray(headings, dtype=np.float64)
        if self.headings is not None and len(self.headings) != len(self.paths):
            raise ValueError("headings must have one value per path")
        self.panorama = panorama
        self.transform = transform
        if isinstance(cache, ImageCache):
            if cache.image_bytes != 3 * self.size[0] * self.size[1]:
                raise ValueError(f"the ImageCache holds images of another size than {self.size}")
            self.cache: ImageCache | None = cache
        else:
            self.cache = ImageCache(len(self.paths), self.size) if cache and self.paths else None

    def __len__(self) -> int:
        return len(self.paths)

    def decode(self, index: int) -> Tensor:
        """Image ``index`` decoded from its file and resized: uint8 [3, H, W]."""
        from ucvgl.services.datasets.images import load_panorama, load_rgb
        from ucvgl.services.panorama_view import cut_rows
        from ucvgl.services.tile_scale import rescale_tile

        path = self.paths[index]
        draft = (self.size[1], self.size[0])
        if self.panorama:
            heading = None if self.headings is None else float(self.headings[index])
            if self.rows is not None:  # decode enough rows for the cut to fill the height
                draft = (draft[0], max(1, round(draft[1] / (self.rows[1] - self.rows[0]))))
            image = cut_rows(load_panorama(path, heading, draft_size=draft), self.rows)
        else:
            image = rescale_tile(load_rgb(path, draft_size=draft), self.scale)
        return pil_to_uint8(image, self.size)

    def load(self, index: int) -> Tensor:
        """The resized uint8 [3, H, W] image ``index`` (from the cache when stored there)."""
        if self.cache is not None:
            stored = self.cache.get(index)
            if stored is not None:
                return stored
        tensor = self.decode(index)
        if self.cache is not None:
            self.cache.put(index, tensor)
        return tensor

    def __getitem__(self, index: int):
        image = self.load(index)
        return (image if self.transform is None else self.transform(image)), index


def ground_images(
    split: ViewSplit,
    size: tuple[int, int],
    transform=None,
    *,
    cache: bool = True,
    rows: tuple[float, float] | None = None,
) -> ImageListDataset:
    """The ground panoramas of ``split``, north-aligned with their headings (``rows`` cut)."""
    return ImageListDataset(
        split.ground_paths,
        size,
        headings=split.ground_heading_deg,
        panorama=True,
        rows=rows,
        transform=transform,
        cache=cache,
    )


def satellite_images(
    split: ViewSplit, size: int, transform=None, *, cache: bool = True, scale: float | None = None
) -> ImageListDataset:
    """The satellite tiles of ``split`` (resampled to ``scale`` times their extent)."""
    return ImageListDataset(
        split.satellite_paths, (size, size), scale=scale, transform=transform, cache=cache
    )


def fake_satellite_images(
    paths: Sequence[Path],
    size: int,
    transform=None,
    *,
    cache: bool = True,
    scale: float | None = None,
) -> ImageListDataset:
    """Fake satellite images (the CycleGAN's translations of the BEVs), one per panorama."""
    return ImageListDataset(paths, (size, size), scale=scale, transform=transform, cache=cache)


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
    """A DataLoader that decodes in worker processes (settings), pinned on CUDA.

    Give either ``batch_size`` (+ ``shuffle``/``drop_last``) or a ``batch_sampler``.
    ``num_workers`` defaults to ``settings.loader_workers()``; workers are persistent (one
    set per loader, kept across epochs) and each prefetches ``settings.loader_prefetch``
    batches. The order (sampler and ``seed``) and the decoded images are the same whatever
    the number of workers; random transforms draw from each process's own generator (torch
    seeds the workers from ``seed``), so augmented batches repeat for one seed and worker
    count.
    """
    from ucvgl.shared.config import get_settings

    settings = get_settings()
    workers = settings.loader_workers() if num_workers is None else num_workers
    generator = torch.Generator().manual_seed(seed)
    common: dict = dict(
        num_workers=workers,
        pin_memory=torch.device(device).type == "cuda",
        persistent_workers=workers > 0,
    )
    if workers > 0:
        common["prefetch_factor"] = settings.loader_prefetch
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **common)
    # The shuffle has a generator of its own: the loader's also seeds worker processes, once
    # for persistent workers but every epoch without workers, which would shift the order.
    order = (
        RandomSampler(dataset, generator=torch.Generator().manual_seed(seed)) if shuffle else None
    )
    return DataLoader(
        dataset,
        batch_size=batch_size or 1,
        sampler=order,
        drop_last=drop_last,
        generator=generator,
        **common,
    )
