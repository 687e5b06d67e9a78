"""Unpaired image data for the CycleGAN: BEV images (domain A) and satellite tiles (B).

Images are decoded with Pillow, resized (bicubic) to a square ``size`` (or to ``load_size``
followed by a random ``size`` crop, the original ``resize_and_crop``), flipped
horizontally at random (the original ``--no_flip`` default) and scaled to [-1, 1]. As in the
original unaligned dataset, item ``i`` pairs A image ``i`` with a random B image; both
domains may have different counts. Randomness depends on (seed, epoch, index) only, so an
epoch is reproducible and worker processes need no shared random state.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ucvgl.services.datasets.images import load_rgb
from ucvgl.shared.errors import DatasetError

_MIX = 1_000_003  # decorrelates (seed, epoch, index) when deriving per-item seeds


def item_seed(*parts: int) -> int:
    """A seed for ``torch.Generator.manual_seed`` from integers (seed, epoch, index...)."""
    value = 0
    for part in parts:
        value = (value * _MIX + int(part)) % (2**63 - 1)
    return value


def load_rgb_image(path: Path) -> Image.Image:
    """Decode ``path`` as RGB (``datasets.images.load_rgb``: pixel limit, clear errors).

    Raises:
        DatasetError: naming the file, why it failed and what to do.
    """
    try:
        return load_rgb(Path(path))
    except DatasetError as exc:
        raise DatasetError(
            f"{exc}; re-create the image (re-run the projection or dataset export) or remove "
            f"it from the list, then run again"
        ) from exc


def image_to_tensor(image: Image.Image, size: int) -> Tensor:
    """PIL RGB image -> [3, size, size] float tensor in [-1, 1] (bicubic resize)."""
    transform = v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize((size, size), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
        ]
    )
    return transform(image).clamp_(-1.0, 1.0)


def tensor_to_image(tensor: Tensor) -> Image.Image:
    """[3, H, W] tensor in [-1, 1] -> PIL RGB image."""
    array = ((tensor.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).numpy(), mode="RGB")


class UnpairedImageDataset(Dataset):
    """Item ``i``: A image ``i`` and a random B image, each [3, size, size] in [-1, 1].

    Args:
        a_paths: domain A files (BEV images).
        b_paths: domain B files (satellite tiles); the count may differ from A's.
        size: output side in pixels.
        seed: base seed of the B choice, the crops and the flips.
        flip: random horizontal flips (independently per domain).
        load_size: resize to this side, then take a random ``size`` crop (None = resize
            straight to ``size``).
    """

    def __init__(
        self,
        a_paths: Sequence[Path],
        b_paths: Sequence[Path],
        size: int,
        *,
        seed: int = 0,
        flip: bool = True,
        load_size: int | None = None,
    ) -> None:
        if not a_paths:
            raise DatasetError("the CycleGAN needs at least one BEV image (domain A); got none")
        if not b_paths:
            raise DatasetError(
                "the CycleGAN needs at least one satellite image (domain B); got none"
            )
        self.a_paths = [Path(p) for p in a_paths]
        self.b_paths = [Path(p) for p in b_paths]
        self.size = size
        self.seed = seed
        self.flip = flip
        self.load_size = load_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the random draws of ``epoch`` (call before each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return max(len(self.a_paths), len(self.b_paths))

    def _load(self, path: Path, generator: torch.Generator) -> Tensor:
        if self.load_size is None or self.load_size == self.size:
            tensor = image_to_tensor(load_rgb_image(path), self.size)
        else:
            tensor = image_to_tensor(load_rgb_image(path), self.load_size)
            top, left = (
                int(torch.randint(self.load_size - self.size + 1, (), generator=generator))
                for _ in range(2)
            )
            tensor = tensor[:, top : top + self.size, left : left + self.size]
        if self.flip and torch.rand((), generator=generator).item() < 0.5:
            tensor = TF.horizontal_flip(tensor)
        return tensor

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        """``{"a": [3, S, S], "b": [3, S, S]}``."""
        generator = torch.Generator().manual_seed(item_seed(self.seed, self.epoch, int(index)))
        a_path = self.a_paths[index % len(self.a_paths)]
        b_index = int(torch.randint(len(self.b_paths), (), generator=generator))
        return {
            "a": self._load(a_path, generator),
            "b": self._load(self.b_paths[b_index], generator),
        }
