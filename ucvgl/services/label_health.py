"""Label-free quality scores of mined pseudo-labels (cleanlab conventions: [0, 1], low = bad).

Per label: ``margin_score = clip(margin / similarity, 0, 1)``, the relative margin by which
the best satellite tile beats the runner-up (0 when the best similarity is not positive).
Per round: ``label_health_score = 0.5 * mean(margin_score) + 0.5 * labels / mutual``, i.e.
how decisive the kept matches are and how many mutual pairs survived the margin threshold.
Neither signal reads ground truth.
"""

from __future__ import annotations

import numpy as np


def margin_scores(margin: np.ndarray, similarity: np.ndarray) -> np.ndarray:
    """Relative margins in [0, 1].

    Args:
        margin: float [N] top-1 minus top-2 similarity of each label.
        similarity: float [N] top-1 similarity of each label.

    Returns:
        float64 [N] ``clip(margin / similarity, 0, 1)``; 0 where ``similarity <= 0``.
    """
    margin = np.asarray(margin, dtype=np.float64)
    similarity = np.asarray(similarity, dtype=np.float64)
    if margin.shape != similarity.shape:
        raise ValueError(f"margin {margin.shape} and similarity {similarity.shape} differ")
    ratio = np.divide(margin, similarity, out=np.zeros_like(margin), where=similarity > 0)
    return np.clip(ratio, 0.0, 1.0)


def margin_score(margin: float, similarity: float) -> float:
    """:func:`margin_scores` of one label."""
    return float(margin_scores(np.array([margin]), np.array([similarity]))[0])


def label_health_score(
    margin: np.ndarray, similarity: np.ndarray, *, mutual: int, labels: int
) -> float:
    """Overall health of one round in [0, 1] (0 when nothing was kept).

    Args:
        margin: float [N] margins of the kept labels.
        similarity: float [N] top-1 similarities of the kept labels.
        mutual: number of mutual nearest-neighbour pairs before the margin threshold.
        labels: number of labels kept after it.
    """
    if mutual <= 0 or labels <= 0:
        return 0.0
    scores = margin_scores(margin, similarity)
    decisiveness = float(scores.mean()) if scores.size else 0.0
    kept_share = min(labels / mutual, 1.0)
    return float(np.clip(0.5 * decisiveness + 0.5 * kept_share, 0.0, 1.0))
