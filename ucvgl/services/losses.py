"""Symmetric InfoNCE with label smoothing, a learnable temperature and partial labels.

Notation: q [B, D] are the queries (e.g. ground), r [M, D] the references (e.g. satellite),
M >= B; r[:B] pairs with q row by row, r[B:] are extra gallery negatives. s = exp(t) is the
scale (t = ``logit_scale``). With cosine similarities S = q_n @ r_n^T [B, M]:

    logits = s * S
    L = 1/2 * CE_eps(logits, I) + 1/2 * CE_eps(logits[:, :B]^T, I)

CE_eps is the label-smoothed cross-entropy averaged over rows: for a row with logits z over
K classes and target y, CE_eps = (1-eps) * (-log p_y) + eps * mean_k(-log p_k), p = softmax(z)
(the definition of ``torch.nn.functional.cross_entropy(label_smoothing=eps)``).

Partial labels (``positive_mask`` [B] bool; False = q[i] and r[i] are NOT known to match):
- q -> r direction (rows = q, classes = the M references): a row i with mask False gets one
  extra class with logit 0 appended (K = M + 1) and that extra class is its target. Rows with
  mask True keep K = M classes and target i. So an unlabelled r[i] is still a negative for
  every query, and an unlabelled q[i] is pushed away from all references.
- r -> q direction (rows = r[:B], classes = the B queries): the same rule, row j with mask
  False gets an extra zero-logit class (K = B + 1) as its target.
- The extra gallery rows r[B:] appear only as negative classes in the q -> r direction; they
  are not rows of the r -> q direction.
With ``positive_mask=None`` (or all True) and M == B this is exactly the standard symmetric
InfoNCE. Each direction averages over its own rows (B each).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SymmetricInfoNCE(nn.Module):
    """Symmetric, label-smoothed InfoNCE loss (CLIP/Sample4Geo style) with partial labels.

    Args:
        label_smoothing: eps in [0, 1). The UCVGL authors use 0.1 (intra-view and the
            pseudo-label stage) and 0.3 (ground <-> fake satellite).

    Raises:
        ValueError: label_smoothing outside [0, 1).
    """

    def __init__(self, label_smoothing: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(
                f"label_smoothing must be in [0, 1), got {label_smoothing}; 0 disables it, "
                f"the paper uses 0.1 to 0.3"
            )
        self.label_smoothing = float(label_smoothing)

    def forward(
        self,
        q: Tensor,
        r: Tensor,
        logit_scale: Tensor,
        positive_mask: Tensor | None = None,
    ) -> Tensor:
        """Loss of queries q [B, D] against references r [M >= B, D].

        Args:
            q: query embeddings [B, D]; normalised here again (cosine similarity), so
                un-normalised inputs are fine.
            r: reference embeddings [M, D]; r[:B] are the positives of q, r[B:] negatives.
            logit_scale: scalar tensor, the LOG of the scale (pass
                ``model.clamped_logit_scale()``); gradient flows into it.
            positive_mask: optional bool [B]; False marks pairs with no known positive.

        Returns:
            scalar loss tensor.
        """
        if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1]:
            raise ValueError(
                f"q and r must be [B, D] and [M, D] with the same D, got {tuple(q.shape)} "
                f"and {tuple(r.shape)}"
            )
        b, m = q.shape[0], r.shape[0]
        if b == 0 or m < b:
            raise ValueError(f"need 1 <= B <= M, got B={b} queries and M={m} references")
        if logit_scale.numel() != 1:
            raise ValueError(f"logit_scale must be a scalar, got shape {tuple(logit_scale.shape)}")
        if positive_mask is not None:
            if positive_mask.shape != (b,) or positive_mask.dtype != torch.bool:
                raise ValueError(
                    f"positive_mask must be a bool tensor of shape [{b}], got "
                    f"{positive_mask.dtype} {tuple(positive_mask.shape)}"
                )
            positive_mask = positive_mask.to(q.device)

        q = F.normalize(q, dim=-1)
        r = F.normalize(r, dim=-1)
        logits = logit_scale.reshape(()).exp() * (q @ r.T)  # [B, M]
        loss_qr = self._direction(logits, positive_mask)  # rows: q, classes: r
        loss_rq = self._direction(logits[:, :b].T, positive_mask)  # rows: r[:B], classes: q
        return 0.5 * (loss_qr + loss_rq)

    def _direction(self, logits: Tensor, mask: Tensor | None) -> Tensor:
        """Mean smoothed CE of rows [N, K]; row i's target is i, or a zero column if ~mask[i]."""
        n = logits.shape[0]
        target = torch.arange(n, device=logits.device)
        eps = self.label_smoothing
        if mask is None or bool(mask.all()):
            return F.cross_entropy(logits, target, label_smoothing=eps)
        total = logits.new_zeros(())
        if bool(mask.any()):
            total = total + F.cross_entropy(
                logits[mask], target[mask], label_smoothing=eps, reduction="sum"
            )
        unlabelled = logits[~mask]  # [U, K]
        extended = torch.cat([unlabelled, unlabelled.new_zeros(unlabelled.shape[0], 1)], dim=1)
        extra_class = torch.full(
            (unlabelled.shape[0],), logits.shape[1], dtype=torch.long, device=logits.device
        )
        total = total + F.cross_entropy(extended, extra_class, label_smoothing=eps, reduction="sum")
        return total / n
