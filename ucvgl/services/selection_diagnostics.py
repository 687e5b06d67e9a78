"""How well the label-free selection criterion tracks true recall (issue 13, part 3).

With the preset's ``selection_diagnostics`` on and an evaluation split with ground truth,
the pipeline's ``select`` stage evaluates every candidate model (the start model and each
AMM round's model) on that split AFTER the label-free choice is made, and
:func:`diagnose` turns those recalls into the rank correlation between the criterion and
recall. The recalls are written to ``RUN_DIR/model/selection_diagnostics.json`` and shown
in ``report.json``'s ``selection``; they never change which model is selected.

numpy only (no torch): the pipeline computes the recalls and passes them in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CRITERION_NAME = "confident_mutual_matches"
"""The label-free criterion of ``ucvgl.services.training.amm.label_free_criterion``."""
DIAGNOSTICS_FILE = "selection_diagnostics.json"
"""Written in ``RUN_DIR/model/`` beside ``selection.json``."""


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` [N] (float [N]); tied values share their mean rank."""
    v = np.asarray(values, dtype=np.float64).ravel()
    _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    # group k occupies sorted positions end_k - count_k + 1 .. end_k (1-based)
    ends = np.cumsum(counts).astype(np.float64)
    return (ends - (counts - 1) / 2.0)[inverse]


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation of ``x`` [N] and ``y`` [N] (ties averaged).

    None when it is undefined: fewer than two values, a NaN, or a constant input.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"spearman: x has {x.size} values, y has {y.size}")
    if x.size < 2 or np.isnan(x).any() or np.isnan(y).any():
        return None
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = float(np.sqrt((rx * rx).sum() * (ry * ry).sum()))
    if denom == 0.0:
        return None
    return float((rx * ry).sum() / denom)


def _score(candidate: dict[str, Any]) -> float | None:
    crit = candidate.get("criterion")
    if isinstance(crit, dict) and crit.get("score") is not None:
        return float(crit["score"])
    return None


def diagnose(
    candidates: list[dict[str, Any]],
    chosen: str,
    recalls: list[dict[str, Any]],
    eval_split: str,
) -> dict[str, Any]:
    """The criterion-vs-recall record of one selection.

    Args:
        candidates: the AMM candidates (``name``, ``criterion`` with ``score``), in order.
        chosen: the name of the candidate the label-free criterion selected.
        recalls: the true recall of each candidate (``r1``, ``r5`` in percent), same order.
        eval_split: the evaluation split the recalls were measured on.

    Returns:
        {"criterion": :data:`CRITERION_NAME`, "eval_split", "candidates": [{"name",
        "criterion" (score or None), "r1", "r5"}], "spearman_r1", "spearman_r5" (None
        where undefined), "chosen", "best_by_recall" (highest R@1, then R@5; the earlier
        candidate wins ties)}.
    """
    if len(recalls) != len(candidates):
        raise ValueError(f"{len(candidates)} candidates but {len(recalls)} recalls")
    if chosen not in {c["name"] for c in candidates}:
        raise ValueError(f"chosen model {chosen!r} is not among the candidates")
    rows = [
        {
            "name": c["name"],
            "criterion": _score(c),
            "r1": float(r["r1"]),
            "r5": float(r["r5"]),
        }
        for c, r in zip(candidates, recalls, strict=True)
    ]
    scores = [row["criterion"] for row in rows]
    scored = None not in scores
    best = max(range(len(rows)), key=lambda i: (rows[i]["r1"], rows[i]["r5"], -i))
    return {
        "criterion": CRITERION_NAME,
        "eval_split": eval_split,
        "candidates": rows,
        "spearman_r1": spearman(scores, [r["r1"] for r in rows]) if scored else None,
        "spearman_r5": spearman(scores, [r["r5"] for r in rows]) if scored else None,
        "chosen": chosen,
        "best_by_recall": rows[best]["name"],
    }


def merge_into_selection(
    selection: dict[str, Any], diagnostics: dict[str, Any] | None
) -> dict[str, Any]:
    """``report['selection']`` with the diagnostics added (unchanged without them).

    The existing keys stay (``criterion`` description, ``candidates`` with their paths
    and criterion records, ``selected``); each candidate gains ``r1``/``r5``, and
    ``criterion_name``, ``eval_split``, ``spearman_r1``, ``spearman_r5``, ``chosen`` and
    ``best_by_recall`` are added.
    """
    if not diagnostics:
        return selection
    recall = {row["name"]: row for row in diagnostics["candidates"]}
    candidates = [
        {**c, **{k: recall[c["name"]][k] for k in ("r1", "r5")}} if c["name"] in recall else c
        for c in selection.get("candidates", [])
    ]
    extra = {
        "criterion_name": diagnostics["criterion"],
        **{
            k: diagnostics.get(k)
            for k in ("eval_split", "spearman_r1", "spearman_r5", "chosen", "best_by_recall")
        },
    }
    return {**selection, "candidates": candidates, **extra}
