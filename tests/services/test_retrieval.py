"""Retriever: loads a run's model and index once, answers batched queries consistently."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ucvgl.shared.errors import ConfigError


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> tuple[Path, object]:
    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.index import SatelliteIndex
    from ucvgl.services.models import build_model, save_model
    from ucvgl.services.pipeline import SELECTED_MODEL, _tile_metadata
    from ucvgl.services.presets import get_preset
    from ucvgl.services.synth import generate_world
    from ucvgl.services.training.embed import embed_split

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("r")
    world = generate_world(
        root / "w", "cvact", 4, 6, seed=2, pano_size=(32, 64), sat_size=32, workers=1
    )
    split = load_dataset(world, "cvact").split("val")
    torch.manual_seed(0)
    model = build_model(get_preset("tiny").encoder_config())
    run = root / "run"
    save_model(model, run / SELECTED_MODEL)
    emb = embed_split(model, split, "satellite", device="cpu")
    meta = [_tile_metadata(split, j, "val") for j in range(split.num_satellite)]
    SatelliteIndex.build(emb.numpy(), split.satellite_ids, metadata=meta).save(run / "index")
    return run, split


def test_query_matches_brute_force(run_dir):
    from ucvgl.services.datasets.images import load_panorama
    from ucvgl.services.retrieval import Retriever
    from ucvgl.services.training.embed import embed_split

    run, split = run_dir
    retriever = Retriever.from_run(run, batch_size=4)
    images = [load_panorama(p) for p in split.ground_paths]
    results = retriever.query(images, k=3)
    assert len(results) == split.num_ground and all(len(r) == 3 for r in results)
    g = embed_split(retriever.model, split, "ground")
    s = embed_split(retriever.model, split, "satellite")
    sim = (g @ s.T).numpy()
    for row, hits in zip(sim, results, strict=True):
        expected = np.argsort(-row, kind="stable")[:3]
        assert [h["satellite_id"] for h in hits] == [split.satellite_ids[j] for j in expected]
        assert [h["rank"] for h in hits] == [1, 2, 3]
        np.testing.assert_allclose([h["score"] for h in hits], row[expected], atol=1e-4)
        assert all(Path(h["path"]).exists() and "x" in h and "y" in h for h in hits)


def test_heading_rolls_to_north(run_dir):
    from PIL import Image

    from ucvgl.services.datasets.images import roll_to_north
    from ucvgl.services.retrieval import Retriever

    run, split = run_dir
    retriever = Retriever.from_run(run)
    image = Image.open(split.ground_paths[0]).convert("RGB")
    a = retriever.embed([image], heading_deg=90.0)
    b = retriever.embed([roll_to_north(image, 90.0)])
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert not np.allclose(a, retriever.embed([image]))
    assert retriever.query([]) == []
    with pytest.raises(ValueError):
        retriever.embed([image, image], heading_deg=[1.0])


def test_a_model_that_reads_some_rows_is_queried_with_those_rows(run_dir):
    """A model adapted from another layout (``ground_rows``) sees queries as it trained."""
    from ucvgl.services.datasets.images import load_panorama
    from ucvgl.services.index import SatelliteIndex
    from ucvgl.services.models import load_model
    from ucvgl.services.pipeline import SELECTED_MODEL
    from ucvgl.services.retrieval import Retriever
    from ucvgl.services.training.embed import embed_split

    run, split = run_dir
    model, _ = load_model(run / SELECTED_MODEL)
    plain = Retriever(model, SatelliteIndex.load(run / "index"))
    images = [load_panorama(p) for p in split.ground_paths]
    whole = plain.embed(images)
    model.config = model.config.model_copy(update={"ground_rows": (0.25, 0.75)})
    cut = Retriever(model, SatelliteIndex.load(run / "index")).embed(images)
    np.testing.assert_allclose(cut, embed_split(model, split, "ground").numpy(), atol=1e-5)
    assert not np.allclose(cut, whole, atol=1e-3)


def test_missing_run_parts_are_clear_errors(tmp_path):
    from ucvgl.services.retrieval import Retriever

    with pytest.raises(ConfigError, match="no selected model"):
        Retriever.from_run(tmp_path)


@pytest.fixture(autouse=True)
def _single_torch_thread(one_torch_thread):
    """One torch thread per test (tests/conftest.py)."""
