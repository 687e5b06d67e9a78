"""SAFA against a NumPy reference of its formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ucvgl.services.models import SAFA


def safa_reference(
    f: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray
) -> np.ndarray:
    """out[b, c*K + k] = sum_p F[b,c,p] * A[b,k,p], A = (max_c F) W1[k] + b1[k]) W2[k] + b2[k]."""
    bsz, c, h, w = f.shape
    k_branches = w1.shape[0]
    flat = f.reshape(bsz, c, h * w)
    out = np.zeros((bsz, c, k_branches))
    for b in range(bsz):
        m = flat[b].max(axis=0)  # [hw]
        for k in range(k_branches):
            a = (m @ w1[k] + b1[k]) @ w2[k] + b2[k]  # [hw]
            for ch in range(c):
                out[b, ch, k] = float(np.sum(flat[b, ch] * a))
    return out.reshape(bsz, c * k_branches)


@pytest.mark.parametrize("h,w,k", [(2, 3, 8), (1, 1, 2), (4, 4, 1)])
def test_safa_matches_numpy_reference(h: int, w: int, k: int) -> None:
    torch.manual_seed(0)
    safa = SAFA(h * w, num_branches=k).double()
    with torch.no_grad():  # non-trivial weights so the test sees every term
        for p in safa.parameters():
            p.normal_()
    x = torch.randn(3, 5, h, w, dtype=torch.float64)
    got = safa(x).detach().numpy()
    p = {n: t.detach().numpy() for n, t in safa.named_parameters()}
    want = safa_reference(x.numpy(), p["w1"], p["b1"], p["w2"], p["b2"])
    assert got.shape == (3, 5 * k)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_safa_init_as_in_paper() -> None:
    torch.manual_seed(0)
    safa = SAFA(64, 8)
    assert safa.w1.shape == (8, 64, 32) and safa.w2.shape == (8, 32, 64)
    assert abs(safa.w1.detach().std().item() - 0.005) < 0.001  # truncated at 2 std: ~0.0044
    assert safa.w1.detach().abs().max().item() <= 0.01 + 1e-9
    assert torch.all(safa.b1 == 0.1) and torch.all(safa.b2 == 0.1)


def test_safa_rejects_wrong_feature_size() -> None:
    with pytest.raises(ValueError, match="16 positions"):
        SAFA(16)(torch.randn(1, 4, 3, 3))


def test_safa_gradients_flow() -> None:
    safa = SAFA(6, 4)
    x = torch.randn(2, 3, 2, 3, requires_grad=True)
    safa(x).square().sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in safa.parameters())
