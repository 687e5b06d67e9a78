"""Retrieval metrics by streaming: recall@k and the VIGOR hit rate in bounded memory.

Sample4Geo's evaluation concatenates the full [Q, S] similarity matrix (32 GiB at
CVACT_test's 92,802 images). Here the rank of each query's true tile is computed
exactly without any top-k: rank = the number of gallery tiles with a STRICTLY higher
similarity than the positive (ties count in the query's favour), counted block by block,
so memory is bounded by ``block_size x block_size`` similarities.

The positive's similarity is computed as a row-wise dot product of the normalised
embeddings; the tile itself is never counted against its own query. Other tiles whose
similarity is within float32 rounding (~1e-6) of the positive's may be counted on either
side of it, as in any float32 implementation.

With ``compute_dtype=torch.float16/bfloat16`` (CUDA only) the blocks compare the
embeddings rounded to that dtype after normalisation, and the positive's similarity is
taken from the same rounded vectors (so the rank is exact for the rounded embeddings, up
to float32 accumulation order); tiles closer than ~1e-3 (fp16) / ~1e-2 (bf16) to the
positive may then rank differently than in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ucvgl.services.blockwise import (
    _check_dtype,
    as_float_matrix,
    blockwise_topk,
    inverse_norms,
    iter_similarity_blocks,
    resolve_device,
)
from ucvgl.services.progress import NullProgress, Progress

__all__ = ["one_percent_k", "positive_ranks", "recall_at_k", "vigor_hit_rate"]


def one_percent_k(gallery_size: int) -> int:
    """k for recall@1%: round(1% of the gallery), at least 1 (as Sample4Geo)."""
    return max(1, round(gallery_size * 0.01))


def _as_index_vector(x: Tensor | np.ndarray, n: int, name: str) -> Tensor:
    t = torch.as_tensor(np.asarray(x.cpu() if isinstance(x, Tensor) else x))
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer indices, got dtype {t.dtype}")
    t = t.to(torch.int64)
    if t.ndim != 1 or t.numel() != n:
        raise ValueError(f"{name} must have shape [{n}] (one per query), got {tuple(t.shape)}")
    return t


def positive_ranks(
    query: Tensor | np.ndarray,
    gallery: Tensor | np.ndarray,
    positives: Tensor | np.ndarray,
    *,
    block_size: int = 4096,
    device: str | None = None,
    compute_dtype: torch.dtype = torch.float32,
    progress: Progress | None = None,
) -> Tensor:
    """0-based rank of each query's positive tile (count of strictly more similar tiles).

    Args:
        query: [Q, D] query embeddings.
        gallery: [S, D] gallery embeddings.
        positives: int64 [Q] index of each query's true tile; < 0 = unknown.
        block_size: queries and tiles per block.
        device: where to compute.
        compute_dtype: float32 (default) or, on CUDA only, float16/bfloat16 (see above).
        progress: progress/cancellation.

    Returns:
        int64 [Q] ranks; -1 for queries without a positive.
    """
    q = as_float_matrix(query, "query")
    g = as_float_matrix(gallery, "gallery")
    n_q, n_g = q.shape[0], g.shape[0]
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query has dimension {q.shape[1]} but gallery has {g.shape[1]}")
    pos = _as_index_vector(positives, n_q, "positives")
    if bool((pos >= n_g).any()):
        bad = int(torch.nonzero(pos >= n_g)[0])
        raise ValueError(f"positives[{bad}] = {int(pos[bad])} is outside the gallery (size {n_g})")
    dev = resolve_device(device)
    dtype = _check_dtype(compute_dtype, dev)
    known = pos >= 0
    pos_clamped = pos.clamp(min=0)
    inv_q, inv_g = inverse_norms(q, "query"), inverse_norms(g, "gallery")
    pos_sim = torch.empty(n_q)
    for s in range(0, n_q, block_size):  # row-wise dots in chunks: no [Q, D] copies
        e = min(s + block_size, n_q)
        p = pos_clamped[s:e]
        if dtype == torch.float32:
            pos_sim[s:e] = (q[s:e] * g[p]).sum(dim=1) * inv_q[s:e] * inv_g[p]
        else:  # the same rounded vectors as the blocks (products are exact in float32)
            qn = (q[s:e] * inv_q[s:e, None]).to(dtype).float()
            gn = (g[p] * inv_g[p, None]).to(dtype).float()
            pos_sim[s:e] = (qn * gn).sum(dim=1)
    pos_sim = pos_sim.to(dev)  # [Q]
    pos_dev = pos_clamped.to(dev)
    counts = torch.zeros(n_q, dtype=torch.int64, device=dev)
    for qs, gs, sim in iter_similarity_blocks(
        q,
        g,
        block_q=block_size,
        block_g=block_size,
        device=dev,
        compute_dtype=dtype,
        progress=progress,
        stage="rank",
    ):
        bq, bg = sim.shape
        p = pos_sim[qs : qs + bq, None]
        # Only rows whose block maximum exceeds the positive can count anything.
        rows = torch.nonzero(sim.amax(dim=1) > p[:, 0]).flatten()
        if rows.numel() > bq // 2:
            counts[qs : qs + bq] += torch.count_nonzero(sim > p, dim=1)
        elif rows.numel():
            above = sim.index_select(0, rows) > p.index_select(0, rows)
            counts[qs + rows] += torch.count_nonzero(above, dim=1)
        # Never count the positive against itself (rounding may put it above its own dot).
        local = pos_dev[qs : qs + bq] - gs
        inside = torch.nonzero((local >= 0) & (local < bg)).flatten()
        if inside.numel():
            own = sim[inside, local[inside]] > p[inside, 0]
            counts[qs + inside] -= own.to(torch.int64)
    ranks = counts.cpu()
    ranks[~known] = -1
    return ranks


def recall_at_k(
    query: Tensor | np.ndarray,
    gallery: Tensor | np.ndarray,
    positives: Tensor | np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
    *,
    one_percent: bool = True,
    block_size: int = 4096,
    device: str | None = None,
    compute_dtype: torch.dtype = torch.float32,
    progress: Progress | None = None,
) -> dict[str, float | int]:
    """Recall@k (percent) of retrieving each query's true tile, exact and memory bounded.

    Args:
        query: [Q, D] query (ground) embeddings.
        gallery: [S, D] gallery (satellite) embeddings.
        positives: int64 [Q] index of each query's true tile; queries with a negative
            index are excluded.
        ks: cut-offs; each gives key ``f"r{k}"``.
        one_percent: also report ``r1p`` = recall@(1% of S) (k = round(S / 100), >= 1).
        block_size: queries and tiles per block.
        device: where to compute.
        compute_dtype: float32 (default) or, on CUDA only, float16/bfloat16 (see
            :func:`positive_ranks`).
        progress: progress/cancellation.

    Returns:
        {"r1": ..., "r5": ..., "r10": ..., "r1p": ...} in percent (0-100), plus
        "evaluated" (queries with a positive), "gallery_size" and "one_percent_k".

    Raises:
        ValueError: bad shapes, a positive outside the gallery, no query with a positive,
            or a k < 1.
    """
    ks = [int(k) for k in ks]
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be >= 1, got {ks}")
    ranks = positive_ranks(
        query,
        gallery,
        positives,
        block_size=block_size,
        device=device,
        compute_dtype=compute_dtype,
        progress=progress,
    )
    evaluated = ranks[ranks >= 0]
    if evaluated.numel() == 0:
        raise ValueError("no query has a known positive (all positives are < 0)")
    n_g = int(gallery.shape[0])
    out: dict[str, float | int] = {}
    for k in ks:
        out[f"r{k}"] = 100.0 * float((evaluated < k).double().mean())
    if one_percent:
        k1p = one_percent_k(n_g)
        out["r1p"] = 100.0 * float((evaluated < k1p).double().mean())
        out["one_percent_k"] = k1p
    out["evaluated"] = int(evaluated.numel())
    out["gallery_size"] = n_g
    return out


def vigor_hit_rate(
    query: Tensor | np.ndarray,
    gallery: Tensor | np.ndarray,
    positives: Tensor | np.ndarray,
    semi_positives: Tensor | np.ndarray,
    *,
    block_size: int = 4096,
    device: str | None = None,
    progress: Progress | None = None,
) -> dict[str, float | int]:
    """VIGOR hit rate: share of queries whose top-1 tile is the positive or a semi-positive.

    Top-1 ties are broken by the lowest tile index.

    Args:
        query: [Q, D]; gallery: [S, D].
        positives: int64 [Q] true tile per query (< 0 = excluded).
        semi_positives: int64 [Q, n] semi-positive tiles per query (< 0 entries ignored).

    Returns:
        {"hit_rate": percent, "evaluated": number of queries with a positive}.
    """
    n_q = int(query.shape[0])
    pos = _as_index_vector(positives, n_q, "positives")
    semi = torch.as_tensor(np.asarray(semi_positives)).to(torch.int64)
    if semi.ndim != 2 or semi.shape[0] != n_q:
        raise ValueError(f"semi_positives must have shape [{n_q}, n], got {tuple(semi.shape)}")
    res = blockwise_topk(
        query,
        gallery,
        row_k=1,
        col_k=0,
        block_q=block_size,
        block_g=block_size,
        device=device,
        progress=progress or NullProgress(),
    )
    assert res.rows is not None
    top1 = res.rows.indices[:, 0]
    known = pos >= 0
    if not bool(known.any()):
        raise ValueError("no query has a known positive (all positives are < 0)")
    accepted = torch.cat([pos[:, None], semi], dim=1)
    hit = ((accepted == top1[:, None]) & (accepted >= 0)).any(dim=1)
    return {
        "hit_rate": 100.0 * float(hit[known].double().mean()),
        "evaluated": int(known.sum()),
    }
