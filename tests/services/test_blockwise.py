"""Block engine transfers: where the gallery lives on CUDA, and that it never changes results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ucvgl.services.blockwise import (
    blockwise_topk,
    iter_similarity_blocks,
    keep_gallery_on_device,
)

CUDA = torch.device("cuda")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def features(n_q: int, n_g: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n_q, dim)).astype(np.float32)
    g = rng.standard_normal((n_g, dim)).astype(np.float32)
    return q, g


def test_gallery_cache_decision_by_free_memory():
    # 1000 x 1024 float32 = 4,096,000 bytes; cached when at most half of the free memory
    assert keep_gallery_on_device(1000, 1024, torch.float32, CUDA, free_bytes=8_192_000)
    assert not keep_gallery_on_device(1000, 1024, torch.float32, CUDA, free_bytes=8_191_999)
    # half precision needs half the bytes
    assert keep_gallery_on_device(1000, 1024, torch.float16, CUDA, free_bytes=4_096_000)
    assert keep_gallery_on_device(1000, 1024, torch.bfloat16, CUDA, free_bytes=4_096_000)
    assert not keep_gallery_on_device(1000, 1024, torch.bfloat16, CUDA, free_bytes=4_095_999)
    # 1M x 1024 float32 (4 GiB) fits an 80 GB card with other work on it, not a 6 GB one
    assert keep_gallery_on_device(10**6, 1024, torch.float32, CUDA, free_bytes=60 * 2**30)
    assert not keep_gallery_on_device(10**6, 1024, torch.float32, CUDA, free_bytes=6 * 2**30)


def test_gallery_cache_explicit_choice_and_cpu():
    assert keep_gallery_on_device(10, 4, torch.float32, CUDA, True, free_bytes=0)
    assert not keep_gallery_on_device(10, 4, torch.float32, CUDA, False, free_bytes=10**12)
    cpu = torch.device("cpu")
    # never a full-size copy on the CPU, whatever the memory
    assert not keep_gallery_on_device(10, 4, torch.float32, cpu)
    assert not keep_gallery_on_device(10, 4, torch.float32, cpu, False)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        keep_gallery_on_device(10, 4, torch.float32, cpu, True)


def test_cpu_ignores_auto_and_refuses_forced_cache():
    q, g = features(40, 50, 8, seed=0)
    auto = blockwise_topk(q, g, row_k=3, col_k=2, block_q=7, block_g=9, device="cpu")
    off = blockwise_topk(
        q, g, row_k=3, col_k=2, block_q=7, block_g=9, device="cpu", gallery_on_device=False
    )
    assert torch.equal(auto.rows.values, off.rows.values)
    assert torch.equal(auto.cols.indices, off.cols.indices)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        next(iter_similarity_blocks(q, g, device="cpu", gallery_on_device=True))


def _blocks(q, g, **kw) -> list[tuple[int, int, torch.Tensor]]:
    return [(qs, gs, sim.cpu().clone()) for qs, gs, sim in iter_similarity_blocks(q, g, **kw)]


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_cached_and_streamed_gallery_give_the_same_blocks(dtype):
    # dim 64: every cached block starts 256-byte aligned, like a freshly allocated one
    q, g = features(150, 230, 64, seed=1)
    kw = dict(block_q=64, block_g=96, device="cuda", compute_dtype=dtype)
    cached = _blocks(q, g, gallery_on_device=True, **kw)
    streamed = _blocks(q, g, gallery_on_device=False, **kw)
    assert [b[:2] for b in cached] == [b[:2] for b in streamed]
    for a, b in zip(cached, streamed, strict=True):
        assert torch.equal(a[2], b[2])


@needs_cuda
@pytest.mark.parametrize("gallery_on_device", [True, False, None])
@pytest.mark.parametrize("on_cuda_already", [False, True])
def test_cuda_topk_equals_cpu_float32(gallery_on_device, on_cuda_already):
    q, g = features(170, 260, 64, seed=2)
    cpu = blockwise_topk(q, g, row_k=3, col_k=2, block_q=64, block_g=96, device="cpu")
    q_in, g_in = torch.from_numpy(q), torch.from_numpy(g)
    if on_cuda_already:
        q_in, g_in = q_in.cuda(), g_in.cuda()
    gpu = blockwise_topk(
        q_in,
        g_in,
        row_k=3,
        col_k=2,
        block_q=64,
        block_g=96,
        device="cuda",
        gallery_on_device=gallery_on_device,
    )
    assert torch.equal(cpu.rows.indices, gpu.rows.indices)
    assert torch.equal(cpu.cols.indices, gpu.cols.indices)
    torch.testing.assert_close(cpu.rows.values, gpu.rows.values, atol=1e-5, rtol=0)
    torch.testing.assert_close(cpu.cols.values, gpu.cols.values, atol=1e-5, rtol=0)


@needs_cuda
def test_cuda_auto_caches_a_small_gallery():
    assert keep_gallery_on_device(1000, 64, torch.float32, CUDA)
