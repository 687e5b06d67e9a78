"""Embedding a split: eval normalisation, cache keyed by weights/images/view, datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ucvgl.services.datasets.index import ViewSplit
from ucvgl.services.training.data import ImageListDataset, PairDataset, pil_to_uint8
from ucvgl.services.training.embed import embed_split, model_fingerprint


@pytest.fixture
def split(tmp_path) -> ViewSplit:
    rng = np.random.default_rng(0)
    g, s = [], []
    for i in range(5):
        g.append(tmp_path / f"g{i}.png")
        s.append(tmp_path / f"s{i}.png")
        Image.fromarray(rng.integers(0, 255, (20, 40, 3), dtype=np.uint8)).save(g[-1])
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(s[-1])
    return ViewSplit(
        [f"g{i}" for i in range(5)],
        g,
        [f"s{i}" for i in range(5)],
        s,
        ground_heading_deg=np.array([0, 90, 180, 270, 45], dtype=np.float32),
    )


@pytest.fixture
def model():
    from ucvgl.services.models import EncoderConfig, build_model

    torch.manual_seed(0)
    return build_model(
        EncoderConfig(
            backbone="test_convnext", ground_size=(32, 64), satellite_size=(32, 32), safa_branches=2
        )
    )


def test_embed_matches_manual_forward_and_caches(split, model, tmp_path):
    from ucvgl.services.datasets.images import load_panorama

    torch.set_num_threads(1)
    cache = tmp_path / "cache"
    emb = embed_split(model, split, "ground", batch_size=2, cache_dir=cache)
    assert emb.shape == (5, model.embed_dim)
    mean = torch.tensor(model.data_config["mean"]).view(3, 1, 1)
    std = torch.tensor(model.data_config["std"]).view(3, 1, 1)
    x = torch.stack(
        [
            (pil_to_uint8(load_panorama(p, h), (32, 64)).float() / 255 - mean) / std
            for p, h in zip(split.ground_paths, split.ground_heading_deg, strict=True)
        ]
    )
    model.eval()
    with torch.no_grad():
        exact = model.embed_ground(x)
    # Cached in float16 (the default): each value within half-precision rounding.
    torch.testing.assert_close(emb, exact, atol=1e-3, rtol=1e-3)
    files = list(cache.glob("ground-*.pt"))
    assert len(files) == 1
    stored = torch.load(files[0], weights_only=True)
    assert stored.dtype == torch.float16 and torch.equal(stored.float(), emb)
    # A second call returns the same numbers from the file.
    assert torch.equal(embed_split(model, split, "ground", cache_dir=cache), emb)
    # A second call reads the cache (proved by planting a marker in the file).
    torch.save(torch.full_like(emb, 7.0), files[0])
    assert (embed_split(model, split, "ground", cache_dir=cache) == 7.0).all()
    # Other weights or another view: another key.
    key = model_fingerprint(model)
    with torch.no_grad():
        model.logit_scale.add_(1.0)
    assert model_fingerprint(model) != key
    assert not (embed_split(model, split, "ground", cache_dir=cache) == 7.0).all()
    sat = embed_split(model, split, "satellite", cache_dir=cache)
    fake = embed_split(model, split, "fake", paths=split.satellite_paths, cache_dir=cache)
    torch.testing.assert_close(sat, fake)
    assert len(list(cache.glob("*.pt"))) == 4


def test_fake_view_needs_paths(split, model):
    with pytest.raises(ValueError, match="fake"):
        embed_split(model, split, "fake")
    with pytest.raises(ValueError, match="view"):
        embed_split(model, split, "aerial")


def test_pair_dataset_items(split):
    g = ImageListDataset(split.ground_paths, (8, 16), panorama=True)
    s = ImageListDataset(split.satellite_paths, (8, 8))
    pairs = PairDataset(g, s, np.array([0, 3]), np.array([4, 1]), np.array([True, False]))
    gi, si, pos, a, b = pairs[1]
    assert gi.shape == (3, 8, 16) and gi.dtype == torch.uint8 and si.shape == (3, 8, 8)
    assert (pos, a, b) == (False, 3, 1)
    assert len(pairs) == 2
    assert isinstance(split.ground_paths[0], Path)


def test_float16_cache_keeps_similarities(split, model, tmp_path, settings, monkeypatch):
    """fp16 storage: cosine similarities within 2e-3 of float32, the same nearest tiles."""
    from ucvgl.shared.config import get_settings

    fp16 = embed_split(model, split, "ground", cache_dir=tmp_path / "a")
    fp16_s = embed_split(model, split, "satellite", cache_dir=tmp_path / "a")
    monkeypatch.setenv("UCVGL_EMBEDDING_CACHE_DTYPE", "float32")
    get_settings.cache_clear()
    fp32 = embed_split(model, split, "ground", cache_dir=tmp_path / "b")
    fp32_s = embed_split(model, split, "satellite", cache_dir=tmp_path / "b")
    assert torch.load(next((tmp_path / "b").glob("ground-*.pt")), weights_only=True).dtype == (
        torch.float32
    )
    exact = embed_split(model, split, "ground")  # no cache: never rounded
    assert torch.equal(fp32, exact)
    sim16, sim32 = fp16 @ fp16_s.T, fp32 @ fp32_s.T
    assert (sim16 - sim32).abs().max() < 2e-3
    assert torch.equal(sim16.argmax(1), sim32.argmax(1))
    # Random unit vectors of the paper's width: the error stays far below AMM's margins.
    g = torch.nn.functional.normalize(torch.randn(500, 1024), dim=1)
    s = torch.nn.functional.normalize(torch.randn(500, 1024), dim=1)
    err = (g.half().float() @ s.half().float().T - g @ s.T).abs()
    assert err.max() < 1e-3 and err.mean() < 1e-4
