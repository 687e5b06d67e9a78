"""Streaming images: worker processes, the byte-budgeted shared cache, identical batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ucvgl.services.training.data import (
    ImageListDataset,
    Normalize,
    PairDataset,
    make_loader,
)
from ucvgl.services.training.image_cache import CacheBudget, ImageCache

SIZE = (16, 32)  # (H, W) the panoramas are resized to
IMAGE_BYTES = 3 * SIZE[0] * SIZE[1]


@pytest.fixture
def images(tmp_path):
    """12 JPEG panoramas of 40x80 (larger than SIZE, so resizing matters) and headings."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):
        paths.append(tmp_path / f"p{i}.jpg")
        pixels = rng.integers(0, 255, (40, 80, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(paths[-1], quality=90)
    return paths, rng.uniform(0, 360, len(paths))


def _batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), i.clone()) for x, i in loader]


def test_budget_is_shared_and_never_exceeded():
    budget = CacheBudget()
    limit = budget.limit()
    first = budget.reserve(limit // 2 + 10)
    second = budget.reserve(limit)
    assert first == limit // 2 + 10
    assert first + second == limit  # the second gets only what is left
    assert budget.reserve(1) == 0
    budget.release(first)
    assert budget.reserve(limit) == first


def test_cache_within_budget_counts_hits(images, settings, monkeypatch):
    paths, headings = images
    # A budget of 5 images and 100 bytes: the cache holds 5 images, never more.
    monkeypatch.setattr(CacheBudget, "limit", staticmethod(lambda: 5 * IMAGE_BYTES + 100))
    budget = CacheBudget()
    cache = ImageCache(len(paths), SIZE, budget=budget)
    assert cache.slots == 5 and cache.nbytes == 5 * IMAGE_BYTES
    assert budget.reserved == 5 * IMAGE_BYTES
    data = ImageListDataset(paths, SIZE, headings=headings, panorama=True, cache=cache)
    first = [data.load(i) for i in range(len(data))]
    assert (cache.hits, cache.misses) == (0, 12)
    assert cache.stored == 5 and cache.stored_bytes <= 5 * IMAGE_BYTES + 100
    second = [data.load(i) for i in range(len(data))]
    assert (cache.hits, cache.misses) == (5, 19)  # the 5 stored hit, the 7 others decode
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    # A second dataset gets nothing more from the same budget; collecting the first frees it.
    other = ImageCache(len(paths), SIZE, budget=budget)
    assert other.slots == 0
    del data, cache, other
    assert budget.reserved == 0


def test_two_workers_fill_and_read_one_shared_cache(images, settings, monkeypatch):
    paths, headings = images
    monkeypatch.setattr(CacheBudget, "limit", staticmethod(lambda: 8 * IMAGE_BYTES))
    budget = CacheBudget()
    cache = ImageCache(len(paths), SIZE, budget=budget)
    streamed = ImageListDataset(
        paths, SIZE, headings=headings, panorama=True, transform=Normalize(), cache=cache
    )
    # The non-streaming path: decoded on the training thread, every image kept.
    in_process = ImageListDataset(
        paths, SIZE, headings=headings, panorama=True, transform=Normalize(), cache=False
    )
    loader = make_loader(streamed, batch_size=4, shuffle=True, seed=3, num_workers=2)
    reference = make_loader(in_process, batch_size=4, shuffle=True, seed=3, num_workers=0)
    assert loader.num_workers == 2 and loader.persistent_workers
    for _epoch in range(2):
        got, want = _batches(loader), _batches(reference)
        assert len(got) == len(want) == 3
        for (x, i), (y, j) in zip(got, want, strict=True):
            assert torch.equal(i, j)  # the same order for the same seed
            assert torch.equal(x, y)  # the same pixels, bit for bit
    # The workers filled the shared slab (the main process decoded nothing) ...
    assert cache.stored == 8 and cache.stored_bytes == 8 * IMAGE_BYTES
    # ... and the second epoch read it: 8 hits, 4 + 12 misses over both epochs.
    assert (cache.hits, cache.misses) == (8, 16)
    assert budget.reserved == 8 * IMAGE_BYTES


def test_pairs_stream_the_same_through_workers(images, settings):
    paths, headings = images
    g = ImageListDataset(paths, SIZE, headings=headings, panorama=True, cache=False)
    s = ImageListDataset(paths[::-1], (16, 16), cache=True)
    gi = np.array([0, 3, 5, 7, 9, 11, 2, 4])
    si = np.array([1, 2, 3, 4, 5, 6, 7, 8])
    pairs = PairDataset(g, s, gi, si)
    sampler = [[0, 1, 2], [3, 4, 5], [6, 7]]
    streamed = _batches_of(make_loader(pairs, batch_sampler=sampler, num_workers=2))
    plain = _batches_of(make_loader(pairs, batch_sampler=sampler, num_workers=0))
    assert len(streamed) == 3
    for a, b in zip(streamed, plain, strict=True):
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y)


def _batches_of(loader):
    return [[t.clone() for t in batch] for batch in loader]


def test_default_workers_follow_the_machine(settings, monkeypatch):
    from ucvgl.shared.config import get_settings

    monkeypatch.delenv("UCVGL_NUM_WORKERS", raising=False)
    get_settings.cache_clear()
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert get_settings().loader_workers() == 8
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2})
    assert get_settings().loader_workers() == 2
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert get_settings().loader_workers() == 0
    # Four torchrun ranks on 16 CPUs share them: 3 workers each.
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert get_settings().loader_workers() == 3
    monkeypatch.setenv("UCVGL_NUM_WORKERS", "3")
    get_settings.cache_clear()
    assert get_settings().loader_workers() == 3
    # A daemonic process (a Celery prefork child) may not start workers at all.
    import multiprocessing

    class Daemon:
        daemon = True

    monkeypatch.setattr(multiprocessing, "current_process", lambda: Daemon())
    assert get_settings().loader_workers() == 0
    get_settings.cache_clear()


def test_jpeg_draft_decodes_small_and_close(tmp_path):
    from ucvgl.services.datasets.images import load_panorama

    # A smooth 256x512 panorama: decoding at 1/4 scale must look like the full decode.
    y, x = np.mgrid[0:256, 0:512]
    pixels = np.stack([x % 256, y, (x + y) % 256], axis=2).astype(np.uint8)
    path = tmp_path / "big.jpg"
    Image.fromarray(pixels).save(path, quality=95)
    full = load_panorama(path, 90.0)
    draft = load_panorama(path, 90.0, draft_size=(128, 64))
    assert full.size == (512, 256) and draft.size == (128, 64)
    from ucvgl.services.training.data import pil_to_uint8

    a = pil_to_uint8(full, (64, 128)).float()
    b = pil_to_uint8(draft, (64, 128)).float()
    assert (a - b).abs().mean() < 6.0  # of 255: the same picture, north-rolled alike
    # PNG ignores the draft size.
    png = tmp_path / "big.png"
    Image.fromarray(pixels).save(png)
    assert load_panorama(png, 0.0, draft_size=(128, 64)).size == (512, 256)
