"""Mutual matching (AMM) against a dense NumPy reference written from the paper's definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ucvgl.services.blockwise import blockwise_topk
from ucvgl.services.matching import (
    MutualMatches,
    curriculum_threshold,
    label_precision,
    margin_histogram,
    mutual_match,
)
from ucvgl.services.progress import NullProgress
from ucvgl.shared.errors import JobCancelled


def dense_reference(ground: np.ndarray, satellite: np.ndarray):
    """Dense float64 mutual NN: ties -> lowest index (np.argmax returns the first max)."""
    g = ground.astype(np.float64)
    s = satellite.astype(np.float64)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    sim = g @ s.T
    g_best = sim.argmax(axis=1)
    s_best = sim.argmax(axis=0)
    top1 = sim[np.arange(len(g)), g_best]
    masked = sim.copy()
    masked[np.arange(len(g)), g_best] = -np.inf
    top2 = masked.max(axis=1)
    mutual = s_best[g_best] == np.arange(len(g))
    return np.nonzero(mutual)[0], g_best[mutual], top1[mutual], (top1 - top2)[mutual]


def planted(n_ground: int, n_sat: int, dim: int, noise: float, seed: int):
    """Satellite features and ground features = (first n_ground tiles) + noise."""
    rng = np.random.default_rng(seed)
    sat = rng.standard_normal((n_sat, dim)).astype(np.float32)
    ground = sat[:n_ground] + noise * rng.standard_normal((n_ground, dim)).astype(np.float32)
    perm = rng.permutation(n_ground)  # ground order unrelated to tile order
    return ground[perm], sat, perm.astype(np.int64)


def assert_same(result: MutualMatches, ref) -> None:
    gi, si, sim, margin = ref
    np.testing.assert_array_equal(result.ground_idx.numpy(), gi)
    np.testing.assert_array_equal(result.satellite_idx.numpy(), si)
    np.testing.assert_allclose(result.similarity.numpy(), sim, atol=1e-5)
    np.testing.assert_allclose(result.margin.numpy(), margin, atol=1e-5)


@pytest.mark.parametrize("block_size", [5, 50, 128, 4096])
def test_random_features_match_dense_reference(block_size):
    rng = np.random.default_rng(1)
    ground = rng.standard_normal((173, 16)).astype(np.float32)
    sat = rng.standard_normal((211, 16)).astype(np.float32)
    ref = dense_reference(ground, sat)
    assert 0 < len(ref[0]) < 173  # random data: some but not all are mutual
    assert_same(mutual_match(ground, sat, block_size=block_size, device="cpu"), ref)


@pytest.mark.parametrize("shape", [(300, 200), (200, 300), (257, 257)])
def test_planted_pairs_g_ne_s(shape):
    n_ground, n_sat = shape
    n_true = min(n_ground, n_sat)
    rng = np.random.default_rng(2)
    sat = rng.standard_normal((n_sat, 32)).astype(np.float32)
    ground = rng.standard_normal((n_ground, 32)).astype(np.float32)
    ground[:n_true] = sat[:n_true] + 1.1 * rng.standard_normal((n_true, 32))
    ref = dense_reference(ground, sat)
    result = mutual_match(ground, sat, block_size=37, device="cpu")
    assert_same(result, ref)
    # the planted pairs dominate the mutual matches, but noise makes some wrong or absent
    positives = np.full(n_ground, -1, dtype=np.int64)
    positives[:n_true] = np.arange(n_true)
    correct, total = label_precision(result, positives)
    assert total <= result.num_pairs and 0 < correct < n_true
    assert correct / total > 0.8


def test_filter_margin_and_curriculum_raise_precision():
    ground, sat, perm = planted(400, 400, 24, noise=1.3, seed=3)
    result = mutual_match(torch.from_numpy(ground), torch.from_numpy(sat), block_size=64)
    assert torch.all(result.margin >= 0)
    assert torch.allclose(
        result.margin, (result.ground_top1 - result.ground_top2)[result.ground_idx]
    )
    tau = float(result.margin.median())
    kept = result.filter(tau)
    assert kept.num_pairs < result.num_pairs
    assert torch.all(kept.margin >= tau)
    assert kept.num_ground == result.num_ground  # per-image arrays unchanged
    c_all, t_all = label_precision(result, perm)
    c_kept, t_kept = label_precision(kept, perm)
    assert c_kept / t_kept >= c_all / t_all


def test_ties_break_to_lowest_index_in_both_backends():
    # tiles 1 and 3 are identical and both nearest to ground 0; grounds 0 and 2 identical.
    sat = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 1, 1]], dtype=np.float32)
    ground = np.array([[1, 0.1, 0], [0, 1, 0.2], [1, 0.1, 0], [0, 0, 1]], dtype=np.float32)
    for backend in ("torch", "faiss"):
        for bs in (1, 2, 3, 100):
            res = mutual_match(ground, sat, block_size=bs, backend=backend, device="cpu")
            assert int(res.ground_best[0]) == 1 and int(res.ground_best[2]) == 1
            assert int(res.satellite_best[1]) == 0  # ground 0 beats its twin ground 2
            assert float(res.ground_top2[0]) == pytest.approx(float(res.ground_top1[0]))
            pairs = set(zip(res.ground_idx.tolist(), res.satellite_idx.tolist(), strict=True))
            assert (0, 1) in pairs and (2, 1) not in pairs
            assert (3, 2) in pairs


def test_topk_engine_ties_for_many_equal_values():
    # every similarity in a row equal: top-k must be indices 0..k-1, whatever the blocks
    q = torch.ones(5, 4)
    g = torch.ones(23, 4)
    for bq, bg in ((1, 1), (2, 5), (5, 23), (3, 7)):
        res = blockwise_topk(q, g, row_k=3, col_k=2, block_q=bq, block_g=bg, device="cpu")
        assert res.rows.indices.tolist() == [[0, 1, 2]] * 5
        assert res.cols.indices.tolist() == [[0, 1]] * 23


def test_topk_engine_matches_sort_reference():
    rng = np.random.default_rng(4)
    q = rng.standard_normal((61, 8)).astype(np.float32)
    g = rng.standard_normal((47, 8)).astype(np.float32)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    sim = qn.astype(np.float64) @ gn.T.astype(np.float64)
    res = blockwise_topk(q, g, row_k=5, col_k=3, block_q=9, block_g=10, device="cpu")
    np.testing.assert_array_equal(res.rows.indices.numpy(), np.argsort(-sim, axis=1)[:, :5])
    np.testing.assert_array_equal(res.cols.indices.numpy(), np.argsort(-sim.T, axis=1)[:, :3])
    np.testing.assert_allclose(res.rows.values.numpy(), -np.sort(-sim, axis=1)[:, :5], atol=1e-6)
    # k larger than the gallery is clipped
    small = blockwise_topk(q, g[:2], row_k=4, col_k=0, block_q=9, block_g=1, device="cpu")
    assert small.rows.indices.shape == (61, 2) and small.cols is None


def test_faiss_backend_equals_torch_backend():
    ground, sat, _ = planted(350, 420, 48, noise=1.2, seed=5)
    a = mutual_match(ground, sat, block_size=100, device="cpu")
    b = mutual_match(ground, sat, backend="faiss")
    assert a.num_pairs > 0
    torch.testing.assert_close(a.ground_idx, b.ground_idx)
    torch.testing.assert_close(a.satellite_idx, b.satellite_idx)
    torch.testing.assert_close(a.margin, b.margin, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.satellite_best, b.satellite_best)


def test_scale_invariance_and_bad_inputs():
    ground, sat, _ = planted(50, 60, 8, noise=0.7, seed=6)
    a = mutual_match(ground, sat, device="cpu")
    b = mutual_match(ground * 7.5, sat * 0.01, device="cpu")
    torch.testing.assert_close(a.satellite_idx, b.satellite_idx)
    with pytest.raises(ValueError, match="dimension"):
        mutual_match(ground, sat[:, :4])
    with pytest.raises(ValueError, match="at least 2"):
        mutual_match(ground, sat[:1])
    bad = ground.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mutual_match(bad, sat)
    zero = ground.copy()
    zero[5] = 0
    with pytest.raises(ValueError, match="all-zero rows"):
        mutual_match(zero, sat)
    with pytest.raises(ValueError, match="backend"):
        mutual_match(ground, sat, backend="annoy")
    with pytest.raises(ValueError, match="block_q"):
        mutual_match(ground, sat, block_size=0)
    with pytest.raises(ValueError, match="only supported on CUDA"):
        mutual_match(ground, sat, device="cpu", compute_dtype=torch.float16)


def test_progress_and_cancellation():
    ground, sat, _ = planted(30, 30, 8, noise=0.5, seed=7)
    seen = []

    class Recorder(NullProgress):
        def update(self, stage, fraction, message=""):
            seen.append(fraction)

    mutual_match(ground, sat, block_size=10, device="cpu", progress=Recorder())
    assert seen == pytest.approx([1 / 3, 2 / 3, 1.0])

    class Cancel(NullProgress):
        def check_cancelled(self):
            raise JobCancelled("stop")

    with pytest.raises(JobCancelled):
        mutual_match(ground, sat, block_size=10, device="cpu", progress=Cancel())


def test_curriculum_threshold():
    assert curriculum_threshold(0.05, 0, 40) == pytest.approx(0.05)
    assert curriculum_threshold(0.05, 40, 40) == pytest.approx(0.0, abs=1e-15)
    assert curriculum_threshold(0.05, 20, 40) == pytest.approx(0.025)
    values = [curriculum_threshold(0.025, e, 10) for e in range(11)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    for e in range(11):
        assert values[e] == pytest.approx(0.025 * (1 + math.cos(math.pi * e / 10)) / 2)
    for args in (
        (-0.1, 0, 10),
        (float("nan"), 0, 10),
        (0.05, 11, 10),
        (0.05, -1, 10),
        (0.05, 0, 0),
    ):
        with pytest.raises(ValueError):
            curriculum_threshold(*args)


def test_margin_histogram():
    margins = torch.tensor([0.0, 0.1, 0.1, 0.25, 0.4])
    h = margin_histogram(margins, bins=4)
    assert h["edges"] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert h["counts"] == [1, 2, 1, 1]
    assert sum(margin_histogram(np.array([]), bins=3)["counts"]) == 0
    assert margin_histogram([0.5], bins=2, range=(0.0, 1.0))["counts"] == [0, 1]
    with pytest.raises(ValueError):
        margin_histogram(margins, bins=0)


def test_label_precision_ignores_unknown_positives():
    ground, sat, perm = planted(40, 40, 16, noise=0.2, seed=8)
    res = mutual_match(ground, sat, device="cpu")
    positives = perm.copy()
    positives[::2] = -1
    correct, total = label_precision(res, positives)
    assert total == int((positives[res.ground_idx.numpy()] >= 0).sum())
    assert correct == total  # low noise: every known pair is right
    with pytest.raises(ValueError, match="entries"):
        label_precision(res, perm[:5])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(dtype):
    ground, sat, _ = planted(300, 300, 64, noise=0.5, seed=9)  # clear margins: no near-ties
    cpu = mutual_match(ground, sat, block_size=100, device="cpu")
    gpu = mutual_match(ground, sat, block_size=100, device="cuda", compute_dtype=dtype)
    torch.testing.assert_close(cpu.satellite_idx, gpu.satellite_idx)
    atol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(cpu.margin, gpu.margin, atol=atol, rtol=0)
