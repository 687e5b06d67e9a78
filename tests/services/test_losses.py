"""SymmetricInfoNCE against a NumPy reference written from the formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ucvgl.services.losses import SymmetricInfoNCE


def smoothed_ce(z: np.ndarray, target: int, eps: float) -> float:
    """(1-eps) * -log p_target + eps * mean_k -log p_k for one row of logits z [K]."""
    zmax = z.max()
    log_p = z - (zmax + math.log(np.exp(z - zmax).sum()))
    return float((1 - eps) * -log_p[target] + eps * np.mean(-log_p))


def reference_loss(
    q: np.ndarray, r: np.ndarray, t: float, eps: float, mask: np.ndarray | None = None
) -> float:
    """1/2 CE(q->r) + 1/2 CE(r[:B]->q); unlabelled rows target an appended zero logit."""
    b = q.shape[0]
    mask = np.ones(b, bool) if mask is None else mask
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    rn = r / np.linalg.norm(r, axis=1, keepdims=True)
    logits = math.exp(t) * qn @ rn.T  # [B, M]

    def direction(rows: np.ndarray) -> float:
        losses = []
        for i, z in enumerate(rows):
            if mask[i]:
                losses.append(smoothed_ce(z, i, eps))
            else:
                losses.append(smoothed_ce(np.append(z, 0.0), len(z), eps))
        return float(np.mean(losses))

    return 0.5 * direction(logits) + 0.5 * direction(logits[:, :b].T)


def embeddings(b: int, m: int, d: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit q [b, d] and r [m, d]; r[i] is close to q[i] for i < b (the positives)."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, d, generator=gen, dtype=torch.float64)
    r = torch.randn(m, d, generator=gen, dtype=torch.float64)
    r[:b] = q + 0.3 * r[:b]
    normalize = torch.nn.functional.normalize
    return normalize(q, dim=1), normalize(r, dim=1)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("t", [0.0, math.log(1 / 0.07)])
def test_matches_numpy_reference(eps: float, t: float) -> None:
    q, r = embeddings(5, 5)
    got = SymmetricInfoNCE(eps)(q, r, torch.tensor(t, dtype=torch.float64))
    want = reference_loss(q.numpy(), r.numpy(), t, eps)
    assert got.item() == pytest.approx(want, rel=1e-10)


def test_standard_form_equals_torch_cross_entropy() -> None:
    q, r = embeddings(4, 4)
    logits = math.exp(2.0) * q @ r.T
    labels = torch.arange(4)
    ce = torch.nn.functional.cross_entropy
    want = 0.5 * (
        ce(logits, labels, label_smoothing=0.1) + ce(logits.T, labels, label_smoothing=0.1)
    )
    got = SymmetricInfoNCE(0.1)(q, r, torch.tensor(2.0, dtype=torch.float64))
    assert got.item() == pytest.approx(want.item(), rel=1e-12)


def test_partial_labels_match_numpy_reference() -> None:
    q, r = embeddings(6, 6, seed=3)
    mask = torch.tensor([True, False, True, False, False, True])
    t = torch.tensor(2.5, dtype=torch.float64)
    got = SymmetricInfoNCE(0.1)(q, r, t, positive_mask=mask)
    want = reference_loss(q.numpy(), r.numpy(), 2.5, 0.1, mask.numpy())
    assert got.item() == pytest.approx(want, rel=1e-10)
    # all unlabelled: every row targets its zero column
    none = torch.zeros(6, dtype=torch.bool)
    got = SymmetricInfoNCE(0.1)(q, r, t, positive_mask=none)
    assert got.item() == pytest.approx(reference_loss(q.numpy(), r.numpy(), 2.5, 0.1, none.numpy()))


def test_all_true_mask_equals_no_mask() -> None:
    q, r = embeddings(5, 5)
    loss = SymmetricInfoNCE(0.2)
    t = torch.tensor(1.0, dtype=torch.float64)
    assert loss(q, r, t, torch.ones(5, dtype=torch.bool)).item() == loss(q, r, t).item()


def test_extra_gallery_negatives_match_reference() -> None:
    q, r = embeddings(4, 9, seed=5)
    mask = torch.tensor([True, True, False, True])
    t = torch.tensor(3.0, dtype=torch.float64)
    loss = SymmetricInfoNCE(0.1)
    got = loss(q, r, t, positive_mask=mask)
    assert got.item() == pytest.approx(
        reference_loss(q.numpy(), r.numpy(), 3.0, 0.1, mask.numpy()), rel=1e-10
    )
    # the extra negatives change the loss (they are in the q -> r denominators) ...
    assert got.item() != pytest.approx(loss(q, r[:4], t, positive_mask=mask).item())
    # ... and an extra negative identical to a query's positive raises the loss
    harder = torch.cat([r, r[:1]])
    assert loss(q, harder, t).item() > loss(q, r, t).item()


def test_symmetric_in_q_and_r() -> None:
    q, r = embeddings(6, 6, seed=1)
    loss = SymmetricInfoNCE(0.1)
    t = torch.tensor(2.0, dtype=torch.float64)
    mask = torch.tensor([True, False, True, True, False, True])
    assert loss(q, r, t).item() == pytest.approx(loss(r, q, t).item(), rel=1e-12)
    assert loss(q, r, t, mask).item() == pytest.approx(loss(r, q, t, mask).item(), rel=1e-12)


def test_invariant_to_batch_order() -> None:
    q, r = embeddings(7, 7, seed=2)
    mask = torch.tensor([True, False, True, True, False, True, True])
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    loss = SymmetricInfoNCE(0.1)
    t = torch.tensor(2.0, dtype=torch.float64)
    assert loss(q, r, t, mask).item() == pytest.approx(
        loss(q[perm], r[perm], t, mask[perm]).item(), rel=1e-12
    )


def test_gradient_to_logit_scale() -> None:
    q, r = embeddings(5, 5)
    t = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    loss = SymmetricInfoNCE(0.0)(q, r, t)
    loss.backward()
    # positives are the most similar pairs, so sharpening (larger t) lowers the loss
    assert t.grad is not None and t.grad.item() < 0
    h = 1e-6
    numeric = (
        reference_loss(q.numpy(), r.numpy(), 1.0 + h, 0.0)
        - reference_loss(q.numpy(), r.numpy(), 1.0 - h, 0.0)
    ) / (2 * h)
    assert t.grad.item() == pytest.approx(numeric, rel=1e-5)


def test_unnormalised_inputs_use_cosine_similarity() -> None:
    q, r = embeddings(4, 4)
    loss = SymmetricInfoNCE(0.1)
    t = torch.tensor(2.0, dtype=torch.float64)
    assert loss(3 * q, 0.5 * r, t).item() == pytest.approx(loss(q, r, t).item(), rel=1e-12)


@pytest.mark.parametrize("eps", [-0.1, 1.0, 1.5])
def test_rejects_bad_label_smoothing(eps: float) -> None:
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
        SymmetricInfoNCE(eps)


def test_rejects_bad_shapes() -> None:
    loss = SymmetricInfoNCE(0.1)
    t = torch.tensor(1.0)
    with pytest.raises(ValueError, match="same D"):
        loss(torch.randn(3, 4), torch.randn(3, 5), t)
    with pytest.raises(ValueError, match="B <= M"):
        loss(torch.randn(4, 4), torch.randn(3, 4), t)
    with pytest.raises(ValueError, match="positive_mask"):
        loss(torch.randn(3, 4), torch.randn(3, 4), t, torch.ones(3))
    with pytest.raises(ValueError, match="scalar"):
        loss(torch.randn(3, 4), torch.randn(3, 4), torch.ones(2))
