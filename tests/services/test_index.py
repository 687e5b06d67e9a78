"""SatelliteIndex (faiss): exact search vs NumPy, save/load round trip, approximate recall cost."""

from __future__ import annotations

import numpy as np
import pytest

from ucvgl.services.index import SatelliteIndex, recall_cost


def clustered(n, dim, seed):
    """Tiles in loose clusters (like neighbouring places), and queries near some tiles."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 20), dim))
    x = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal((n, dim))
    q = x[rng.integers(0, n, 64)] + 0.3 * rng.standard_normal((64, dim))
    return x.astype(np.float32), q.astype(np.float32)


def numpy_topk(x, q, k):
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    sim = qn.astype(np.float64) @ xn.T.astype(np.float64)
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sim, idx, axis=1), idx


def test_flat_is_exact_and_normalises():
    x, q = clustered(600, 24, seed=0)
    ids = [f"tile_{i}" for i in range(len(x))]
    index = SatelliteIndex.build(x * 5.0, ids)
    scores, indices = index.search(q, 7)
    ref_scores, ref_idx = numpy_topk(x, q, 7)
    np.testing.assert_array_equal(indices, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    assert scores.dtype == np.float32 and indices.dtype == np.int64
    assert index.ids_of(indices[:1, :2]) == [[ids[ref_idx[0, 0]], ids[ref_idx[0, 1]]]]


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip(tmp_path, kind):
    x, q = clustered(900, 16, seed=1)
    ids = [f"s{i:04d}" for i in range(len(x))]
    meta = [{"lat": float(i), "lon": -float(i)} for i in range(len(x))]
    index = SatelliteIndex.build(x, ids, kind=kind, metadata=meta, nprobe=3, ef_search=20)
    out = index.save(tmp_path / "idx")
    assert sorted(p.name for p in out.iterdir()) == ["ids.json", "index.faiss", "manifest.json"]
    loaded = SatelliteIndex.load(out)
    assert loaded.ids == ids and loaded.metadata == meta and loaded.kind == kind
    assert (loaded.nprobe, loaded.ef_search, loaded.nlist) == (3, 20, index.nlist)
    a_scores, a_idx = index.search(q, 5)
    b_scores, b_idx = loaded.search(q, 5)
    np.testing.assert_array_equal(a_idx, b_idx)
    np.testing.assert_allclose(a_scores, b_scores)


def test_recall_cost_of_approximate_indexes():
    x, q = clustered(3000, 32, seed=2)
    ids = [str(i) for i in range(len(x))]
    exact = SatelliteIndex.build(x, ids)
    assert recall_cost(exact, exact, q, 10)["recall_at_k"] == 1.0
    ivf = SatelliteIndex.build(x, ids, kind="ivf", nprobe=1)
    assert ivf.nlist == min(round(4 * np.sqrt(3000)), 3000 // 39)
    low = recall_cost(exact, ivf, q, 10)
    ivf.set_search_params(nprobe=ivf.nlist)  # every list: exact again
    full = recall_cost(exact, ivf, q, 10)
    assert 0.0 < low["recall_at_k"] < full["recall_at_k"] == 1.0
    assert low["kind"] == "ivf" and low["queries"] == 64 and low["exact_seconds"] > 0
    hnsw = SatelliteIndex.build(x, ids, kind="hnsw", m=8, ef_search=10)
    narrow = recall_cost(exact, hnsw, q, 10)["recall_at_k"]
    hnsw.set_search_params(ef_search=400)
    wide = recall_cost(exact, hnsw, q, 10)["recall_at_k"]
    assert 0.0 < narrow <= wide and wide > 0.95


def test_bad_inputs(tmp_path):
    x, q = clustered(100, 8, seed=3)
    ids = [str(i) for i in range(100)]
    with pytest.raises(ValueError, match="kind"):
        SatelliteIndex.build(x, ids, kind="lsh")
    with pytest.raises(ValueError, match="ids"):
        SatelliteIndex.build(x, ids[:-1])
    with pytest.raises(ValueError, match="unique"):
        SatelliteIndex.build(x, ["a"] * 100)
    with pytest.raises(ValueError, match="nlist"):
        SatelliteIndex.build(x, ids, kind="ivf", nlist=101)
    with pytest.raises(ValueError, match="NaN"):
        SatelliteIndex.build(np.full((100, 8), np.nan, np.float32), ids)
    index = SatelliteIndex.build(x, ids)
    with pytest.raises(ValueError, match="dimension"):
        index.search(q[:, :4], 3)
    with pytest.raises(ValueError, match="k must"):
        index.search(q, 101)
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        SatelliteIndex.load(tmp_path / "nothing")
    other = SatelliteIndex.build(x[:50], ids[:50])
    with pytest.raises(ValueError, match="same tiles"):
        recall_cost(index, other, q, 3)


def test_gpu_request_without_gpus_stays_on_cpu():
    import faiss

    x, _ = clustered(60, 8, seed=4)
    index = SatelliteIndex.build(x, [str(i) for i in range(60)], use_gpu=True)
    assert index.on_gpu == (faiss.get_num_gpus() > 0)
