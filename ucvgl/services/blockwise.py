"""Streaming block similarity engine: exact top-k per row and per column, bounded memory.

The authors' mutual matching builds two dense N x N matrices (about 5 GB each at 35k
images); Sample4Geo's evaluation concatenates the full similarity matrix (32 GiB at
92k). This module never holds more than ``block_q x block_g`` similarities: it walks over
blocks of the queries (outer loop) and of the gallery (inner loop), computes each block
with one matrix multiply, and folds it into

* a running top-k per query row (the best gallery items of each query), and
* a running top-k per gallery column (the best queries of each gallery item),

so mutual nearest neighbours, margins and retrieval ranks of 100k-1M images fit in a few
hundred MB. Inputs are L2-normalised block by block (no normalised copy of the whole
matrix is made), so the similarity is the cosine similarity.

Ties are broken deterministically: among equal similarities the LOWEST index wins, in
every path (``torch.topk`` alone gives no such guarantee: rows whose k-th and (k+1)-th
values are equal are re-ranked with a stable sort). Results are therefore identical for
every block size, up to the rounding of the matrix multiply (which may order near-ties,
closer than ~1e-6, differently from another implementation).

Precision: the default computes in float32. On CUDA, ``compute_dtype=torch.float16`` or
``torch.bfloat16`` feeds half-precision inputs to the tensor cores and accumulates in
float32 (the block is returned in float32); rounding the inputs to 11 (fp16) or 8 (bf16)
mantissa bits can swap near-ties (similarities closer than ~1e-3 for fp16, ~1e-2 for
bf16), so nearest neighbours and margins may change for such rows. On the CPU only
float32 is accepted.

Transfers on CUDA: when the gallery in the compute dtype takes at most half of the free
device memory (:func:`keep_gallery_on_device`), it is normalised and cast onto the device
ONCE, so it crosses PCIe once instead of once per query block; otherwise each gallery
block is copied per query block, as on the CPU. Blocks of CPU inputs go through reused
pinned (page-locked) buffers with asynchronous copies. On the CPU nothing is copied: each
block is normalised on the fly and memory stays bounded by the block sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ucvgl.services.progress import NullProgress, Progress, report_count

__all__ = [
    "BlockTopK",
    "TopK",
    "as_float_matrix",
    "blockwise_topk",
    "canonical_topk",
    "device_free_bytes",
    "inverse_norms",
    "iter_similarity_blocks",
    "keep_gallery_on_device",
    "merge_topk",
    "resolve_device",
]


@dataclass(frozen=True)
class TopK:
    """The k best items of each row, best first; ties ordered by ascending index.

    Attributes:
        values: float32 [N, k] similarities, descending.
        indices: int64 [N, k] item indices (global, not block-local).
    """

    values: Tensor
    indices: Tensor


@dataclass(frozen=True)
class BlockTopK:
    """Result of :func:`blockwise_topk`.

    Attributes:
        rows: per query, its best gallery items ([Q, row_k]), or None when row_k == 0.
        cols: per gallery item, its best queries ([G, col_k]), or None when col_k == 0.
    """

    rows: TopK | None
    cols: TopK | None


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` means the project setting (``'auto'`` picks CUDA when available)."""
    if device is None:
        from ucvgl.shared.config import get_settings

        device = get_settings().torch_device()
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available")
    return dev


def as_float_matrix(x: Tensor | np.ndarray, name: str) -> Tensor:
    """A 2-D float32 CPU/CUDA tensor view of ``x`` (no copy when already float32).

    Raises:
        ValueError: when ``x`` is not 2-D, is empty, or holds NaN/inf.
    """
    return _float_matrix_and_norms(x, name)[0]


def _float_matrix_and_norms(x: Tensor | np.ndarray, name: str) -> tuple[Tensor, Tensor]:
    """:func:`as_float_matrix` and its float32 [N] row norms (computed once, for the check)."""
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N, D], got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if t.dtype != torch.float32:
        t = t.float()
    if not t.is_contiguous():
        t = t.contiguous()
    # A row norm is finite iff every entry is (NaN and inf propagate); unlike
    # torch.isfinite(t) this makes no [N, D] temporaries (memory stays bounded).
    norms = torch.linalg.vector_norm(t, dim=1)
    if not bool(torch.isfinite(norms).all()):
        raise ValueError(
            f"{name} contains NaN or infinite values (or overflowing norms); check the embeddings"
        )
    return t, norms


