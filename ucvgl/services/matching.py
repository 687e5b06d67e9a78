"""Adaptive Mutual Matching (AMM, paper Sec. 3.3): pseudo-pairs from mutual nearest neighbours.

(g, s) is a pseudo-pair iff tile s is ground image g's nearest tile AND g is s's nearest
ground image (cosine similarity). Each pair carries the paper's confidence margin
``top1 - top2`` of g's ROW (the gap between g's best and second-best tile similarity),
which the curriculum threshold filters on.

Unlike the authors' code (two dense N x N numpy matrices, about 5 GB each at 35k images),
matching streams over blocks with :mod:`ucvgl.services.blockwise` and holds at most
``block_size x block_size`` similarities; an optional faiss backend gives the same pairs.
Ties are broken by the lowest index in both backends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from ucvgl.services.blockwise import (
    as_float_matrix,
    blockwise_topk,
    canonical_topk,
    inverse_norms,
)
from ucvgl.services.progress import NullProgress, Progress

__all__ = [
    "MutualMatches",
    "curriculum_threshold",
    "label_precision",
    "margin_histogram",
    "mutual_match",
]


@dataclass(frozen=True)
class MutualMatches:
    """Mutual nearest-neighbour pairs between ground images and satellite tiles.

    Attributes:
        ground_idx: int64 [M] ground image index of each pair (ascending).
        satellite_idx: int64 [M] satellite tile index of each pair.
        similarity: float32 [M] cosine similarity of the pair (g's top-1).
        margin: float32 [M] top1 - top2 of g's row over ALL tiles (ground -> satellite
            gap, the paper's threshold filter); >= 0.
        ground_top1: float32 [G] every ground image's best tile similarity.
        ground_top2: float32 [G] its second-best tile similarity.
        ground_best: int64 [G] every ground image's best tile index.
        satellite_best: int64 [S] every tile's best ground image index.
    """

    ground_idx: Tensor
    satellite_idx: Tensor
    similarity: Tensor
    margin: Tensor
    ground_top1: Tensor
    ground_top2: Tensor
    ground_best: Tensor
    satellite_best: Tensor

    @property
    def num_pairs(self) -> int:
        """Number of pairs M."""
        return int(self.ground_idx.numel())

    @property
    def num_ground(self) -> int:
        """Number of ground images G that were matched."""
        return int(self.ground_top1.numel())

    @property
    def num_satellite(self) -> int:
        """Number of satellite tiles S that were matched."""
        return int(self.satellite_best.numel())

    def filter(self, tau: float) -> MutualMatches:
        """The pairs whose margin is >= ``tau`` (per-image arrays are kept unchanged)."""
        if not math.isfinite(tau):
            raise ValueError(f"tau must be a finite number, got {tau!r}")
        keep = self.margin >= tau
        return replace(
            self,
            ground_idx=self.ground_idx[keep],
            satellite_idx=self.satellite_idx[keep],
            similarity=self.similarity[keep],
            margin=self.margin[keep],
        )

    def one_sided(self) -> MutualMatches:
        """Every ground image with its nearest tile, mutual or not (the paper's Tab. 3a
        ablation "w/o mutual matching"); margins and per-image arrays as for the pairs.

        Several ground images may share a tile here; :meth:`filter` applies as usual.
        """
        ground = torch.arange(self.num_ground, dtype=torch.int64)
        return replace(
            self,
            ground_idx=ground,
            satellite_idx=self.ground_best.clone(),
            similarity=self.ground_top1.clone(),
            margin=self.ground_top1 - self.ground_top2,
        )

    def summary(self) -> dict[str, float | int]:
        """Label-free statistics (pair count, coverage, mean margin/similarity)."""
        m = self.num_pairs
        return {
            "num_pairs": m,
            "coverage": m / max(self.num_ground, 1),
            "mean_margin": float(self.margin.mean()) if m else 0.0,
            "median_margin": float(self.margin.median()) if m else 0.0,
            "mean_similarity": float(self.similarity.mean()) if m else 0.0,
        }


def _pairs_from_neighbours(
    g_best: Tensor, g_top1: Tensor, g_top2: Tensor, s_best: Tensor
) -> MutualMatches:
    """Mutual pairs from each side's nearest neighbour (all CPU tensors)."""
    ground = torch.arange(g_best.numel(), dtype=torch.int64)
    mutual = s_best[g_best] == ground
    return MutualMatches(
        ground_idx=ground[mutual],
        satellite_idx=g_best[mutual],
        similarity=g_top1[mutual],
        margin=(g_top1 - g_top2)[mutual],
        ground_top1=g_top1,
        ground_top2=g_top2,
        ground_best=g_best,
        satellite_best=s_best,
    )


def mutual_match(
    ground: Tensor | np.ndarray,
    satellite: Tensor | np.ndarray,
    *,
    block_size: int = 4096,
    device: str | None = None,
    backend: str = "torch",
    compute_dtype: torch.dtype = torch.float32,
    progress: Progress | None = None,
) -> MutualMatches:
    """Mutual nearest neighbours between ground and satellite embeddings.

    Args:
        ground: [G, D] ground embeddings (normalised here; cosine similarity).
        satellite: [S, D] satellite embeddings, S >= 2 (the margin needs a second tile).
        block_size: rows and columns per block (torch backend); memory ~ block_size^2 * 8 B.
        device: 'cpu' / 'cuda' / None (project setting); torch backend only.
        backend: 'torch' (streaming blocks, exact) or 'faiss' (IndexFlatIP, k=2 search in
            both directions, exact; same pairs).
        compute_dtype: float32 (default); float16/bfloat16 on CUDA may swap near-ties
            (see :mod:`ucvgl.services.blockwise`).
        progress: progress/cancellation.

    Returns:
        MutualMatches, pairs sorted by ground index.
    """
    if backend not in ("torch", "faiss"):
        raise ValueError(f"backend must be 'torch' or 'faiss', got {backend!r}")
    progress = progress or NullProgress()
    g = as_float_matrix(ground, "ground")
    s = as_float_matrix(satellite, "satellite")
    if g.shape[1] != s.shape[1]:
        raise ValueError(f"ground has dimension {g.shape[1]} but satellite has {s.shape[1]}")
    if s.shape[0] < 2:
        raise ValueError("mutual matching needs at least 2 satellite tiles (top1 - top2 margin)")
    if backend == "faiss":
        return _mutual_match_faiss(g, s, progress)
    res = blockwise_topk(
        g,
        s,
        row_k=2,
        col_k=1,
        block_q=block_size,
        block_g=block_size,
        device=device,
        compute_dtype=compute_dtype,
        progress=progress,
    )
    assert res.rows is not None and res.cols is not None
    return _pairs_from_neighbours(
        res.rows.indices[:, 0],
        res.rows.values[:, 0],
        res.rows.values[:, 1],
        res.cols.indices[:, 0],
    )


def _faiss_topk(index_data: Tensor, query: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Exact top-k (ties -> lowest index) of normalised ``query`` against ``index_data``."""
    import faiss

    index = faiss.IndexFlatIP(index_data.shape[1])
    index.add(index_data.numpy())
    kk = min(k + 1, index_data.shape[0])
    dist, idx = index.search(query.numpy(), kk)
    values, indices = torch.from_numpy(dist), torch.from_numpy(idx)
    if kk == k:
        return canonical_topk(values, indices, k, None)
    return canonical_topk(values, indices, k, lambda rows: query[rows] @ index_data.T)


def _mutual_match_faiss(g: Tensor, s: Tensor, progress: Progress) -> MutualMatches:
    gn = (g * inverse_norms(g, "ground")[:, None]).contiguous()
    sn = (s * inverse_norms(s, "satellite")[:, None]).contiguous()
    progress.update("faiss ground->satellite", 0.0)
    g_values, g_indices = _faiss_topk(sn, gn, 2)
    progress.check_cancelled()
    progress.update("faiss satellite->ground", 0.5)
    _, s_indices = _faiss_topk(gn, sn, 1)
    progress.update("faiss satellite->ground", 1.0)
    return _pairs_from_neighbours(g_indices[:, 0], g_values[:, 0], g_values[:, 1], s_indices[:, 0])


def curriculum_threshold(T: float, epoch: int, total_epochs: int) -> float:
    """The authors' decaying margin threshold tau(e) = T * (1 + cos(pi * e / E)) / 2.

    tau(0) = T, tau(E) = 0.

    Args:
        T: initial threshold (paper: 0.05 CVUSA, 0.025 CVACT, 0.035 VIGOR), >= 0.
        epoch: current epoch e, 0 <= e <= E.
        total_epochs: E >= 1.
    """
    if not isinstance(T, int | float) or not math.isfinite(T) or T < 0:
        raise ValueError(f"T must be a finite number >= 0, got {T!r}")
    if not isinstance(total_epochs, int) or isinstance(total_epochs, bool) or total_epochs < 1:
        raise ValueError(f"total_epochs must be an integer >= 1, got {total_epochs!r}")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch <= total_epochs:
        raise ValueError(f"epoch must be an integer in [0, {total_epochs}], got {epoch!r}")
    return float(T) * (1.0 + math.cos(math.pi * epoch / total_epochs)) / 2.0


def margin_histogram(
    margins: Tensor | np.ndarray,
    bins: int = 20,
    range: tuple[float, float] | None = None,  # noqa: A002 (numpy's name)
) -> dict[str, list]:
    """Histogram of pair margins for the service's statistics.

    Args:
        margins: [M] margins.
        bins: number of equal-width bins (>= 1).
        range: (low, high); default (0, max margin) (or (0, 1) when there is no margin > 0).

    Returns:
        {"edges": [bins + 1] floats, "counts": [bins] ints}.
    """
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    m = np.asarray(margins.cpu() if isinstance(margins, Tensor) else margins, dtype=np.float64)
    m = m.reshape(-1)
    if range is None:
        high = float(m.max()) if m.size else 0.0
        range = (0.0, high if high > 0 else 1.0)
    if not range[1] > range[0]:
        raise ValueError(f"range must satisfy low < high, got {range!r}")
    counts, edges = np.histogram(m, bins=bins, range=range)
    return {"edges": edges.tolist(), "counts": counts.astype(int).tolist()}


def label_precision(matches: MutualMatches, positives: Tensor | np.ndarray) -> tuple[int, int]:
    """How many pseudo-pairs are true pairs, where the ground truth is known.

    Args:
        matches: the pairs.
        positives: int64 [G] true tile index of each ground image, -1 where unknown.

    Returns:
        (correct, total): total counts the pairs whose ground image has a known positive.
    """
    pos = torch.as_tensor(np.asarray(positives), dtype=torch.int64).reshape(-1)
    if pos.numel() != matches.num_ground:
        raise ValueError(
            f"positives has {pos.numel()} entries but the matches cover {matches.num_ground} "
            "ground images"
        )
    truth = pos[matches.ground_idx]
    known = truth >= 0
    correct = int((truth[known] == matches.satellite_idx[known]).sum())
    return correct, int(known.sum())
