"""The projection prior: label-free matching of BEV projections to satellite tiles by pixels.

The correspondence-free projection (paper Eq. 2) turns a panorama into a bird's-eye view
aligned with its satellite tile, so small thumbnails of the two already carry a matching
signal without any learning (the raw-pixel baseline of the quality tables). This module
computes those thumbnail descriptors, ranks tiles by them, and is used by

- the raw-pixel baseline of ``benchmarks/quality.py``;
- the label-free stage checks (``ucvgl.services.health``): an independent matcher whose
  agreement with a trained model's pseudo-labels has a known chance rate;
- seeding the unsupervised AMM with the prior's confident mutual matches.

Descriptors are ``size x size`` colour thumbnails; with ``standardise`` every channel of
every image is shifted to mean 0 and scaled to unit variance first, which removes the
exposure and white-balance differences between the two views (a per-view gain and offset
per channel), then the vector is L2-normalised so a dot product is a cosine similarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ucvgl.services.progress import NullProgress, Progress, report_count

DEFAULT_THUMBNAIL = 24


def thumbnail(path: Path, size: int = DEFAULT_THUMBNAIL) -> np.ndarray:
    """An image as a float32 [size, size, 3] thumbnail in [0, 1] (area-averaged)."""
    with Image.open(path) as img:
        img.draft("RGB", (size * 4, size * 4))  # JPEG: decode at a reduced scale
        small = img.convert("RGB").resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def thumbnail_descriptors(
    paths: Sequence[Path],
    size: int = DEFAULT_THUMBNAIL,
    *,
    standardise: bool = True,
    progress: Progress | None = None,
    stage: str = "pixel prior",
) -> np.ndarray:
    """L2-normalised thumbnail descriptors of ``paths``: float32 [N, size * size * 3].

    Args:
        paths: image files.
        size: thumbnail side in pixels.
        standardise: per-image, per-channel zero mean and unit variance before
            normalising (removes per-view gain and offset); False keeps raw colours.
        progress: receives (stage, fraction).
    """
    progress = progress or NullProgress()
    out = np.empty((len(paths), size * size * 3), dtype=np.float32)
    for i, path in enumerate(paths):
        t = thumbnail(Path(path), size)
        if standardise:
            t = (t - t.mean(axis=(0, 1))) / (t.std(axis=(0, 1)) + 1e-3)
        v = t.reshape(-1)
        out[i] = v / max(float(np.linalg.norm(v)), 1e-12)
        if i % 256 == 0 or i == len(paths) - 1:
            report_count(progress, stage, i + 1, len(paths), "images")
            progress.check_cancelled()
    return out


def rotate_descriptors(desc: np.ndarray, size: int = DEFAULT_THUMBNAIL) -> np.ndarray:
    """Thumbnail descriptors of the same images turned by 180 degrees: [N, size*size*3].

    Turned tiles keep every image statistic of the gallery but not the alignment with
    any panorama's BEV, so they serve as decoys (see :func:`target_decoy_pairs`).
    """
    n = desc.shape[0]
    return np.ascontiguousarray(np.rot90(desc.reshape(n, size, size, 3), 2, axes=(1, 2))).reshape(
        n, -1
    )


@dataclass(frozen=True)
class DecoyLabels:
    """Mutual matches kept by a threshold chosen with a target-decoy competition.

    Ground images are matched against a gallery of the real tiles (targets) plus one decoy
    per tile (an image that cannot be the right answer). A mutual match with a decoy is a
    false match known without any label, so the number of decoy matches above a margin
    estimates the number of false target matches above it (the target-decoy method of
    proteomics); it overestimates it when a decoy still resembles its tile.

    Attributes:
        ground_idx / satellite_idx: int64 [M] the kept target pairs (tile indices < N).
        margin: float32 [M] their top1 - top2 margins over the joint gallery.
        tau: the margin threshold chosen (inf when none reaches ``max_fdr``).
        estimated_fdr: decoy matches / target matches at ``tau`` (label-free).
        mutual_targets / mutual_decoys: mutual matches with targets / decoys at any margin.
    """

    ground_idx: np.ndarray
    satellite_idx: np.ndarray
    margin: np.ndarray
    tau: float
    estimated_fdr: float
    mutual_targets: int
    mutual_decoys: int

    @property
    def num_pairs(self) -> int:
        return int(len(self.ground_idx))

    def summary(self) -> dict:
        """JSON-friendly counts."""
        return {
            "pairs": self.num_pairs,
            "tau": None if not np.isfinite(self.tau) else float(self.tau),
            "estimated_fdr": float(self.estimated_fdr),
            "mutual_targets": int(self.mutual_targets),
            "mutual_decoys": int(self.mutual_decoys),
        }


def target_decoy_pairs(
    ground: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    decoys: np.ndarray | torch.Tensor,
    *,
    max_fdr: float = 0.1,
    min_pairs: int = 1,
    device: str = "cpu",
) -> DecoyLabels:
    """Mutual matches of ``ground`` to ``targets`` whose estimated false share <= ``max_fdr``.

    Args:
        ground: [G, D] query descriptors (L2-normalised).
        targets: [N, D] real tile descriptors.
        decoys: [N, D] decoy descriptors (same statistics, no true match).
        max_fdr: the largest estimated false-discovery rate accepted.
        min_pairs: fewer kept target pairs than this count as none (tau = inf).
        device: where to match.

    Returns:
        The kept pairs and the label-free statistics of the competition.
    """
    from ucvgl.services.matching import mutual_match

    g = torch.as_tensor(
        np.asarray(ground, dtype=np.float32) if isinstance(ground, np.ndarray) else ground
    )
    t = torch.as_tensor(
        np.asarray(targets, dtype=np.float32) if isinstance(targets, np.ndarray) else targets
    )
    d = torch.as_tensor(
        np.asarray(decoys, dtype=np.float32) if isinstance(decoys, np.ndarray) else decoys
    )
    n = t.shape[0]
    m = mutual_match(g.float(), torch.cat([t.float(), d.float()]), device=device)
    gi, si, mar = m.ground_idx.numpy(), m.satellite_idx.numpy(), m.margin.numpy()
    is_decoy = si >= n
    # Scan thresholds from the most to the least confident match: keep the lowest
    # threshold whose running decoy / target ratio stays within max_fdr.
    order = np.argsort(-mar, kind="stable")
    n_dec = np.cumsum(is_decoy[order])
    n_tar = np.cumsum(~is_decoy[order])
    fdr = n_dec / np.maximum(n_tar, 1)
    ok = (fdr <= max_fdr) & (n_tar >= max(int(min_pairs), 1))
    empty = np.zeros(0, np.int64)
    if not ok.any():
        return DecoyLabels(
            empty,
            empty,
            np.zeros(0, np.float32),
            float("inf"),
            float(fdr[-1]) if len(fdr) else 1.0,
            int((~is_decoy).sum()),
            int(is_decoy.sum()),
        )
    last = int(np.flatnonzero(ok)[-1])
    tau = float(mar[order[last]])
    keep = (mar >= tau) & ~is_decoy
    return DecoyLabels(
        gi[keep].astype(np.int64),
        si[keep].astype(np.int64),
        mar[keep].astype(np.float32),
        tau,
        float(fdr[last]),
        int((~is_decoy).sum()),
        int(is_decoy.sum()),
    )