def inverse_norms(x: Tensor, name: str) -> Tensor:
    """1 / ||x_i|| per row, float32 [N]; zero rows are an error (no direction to compare)."""
    return _inverse(torch.linalg.vector_norm(x, dim=1), name)


def _inverse(norms: Tensor, name: str) -> Tensor:
    zero = torch.nonzero(norms == 0).flatten()
    if zero.numel():
        raise ValueError(
            f"{name} has {zero.numel()} all-zero rows (first: {int(zero[0])}); "
            "cosine similarity is undefined for them"
        )
    return norms.reciprocal()


def _check_block(value: int, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"compute_dtype must be float32, float16 or bfloat16, got {dtype}")
    if dtype != torch.float32 and device.type != "cuda":
        raise ValueError(f"compute_dtype={dtype} is only supported on CUDA; use float32 on CPU")
    return dtype


def _matmul_into(q: Tensor, g: Tensor, out: Tensor) -> Tensor:
    """out[bq, bg] = q @ g.T in float32 (fp16/bf16 inputs accumulate in fp32 on CUDA)."""
    if q.dtype == torch.float32:
        return torch.mm(q, g.T, out=out)
    try:  # torch >= 2.8 on CUDA: half inputs, float32 output without a half round trip
        out.copy_(torch.mm(q, g.T, out_dtype=torch.float32))
    except (TypeError, RuntimeError):
        out.copy_(torch.mm(q, g.T).float())
    return out


def device_free_bytes(device: torch.device) -> int:
    """Bytes a new tensor can take on a CUDA ``device``: free memory plus the memory torch's
    caching allocator holds but does not use."""
    free, _total = torch.cuda.mem_get_info(device)
    unused = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free + unused)


GALLERY_DEVICE_FRACTION = 0.5  # the cached gallery may take at most this share of free memory


def keep_gallery_on_device(
    n_rows: int,
    dim: int,
    compute_dtype: torch.dtype,
    device: torch.device,
    requested: bool | None = None,
    *,
    free_bytes: int | None = None,
) -> bool:
    """Whether :func:`iter_similarity_blocks` puts the whole normalised gallery on the device.

    Args:
        n_rows, dim: gallery shape [G, D].
        compute_dtype: dtype of the cached copy (its element size sets the bytes needed).
        device: where the blocks are computed.
        requested: True/False forces the choice on CUDA; None (auto) caches when the
            gallery takes at most half of ``free_bytes``.
        free_bytes: free device memory; None = :func:`device_free_bytes` (CUDA only).

    Returns:
        Always False on a non-CUDA device (no full-size copy there: memory stays bounded).

    Raises:
        ValueError: ``requested=True`` on a device that is not CUDA.
    """
    if device.type != "cuda":
        if requested:
            raise ValueError(f"gallery_on_device=True needs a CUDA device, got {device}")
        return False
    if requested is not None:
        return bool(requested)
    if free_bytes is None:
        free_bytes = device_free_bytes(device)
    needed = n_rows * dim * torch.empty((), dtype=compute_dtype).element_size()
    return needed <= GALLERY_DEVICE_FRACTION * free_bytes


