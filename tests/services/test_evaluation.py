"""Streaming recall@k and VIGOR hit rate against dense NumPy references (Sample4Geo style)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ucvgl.services.evaluation import (
    one_percent_k,
    positive_ranks,
    recall_at_k,
    vigor_hit_rate,
)


def dense_recall(query, gallery, positives, ks=(1, 5, 10)):
    """Concatenate-everything reference: full similarity matrix, rank = # strictly higher."""
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    sim = q.astype(np.float64) @ g.T.astype(np.float64)
    keep = positives >= 0
    sim, pos = sim[keep], positives[keep]
    pos_sim = sim[np.arange(len(pos)), pos]
    ranks = (sim > pos_sim[:, None]).sum(axis=1)
    out = {f"r{k}": 100.0 * np.mean(ranks < k) for k in ks}
    out["r1p"] = 100.0 * np.mean(ranks < max(1, round(len(gallery) * 0.01)))
    return out, ranks


def dense_hit_rate(query, gallery, positives, semi):
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    top1 = (q.astype(np.float64) @ g.T.astype(np.float64)).argmax(axis=1)
    accepted = np.concatenate([positives[:, None], semi], axis=1)
    hit = ((accepted == top1[:, None]) & (accepted >= 0)).any(axis=1)
    return 100.0 * hit[positives >= 0].mean()


def planted(n_query, n_gallery, dim, noise, seed):
    rng = np.random.default_rng(seed)
    gallery = rng.standard_normal((n_gallery, dim)).astype(np.float32)
    positives = rng.integers(0, n_gallery, size=n_query).astype(np.int64)
    query = gallery[positives] + noise * rng.standard_normal((n_query, dim)).astype(np.float32)
    return query, gallery, positives


@pytest.mark.parametrize("block_size", [7, 64, 1000])
@pytest.mark.parametrize("shape", [(150, 260), (260, 150)])
def test_recall_matches_dense_reference(block_size, shape):
    query, gallery, positives = planted(*shape, dim=16, noise=1.6, seed=0)
    ref, ref_ranks = dense_recall(query, gallery, positives)
    got = recall_at_k(query, gallery, positives, block_size=block_size, device="cpu")
    for key in ("r1", "r5", "r10", "r1p"):
        assert got[key] == pytest.approx(ref[key]), key
    assert 0 < got["r1"] < got["r5"] < got["r10"] < 100  # a non-trivial case
    ranks = positive_ranks(query, gallery, positives, block_size=block_size, device="cpu")
    np.testing.assert_array_equal(ranks.numpy(), ref_ranks)
    assert got["evaluated"] == shape[0] and got["gallery_size"] == shape[1]


def test_random_features_and_custom_ks():
    rng = np.random.default_rng(1)
    query = rng.standard_normal((120, 8)).astype(np.float32)
    gallery = rng.standard_normal((500, 8)).astype(np.float32)
    positives = rng.integers(0, 500, size=120)
    ref, _ = dense_recall(query, gallery, positives, ks=(1, 3, 50))
    got = recall_at_k(
        torch.from_numpy(query),
        torch.from_numpy(gallery),
        positives,
        ks=(1, 3, 50),
        block_size=77,
        device="cpu",
    )
    for key in ("r1", "r3", "r50", "r1p"):
        assert got[key] == pytest.approx(ref[key])
    assert got["one_percent_k"] == 5


def test_unknown_positives_are_excluded():
    query, gallery, positives = planted(100, 80, 12, noise=1.0, seed=2)
    masked = positives.copy()
    masked[::3] = -1
    ref, _ = dense_recall(query, gallery, masked)
    got = recall_at_k(query, gallery, masked, block_size=16, device="cpu")
    assert got["evaluated"] == int((masked >= 0).sum())
    assert got["r1"] == pytest.approx(ref["r1"])
    ranks = positive_ranks(query, gallery, masked, device="cpu")
    assert (ranks[torch.from_numpy(masked < 0)] == -1).all()
    with pytest.raises(ValueError, match="no query"):
        recall_at_k(query, gallery, np.full(100, -1))


