"""Satellite retrieval index (faiss, inner product on L2-normalised embeddings).

Kinds:
  * ``flat``: exact search (``IndexFlatIP``), the default.
  * ``ivf``: ``IndexIVFFlat`` with ``nlist`` ~ 4 * sqrt(S) clusters trained on the data
    (fewer for small S: at least 39 training points per cluster);
    ``nprobe`` lists are visited per query (more = slower, closer to exact).
  * ``hnsw``: ``IndexHNSWFlat`` graph with ``m`` links per node; ``ef_search`` sets the
    search breadth (more = slower, closer to exact).

Approximate kinds trade recall for speed; :func:`recall_cost` measures that trade against
an exact index so it can be reported. On a machine where faiss sees GPUs
(``faiss.get_num_gpus() > 0``) ``use_gpu=True`` moves flat/IVF indexes to GPU 0 (HNSW
stays on the CPU; faiss has no GPU HNSW).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ucvgl.shared.fileio import atomic_write_bytes, atomic_write_text

__all__ = ["INDEX_KINDS", "SatelliteIndex", "recall_cost"]

INDEX_KINDS = ("flat", "ivf", "hnsw")
_INDEX_FILE, _IDS_FILE, _MANIFEST_FILE = "index.faiss", "ids.json", "manifest.json"
_FORMAT_VERSION = 1


def _normalised(x: Any, name: str, dim: int | None = None) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float32)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array [N, D], got shape {a.shape}")
    if dim is not None and a.shape[1] != dim:
        raise ValueError(f"{name} has dimension {a.shape[1]} but the index has {dim}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{name} has all-zero rows; cosine similarity is undefined for them")
    return np.ascontiguousarray(a / norms, dtype=np.float32)


@dataclass
class SatelliteIndex:
    """A faiss index over satellite embeddings plus their ids and optional metadata.

    Build with :meth:`build`, restore with :meth:`load`.
    """

    index: Any
    ids: list[str]
    kind: str
    dim: int
    metadata: list[dict] | None = None
    nlist: int | None = None
    m: int | None = None
    nprobe: int = 16
    ef_search: int = 64
    on_gpu: bool = field(default=False)

    # ---------------------------------------------------------------- construction
    @classmethod
    def build(
        cls,
        embeddings: Any,
        ids: list[str],
        *,
        kind: str = "flat",
        nlist: int | None = None,
        m: int = 32,
        nprobe: int = 16,
        ef_search: int = 64,
        ef_construction: int = 80,
        metadata: list[dict] | None = None,
        use_gpu: bool = False,
        seed: int = 0,
    ) -> SatelliteIndex:
        """Index ``embeddings`` float32 [S, D] (normalised here) under ``ids`` (S strings).

        Args:
            kind: 'flat' (exact), 'ivf' or 'hnsw'.
            nlist: IVF lists (default round(4 * sqrt(S)), at most S).
            m: HNSW links per node.
            nprobe: IVF lists searched per query.
            ef_search / ef_construction: HNSW search / build breadth.
            metadata: optional per-tile dicts (JSON-serialisable), S of them.
            use_gpu: move flat/IVF to GPU 0 when faiss has GPUs (ignored otherwise).
            seed: k-means seed for IVF training.
        """
        import faiss

        if kind not in INDEX_KINDS:
            raise ValueError(f"kind must be one of {INDEX_KINDS}, got {kind!r}")
        x = _normalised(embeddings, "embeddings")
        n, d = x.shape
        ids = [str(i) for i in ids]
        if len(ids) != n:
            raise ValueError(f"got {len(ids)} ids for {n} embeddings")
        if len(set(ids)) != n:
            raise ValueError("ids must be unique")
        if metadata is not None and len(metadata) != n:
            raise ValueError(f"got {len(metadata)} metadata records for {n} embeddings")
        for value, name in ((m, "m"), (nprobe, "nprobe"), (ef_search, "ef_search")):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        used_nlist: int | None = None
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif kind == "ivf":
            # ~4 sqrt(S) lists, but no fewer than 39 training points per list (faiss's minimum)
            default = max(1, min(round(4 * math.sqrt(n)), n // 39))
            used_nlist = nlist if nlist is not None else default
            if not isinstance(used_nlist, int) or not 1 <= used_nlist <= n:
                raise ValueError(f"nlist must be an integer in [1, {n}], got {nlist!r}")
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, used_nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            index.train(x)
            index.nprobe = min(nprobe, used_nlist)
        else:
            index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            index.hnsw.efSearch = ef_search
        index.add(x)
        out = cls(
            index=index,
            ids=ids,
            kind=kind,
            dim=d,
            metadata=metadata,
            nlist=used_nlist,
            m=m if kind == "hnsw" else None,
            nprobe=nprobe,
            ef_search=ef_search,
        )
        if use_gpu:
            out.to_gpu()
        return out

    def to_gpu(self) -> bool:
        """Move a flat/IVF index to GPU 0 if faiss has GPUs; returns whether it moved."""
        import faiss

        if self.on_gpu or self.kind == "hnsw" or faiss.get_num_gpus() == 0:
            return self.on_gpu
        self._gpu_resources = faiss.StandardGpuResources()
        self.index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self.index)
        self.on_gpu = True
        return True

    # ---------------------------------------------------------------- search
    def __len__(self) -> int:
        return len(self.ids)

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None):
        """Change IVF ``nprobe`` / HNSW ``ef_search`` of an existing index."""
        if nprobe is not None:
            if nprobe < 1:
                raise ValueError(f"nprobe must be >= 1, got {nprobe}")
            self.nprobe = nprobe
        if ef_search is not None:
            if ef_search < 1:
                raise ValueError(f"ef_search must be >= 1, got {ef_search}")
            self.ef_search = ef_search
        self._apply_search_params()

    def _apply_search_params(self) -> None:
        if self.kind == "ivf":
            self.index.nprobe = min(self.nprobe, self.nlist or self.nprobe)
        elif self.kind == "hnsw":
            self.index.hnsw.efSearch = self.ef_search

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k most similar tiles of each query.

        Args:
            queries: float32 [Q, D] (normalised here).
            k: neighbours per query, 1 <= k <= len(index).

        Returns:
            scores float32 [Q, k] (cosine similarity, descending) and indices int64 [Q, k]
            into ``ids`` (-1 where an approximate index found fewer than k).
        """
        if not isinstance(k, int) or not 1 <= k <= len(self.ids):
            raise ValueError(f"k must be an integer in [1, {len(self.ids)}], got {k!r}")
        q = _normalised(queries, "queries", self.dim)
        self._apply_search_params()
        scores, indices = self.index.search(q, k)
        return scores.astype(np.float32), indices.astype(np.int64)

    def ids_of(self, indices: np.ndarray) -> list[list[str | None]]:
        """Map search indices [Q, k] to tile ids (None for -1)."""
        return [[self.ids[i] if i >= 0 else None for i in row] for row in np.asarray(indices)]

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``index.faiss``, ``ids.json`` and ``manifest.json`` (each atomically).

        The manifest is written last, so a directory with a manifest is complete.
        """
        import faiss

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        cpu_index = faiss.index_gpu_to_cpu(self.index) if self.on_gpu else self.index
        atomic_write_bytes(out / _INDEX_FILE, faiss.serialize_index(cpu_index).tobytes())
        atomic_write_text(out / _IDS_FILE, json.dumps({"ids": self.ids, "metadata": self.metadata}))
        manifest = {
            "format_version": _FORMAT_VERSION,
            "kind": self.kind,
            "dim": self.dim,
            "count": len(self.ids),
            "nlist": self.nlist,
            "m": self.m,
            "nprobe": self.nprobe,
            "ef_search": self.ef_search,
            "metric": "inner_product_on_l2_normalised",
        }
        atomic_write_text(out / _MANIFEST_FILE, json.dumps(manifest, indent=2))
        return out

    @classmethod
    def load(cls, directory: str | Path, *, use_gpu: bool = False) -> SatelliteIndex:
        """Restore an index written by :meth:`save`.

        Raises:
            FileNotFoundError: when a file is missing (an unfinished save has no manifest).
            ValueError: when the files disagree with each other.
        """
        import faiss

        src = Path(directory)
        for name in (_MANIFEST_FILE, _IDS_FILE, _INDEX_FILE):
            if not (src / name).is_file():
                raise FileNotFoundError(f"{src / name} is missing; is {src} a saved index?")
        manifest = json.loads((src / _MANIFEST_FILE).read_text())
        if manifest.get("format_version") != _FORMAT_VERSION:
            raise ValueError(
                f"{src / _MANIFEST_FILE}: unsupported format_version "
                f"{manifest.get('format_version')!r}"
            )
        payload = json.loads((src / _IDS_FILE).read_text())
        data = np.fromfile(src / _INDEX_FILE, dtype=np.uint8)
        index = faiss.deserialize_index(data)
        ids = payload["ids"]
        if index.ntotal != len(ids) or index.d != manifest["dim"]:
            raise ValueError(
                f"{src}: index holds {index.ntotal} vectors of dimension {index.d} but the "
                f"manifest/ids say {len(ids)} of dimension {manifest['dim']}"
            )
        out = cls(
            index=index,
            ids=ids,
            kind=manifest["kind"],
            dim=manifest["dim"],
            metadata=payload.get("metadata"),
            nlist=manifest.get("nlist"),
            m=manifest.get("m"),
            nprobe=manifest.get("nprobe", 16),
            ef_search=manifest.get("ef_search", 64),
        )
        out._apply_search_params()
        if use_gpu:
            out.to_gpu()
        return out


def recall_cost(
    exact_index: SatelliteIndex, approx_index: SatelliteIndex, queries: Any, k: int
) -> dict[str, float | int | str]:
    """How much an approximate index loses against an exact one on ``queries``.

    Returns:
        {"kind", "k", "recall_at_k": mean |approx top-k ∩ exact top-k| / k,
        "top1_agreement": share of queries with the same best tile, "exact_seconds",
        "approx_seconds", "speedup", "queries"}.
    """
    if len(exact_index) != len(approx_index) or exact_index.ids != approx_index.ids:
        raise ValueError("the exact and approximate indexes must hold the same tiles in order")
    t0 = time.perf_counter()
    _, exact = exact_index.search(queries, k)
    t1 = time.perf_counter()
    _, approx = approx_index.search(queries, k)
    t2 = time.perf_counter()
    overlap = [
        len(set(e.tolist()) & set(a[a >= 0].tolist())) for e, a in zip(exact, approx, strict=True)
    ]
    return {
        "kind": approx_index.kind,
        "k": k,
        "queries": int(exact.shape[0]),
        "recall_at_k": float(np.mean(overlap)) / k,
        "top1_agreement": float(np.mean(exact[:, 0] == approx[:, 0])),
        "exact_seconds": t1 - t0,
        "approx_seconds": t2 - t1,
        "speedup": (t1 - t0) / max(t2 - t1, 1e-12),
    }