class _BlockLoader:
    """Normalised, cast row blocks of one [N, D] input on the compute device.

    ``block(s, e)`` is ``(x[s:e] * inv[s:e, None]).to(dtype)`` computed on ``device``; on
    the CPU exactly that expression (no copy beyond the block). A CPU input going to a
    CUDA device is staged through two reused pinned buffers and copied asynchronously; a
    buffer is refilled only after the copy that last read it has finished (CUDA event).
    """

    def __init__(
        self, x: Tensor, inv: Tensor, device: torch.device, dtype: torch.dtype, rows: int
    ) -> None:
        self.x, self.device, self.dtype = x, device, dtype
        self.inv = inv.to(device)  # [N] float32; a no-op on the CPU
        self.pinned: list[Tensor] = []
        self.events: list[torch.cuda.Event | None] = [None, None]
        self.turn = 0
        if device.type == "cuda" and x.device.type == "cpu":
            try:
                self.pinned = [torch.empty((rows, x.shape[1]), pin_memory=True) for _ in range(2)]
            except RuntimeError:  # no page-locked memory to spare: plain copies
                self.pinned = []

    def _to_device(self, block: Tensor) -> Tensor:
        if not self.pinned:
            return block.to(self.device, non_blocking=True)
        i, self.turn = self.turn, 1 - self.turn
        event = self.events[i]
        if event is not None:
            event.synchronize()  # the previous copy out of this buffer is done
        staged = self.pinned[i][: block.shape[0]]
        staged.copy_(block)
        out = staged.to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        self.events[i] = event
        return out

    def block(self, start: int, end: int) -> Tensor:
        """[end - start, D] normalised rows in the compute dtype, on the device."""
        return (self._to_device(self.x[start:end]) * self.inv[start:end, None]).to(self.dtype)


def iter_similarity_blocks(
    queries: Tensor,
    gallery: Tensor,
    *,
    block_q: int = 4096,
    block_g: int = 4096,
    device: torch.device | str | None = None,
    compute_dtype: torch.dtype = torch.float32,
    gallery_on_device: bool | None = None,
    progress: Progress | None = None,
    stage: str = "similarity",
) -> Iterator[tuple[int, int, Tensor]]:
    """Yield ``(q_start, g_start, sim)`` for every block of cosine similarities.

    Query blocks form the outer loop, gallery blocks the inner one, both in increasing
    index order. ``sim`` is a float32 [bq, bg] view of one reused buffer: consume it before
    asking for the next block.

    Args:
        queries: [Q, D] embeddings (any norm; normalised per block).
        gallery: [G, D] embeddings.
        block_q, block_g: block sizes; memory is bounded by block_q * block_g floats
            (plus a block of each input, plus the cached gallery on CUDA).
        device: where to compute (None = project setting).
        compute_dtype: float32 (default) or, on CUDA only, float16/bfloat16.
        gallery_on_device: CUDA only: normalise and cast the whole gallery onto the device
            once (True), copy it block by block for every query block (False), or decide
            by free memory (None, default; see :func:`keep_gallery_on_device`). Both
            give the same similarities.
        progress: reports the fraction of query blocks done; check_cancelled per block.
    """
    progress = progress or NullProgress()
    block_q, block_g = _check_block(block_q, "block_q"), _check_block(block_g, "block_g")
    dev = resolve_device(device)
    dtype = _check_dtype(compute_dtype, dev)
    q_all, q_norms = _float_matrix_and_norms(queries, "queries")  # one pass over each input
    g_all, g_norms = _float_matrix_and_norms(gallery, "gallery")
    if q_all.shape[1] != g_all.shape[1]:
        raise ValueError(
            f"queries have dimension {q_all.shape[1]} but gallery has {g_all.shape[1]}"
        )
    n_q, n_g = q_all.shape[0], g_all.shape[0]
    bq_max, bg_max = min(block_q, n_q), min(block_g, n_g)
    cache = keep_gallery_on_device(n_g, g_all.shape[1], dtype, dev, gallery_on_device)
    q_loader = _BlockLoader(q_all, _inverse(q_norms, "queries"), dev, dtype, bq_max)
    g_loader = _BlockLoader(g_all, _inverse(g_norms, "gallery"), dev, dtype, bg_max)
    g_cached: Tensor | None = None
    if cache:  # built block by block: no full-size float32 temporary on the device
        g_cached = torch.empty(g_all.shape, dtype=dtype, device=dev)
        for gs in range(0, n_g, block_g):
            ge = min(gs + block_g, n_g)
            g_cached[gs:ge] = g_loader.block(gs, ge)
    buffer = torch.empty(bq_max * bg_max, dtype=torch.float32, device=dev)
    n_blocks = (n_q + block_q - 1) // block_q
    for bi, qs in enumerate(range(0, n_q, block_q)):
        progress.check_cancelled()
        qe = min(qs + block_q, n_q)
        q = q_loader.block(qs, qe)
        for gs in range(0, n_g, block_g):
            ge = min(gs + block_g, n_g)
            g = g_cached[gs:ge] if g_cached is not None else g_loader.block(gs, ge)
            sim = buffer[: (qe - qs) * (ge - gs)].view(qe - qs, ge - gs)
            yield qs, gs, _matmul_into(q, g, sim)
        report_count(progress, stage, bi + 1, n_blocks, "blocks")


