"""Label health scores against a NumPy reference of their documented formulas."""

from __future__ import annotations

import numpy as np
import pytest

from ucvgl.services.label_health import label_health_score, margin_score, margin_scores


def reference_health(margin, sim, mutual, labels):
    if mutual == 0 or labels == 0:
        return 0.0
    scores = [min(max(m / s, 0.0), 1.0) if s > 0 else 0.0 for m, s in zip(margin, sim, strict=True)]
    return 0.5 * float(np.mean(scores)) + 0.5 * min(labels / mutual, 1.0)


def test_margin_scores_are_relative_margins_clipped_to_unit_interval():
    margin = np.array([0.1, 0.5, 2.0, -0.1, 0.3])
    sim = np.array([0.5, 0.5, 0.9, 0.4, -0.2])
    np.testing.assert_allclose(margin_scores(margin, sim), [0.2, 1.0, 1.0, 0.0, 0.0])
    assert margin_score(0.2, 0.8) == pytest.approx(0.25)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_health_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 50))
    margin, sim = rng.uniform(0, 0.5, n), rng.uniform(-0.1, 1.0, n)
    mutual = n + int(rng.integers(0, 20))
    got = label_health_score(margin, sim, mutual=mutual, labels=n)
    assert got == pytest.approx(reference_health(margin, sim, mutual, n))
    assert 0.0 <= got <= 1.0


def test_label_health_orders_rounds_and_handles_empty_rounds():
    decisive = label_health_score(np.full(10, 0.4), np.full(10, 0.8), mutual=10, labels=10)
    ambiguous = label_health_score(np.full(4, 0.01), np.full(4, 0.8), mutual=10, labels=4)
    assert decisive > ambiguous
    assert label_health_score(np.array([]), np.array([]), mutual=0, labels=0) == 0.0
    with pytest.raises(ValueError, match="differ"):
        margin_scores(np.zeros(2), np.zeros(3))
