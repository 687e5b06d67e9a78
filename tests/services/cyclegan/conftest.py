"""Tiny image folders and a tiny CycleGAN config for the imaging-projection tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ucvgl.services.cyclegan import CycleGANConfig


def write_images(folder: Path, count: int, size: int, seed: int, ext: str = "png") -> list[Path]:
    """``count`` smooth random RGB images of ``size`` px (blocky noise upsampled)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        low = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        path = folder / f"img_{i:03d}.{ext}"
        Image.fromarray(low).resize((size, size), Image.Resampling.BILINEAR).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def tiny_cfg() -> CycleGANConfig:
    """Size 32, 8 filters, 1 residual block: a step takes milliseconds on a CPU."""
    return CycleGANConfig(size=32, ngf=8, ndf=8, n_blocks=1, epochs=1, pool_size=4)


@pytest.fixture
def image_dirs(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    """6 BEV-like (domain A) and 4 satellite-like (domain B) images of different sizes."""
    bev = write_images(tmp_path / "bev", 6, 40, seed=1, ext="jpg")
    sat = write_images(tmp_path / "sat", 4, 48, seed=2)
    return bev, sat


@pytest.fixture(autouse=True)
def _single_torch_thread(one_torch_thread):
    """Every CycleGAN test runs with one torch thread (tests/conftest.py)."""