def canonical_topk(
    values: Tensor,
    indices: Tensor,
    k: int,
    full_rows: Callable[[Tensor], Tensor] | None,
) -> tuple[Tensor, Tensor]:
    """Make a top-(k+1) candidate list exact under "ties -> lowest index".

    Args:
        values: [R, k'] candidate similarities, descending (from topk / faiss), k' >= k.
        indices: [R, k'] their indices (local to ``full_rows``' columns).
        k: how many to keep.
        full_rows: given row numbers [r], returns those rows' full similarity vectors
            [r, C] with columns in index order; rows whose k-th and (k+1)-th candidates
            tie are re-ranked from it with a stable sort. None when k' == k == C (the
            candidates are the whole row already).

    Returns:
        values [R, k], indices [R, k]: descending, ties ordered by ascending index.
    """
    if values.shape[1] > k:
        if full_rows is None:
            raise ValueError("full_rows is needed to resolve ties at the k-th place")
        tied = torch.nonzero(values[:, k - 1] == values[:, k]).flatten()
        if tied.numel():
            sv, si = torch.sort(full_rows(tied), dim=1, descending=True, stable=True)
            values = values.clone()
            indices = indices.clone()
            values[tied] = sv[:, : values.shape[1]]
            indices[tied] = si[:, : values.shape[1]]
        values, indices = values[:, :k], indices[:, :k]
    # Within the kept k, order equal values by index: sort by index, then stable by value.
    order = torch.argsort(indices, dim=1)
    values, indices = values.gather(1, order), indices.gather(1, order)
    values, order = torch.sort(values, dim=1, descending=True, stable=True)
    return values, indices.gather(1, order)