def test_ties_count_in_favour_of_the_query():
    gallery = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], dtype=np.float32)
    query = np.array([[1, 0], [0, 1]], dtype=np.float32)
    ranks = positive_ranks(query, gallery, np.array([3, 2]), block_size=1, device="cpu")
    assert ranks.tolist() == [0, 0]  # equal similarities are not "strictly higher"
    got = recall_at_k(query, gallery, np.array([3, 2]), device="cpu")
    assert got["r1"] == 100.0


def test_perfect_and_bad_inputs():
    rng = np.random.default_rng(3)
    gallery = rng.standard_normal((40, 6)).astype(np.float32)
    got = recall_at_k(gallery * 3, gallery, np.arange(40), block_size=7, device="cpu")
    assert got["r1"] == 100.0 and got["r1p"] == 100.0
    with pytest.raises(ValueError, match="outside the gallery"):
        recall_at_k(gallery, gallery, np.arange(1, 41))
    with pytest.raises(ValueError, match="shape"):
        recall_at_k(gallery, gallery, np.arange(39))
    with pytest.raises(ValueError, match="integer"):
        recall_at_k(gallery, gallery, np.arange(40, dtype=np.float32))
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(gallery, gallery, np.arange(40), ks=(0,))
    with pytest.raises(ValueError, match="dimension"):
        recall_at_k(gallery[:, :3], gallery, np.arange(40))
    assert one_percent_k(92_802) == 928 and one_percent_k(10) == 1


@pytest.mark.parametrize("block_size", [4, 9, 500])
def test_vigor_hit_rate_matches_dense_reference(block_size):
    query, gallery, positives = planted(90, 120, 10, noise=1.4, seed=4)
    rng = np.random.default_rng(5)
    semi = rng.integers(0, 120, size=(90, 3))
    semi[::4, 2] = -1
    positives[::10] = -1
    ref = dense_hit_rate(query, gallery, positives, semi)
    got = vigor_hit_rate(query, gallery, positives, semi, block_size=block_size, device="cpu")
    assert got["hit_rate"] == pytest.approx(ref)
    r1 = recall_at_k(query, gallery, positives, device="cpu")["r1"]
    assert r1 <= got["hit_rate"] < 100
    assert got["evaluated"] == int((positives >= 0).sum())


def test_compute_dtype_passthrough_on_cpu():
    query, gallery, positives = planted(60, 70, 8, noise=1.2, seed=6)
    default = recall_at_k(query, gallery, positives, block_size=16, device="cpu")
    explicit = recall_at_k(
        query, gallery, positives, block_size=16, device="cpu", compute_dtype=torch.float32
    )
    assert default == explicit
    with pytest.raises(ValueError, match="only supported on CUDA"):
        recall_at_k(query, gallery, positives, device="cpu", compute_dtype=torch.float16)
    with pytest.raises(ValueError, match="float32, float16 or bfloat16"):
        positive_ranks(query, gallery, positives, device="cpu", compute_dtype=torch.float64)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_ranks_are_exact_for_the_rounded_embeddings(dtype):
    query, gallery, positives = planted(400, 1500, 64, noise=4.0, seed=7)
    ranks = positive_ranks(
        query, gallery, positives, block_size=128, device="cuda", compute_dtype=dtype
    )

    def rounded(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x)
        inv = torch.linalg.vector_norm(t, dim=1).reciprocal()
        return (t * inv[:, None]).to(dtype).double()

    sim = rounded(query) @ rounded(gallery).T  # float64 [Q, S] of the rounded vectors
    pos_sim = sim[torch.arange(400), torch.from_numpy(positives)][:, None]
    tol = 2e-6  # float32 accumulation order only; fp16 rounding moves a similarity ~4e-5
    lowest = (sim > pos_sim + tol).sum(dim=1)
    highest = (sim > pos_sim - tol).sum(dim=1) - 1  # the positive itself never counts
    assert bool(((lowest <= ranks) & (ranks <= highest)).all())
    assert 0 < int((ranks == 0).sum()) < 400  # a non-trivial case