def _block_topk(sim: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Exact top-k of each row of ``sim`` [R, C] with lowest-index tie-breaking."""
    kk = min(k + 1, sim.shape[1])
    values, indices = torch.topk(sim, kk, dim=1, largest=True, sorted=True)
    if kk == k:  # the row has at most k items: all of them are kept
        return canonical_topk(values, indices, k, None)
    return canonical_topk(values, indices, k, lambda rows: sim[rows])


def merge_topk(
    run_values: Tensor, run_indices: Tensor, new_values: Tensor, new_indices: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """Merge a running top-k with a block's top-k ([R, k] each) into the top-k of both.

    Requires every running index to be smaller than every new index (blocks are visited
    in index order) and both inputs canonical (ties by ascending index); then a stable
    descending sort keeps the lowest index first among equal values.
    """
    values = torch.cat([run_values, new_values], dim=1)
    indices = torch.cat([run_indices, new_indices], dim=1)
    values, order = torch.sort(values, dim=1, descending=True, stable=True)
    return values[:, :k].contiguous(), indices.gather(1, order[:, :k])


def blockwise_topk(
    queries: Tensor,
    gallery: Tensor,
    *,
    row_k: int = 2,
    col_k: int = 2,
    block_q: int = 4096,
    block_g: int = 4096,
    device: torch.device | str | None = None,
    compute_dtype: torch.dtype = torch.float32,
    gallery_on_device: bool | None = None,
    progress: Progress | None = None,
) -> BlockTopK:
    """Exact top-k per query row and per gallery column of the cosine similarity matrix.

    Never materialises the [Q, G] matrix: peak extra memory is two [block_q, block_g]
    float32 buffers (the block and a transposed copy) and the running top-k's
    ([Q, row_k] and [G, col_k]). Per block, a cheap value-only maximum per row (column)
    selects the rows (columns) whose running top-k can change; only those are sorted, so
    after the first few blocks the cost is the matrix multiply itself.

    Args:
        queries: [Q, D] embeddings (e.g. ground images).
        gallery: [G, D] embeddings (e.g. satellite tiles).
        row_k: best gallery items to keep per query (0 = skip rows); clipped to G.
        col_k: best queries to keep per gallery item (0 = skip columns); clipped to Q.
        block_q, block_g: block sizes (any positive value; need not divide Q or G).
        device: 'cpu', 'cuda', ... (None = project setting). Results come back on the CPU.
        compute_dtype: see the module docstring (float32 default; fp16/bf16 on CUDA only).
        gallery_on_device: CUDA only; see :func:`iter_similarity_blocks` (None = auto).
        progress: fraction of query blocks done; cancellation is checked per query block.

    Returns:
        BlockTopK with rows [Q, min(row_k, G)] and cols [G, min(col_k, Q)], values
        descending, ties broken by the lowest index.
    """
    for value, name in ((row_k, "row_k"), (col_k, "col_k")):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if row_k == 0 and col_k == 0:
        raise ValueError("at least one of row_k and col_k must be positive")
    n_q, n_g = int(queries.shape[0]), int(gallery.shape[0])
    dev = resolve_device(device)
    rk, ck = min(row_k, n_g), min(col_k, n_q)
    neg_inf = float("-inf")
    row_v = torch.full((n_q, rk), neg_inf) if rk else None
    row_i = torch.full((n_q, rk), -1, dtype=torch.int64) if rk else None
    col_v = torch.full((n_g, ck), neg_inf, device=dev) if ck else None
    col_i = torch.full((n_g, ck), -1, dtype=torch.int64, device=dev) if ck else None
    transposed: Tensor | None = None
    cur_qs, cur_v, cur_i = -1, None, None

    def flush_rows() -> None:
        if rk and cur_qs >= 0:
            row_v[cur_qs : cur_qs + cur_v.shape[0]] = cur_v.cpu()
            row_i[cur_qs : cur_qs + cur_v.shape[0]] = cur_i.cpu()

    for qs, gs, sim in iter_similarity_blocks(
        queries,
        gallery,
        block_q=block_q,
        block_g=block_g,
        device=dev,
        compute_dtype=compute_dtype,
        gallery_on_device=gallery_on_device,
        progress=progress,
        stage="top-k",
    ):
        bq, bg = sim.shape
        if rk:
            if qs != cur_qs:
                flush_rows()
                cur_qs = qs
                cur_v = torch.full((bq, rk), neg_inf, device=dev)
                cur_i = torch.full((bq, rk), -1, dtype=torch.int64, device=dev)
            # Only rows whose block maximum beats their running k-th value can change (an
            # equal value loses the tie: its index is higher). After the first few blocks
            # these are few, so the top-k runs on a small gathered subset (or, when many
            # rows change, on the whole block without a gather).
            rows = torch.nonzero(sim.amax(dim=1) > cur_v[:, -1]).flatten()
            if rows.numel() > bq // 2:  # many change: sort them all, no gather
                v, i = _block_topk(sim, rk)
                cur_v, cur_i = merge_topk(cur_v, cur_i, v, i + gs, rk)
            elif rows.numel():
                v, i = _block_topk(sim.index_select(0, rows), rk)
                cur_v[rows], cur_i[rows] = merge_topk(cur_v[rows], cur_i[rows], v, i + gs, rk)
        if ck:
            # Same for columns, sorted as rows of a transposed copy ([n, bq]).
            run_v, run_i = col_v[gs : gs + bg], col_i[gs : gs + bg]
            cols = torch.nonzero(sim.amax(dim=0) > run_v[:, -1]).flatten()
            if cols.numel() > bg // 2:  # many change: one dense transpose into a buffer
                if transposed is None:  # sized for the largest (first) block
                    transposed = torch.empty(min(block_q, n_q) * min(block_g, n_g), device=dev)
                v, i = _block_topk(transposed[: bq * bg].view(bg, bq).copy_(sim.T), ck)
                col_v[gs : gs + bg], col_i[gs : gs + bg] = merge_topk(run_v, run_i, v, i + qs, ck)
            elif cols.numel():
                v, i = _block_topk(sim.index_select(1, cols).T.contiguous(), ck)
                run_v[cols], run_i[cols] = merge_topk(run_v[cols], run_i[cols], v, i + qs, ck)
    flush_rows()
    return BlockTopK(
        rows=TopK(row_v, row_i) if rk else None,
        cols=TopK(col_v.cpu(), col_i.cpu()) if ck else None,
    )
