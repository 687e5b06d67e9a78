"""Does a source model (``--init-from``) know the target better than raw pixels? (label-free)

An unsupervised run started from a trained model would skip the cold start and mine its
first pseudo-labels with that model. Measured on a target of another layout and camera
(``benchmarks/adaptation.py``, issue 13), a source model can be at chance there while its
first round still finds a few confident pairs, so "better than chance" is the wrong bar:
the run would start AMM from a miner weaker than its own cold start.

The bar here is the projection prior (``ucvgl.services.pixel_prior``), the label-free
pairs that raw BEV pixels give on the same pool: the source's mutual matches of the pool
(panoramas, with their fakes when AMM queries use them, against the real tiles) compete
with the same tiles turned 180 degrees (decoys), and the pairs kept at the prior's
estimated false share (``preset.prior_max_fdr``) are counted. The source is used as it is
when it keeps at least as many pairs as the prior did (and at least the match check's
floor); otherwise the cold start runs, starting from the source's weights instead of
random ones. No ground truth is read. ``preset.init_cold_start`` chooses: "auto" (this
check), "skip" (AMM from the source, never a cold start) or "always".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ucvgl.services.presets import INIT_COLD_STARTS
from ucvgl.services.progress import Progress

SOURCE_CHECK_FILE = "source_check.json"
"""``RUN_DIR/source_check.json``: the decision and its numbers (kept: a resumed run reuses it)."""


@dataclass(frozen=True)
class SourceDecision:
    """Whether a run from a source model runs the cold start first.

    Attributes:
        cold_start: True: the cold start runs from the source's weights before AMM.
        setting: the preset's ``init_cold_start``.
        source_pairs: pairs the source keeps at ``max_fdr`` (None when not measured).
        prior_pairs: the projection prior's pairs (None: no prior in this run).
        floor: the match check's floor for this pool.
        max_fdr: the estimated false share both counts are taken at.
        mutual_targets / mutual_decoys: the source's mutual matches with tiles / decoys.
        reason: one sentence for the log and the report.
        satellite_scale: the tile scale kept (``EncoderConfig.satellite_scale``; None: as
            they are).
        scale_pairs: pairs the source keeps at each tried scale (None: one scale, none tried).
    """

    cold_start: bool
    setting: str
    source_pairs: int | None
    prior_pairs: int | None
    floor: float
    max_fdr: float
    mutual_targets: int | None
    mutual_decoys: int | None
    reason: str
    satellite_scale: float | None = None
    scale_pairs: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    setting: str,
    *,
    source_pairs: int | None,
    prior_pairs: int | None,
    floor: float,
    max_fdr: float,
    mutual_targets: int | None = None,
    mutual_decoys: int | None = None,
) -> SourceDecision:
    """The decision from the counts (see the module).

    Args:
        setting: "auto", "skip" or "always".
        source_pairs: the source's pairs at ``max_fdr`` (needed for "auto").
        prior_pairs: the prior's pairs, or None when the run has no projection prior.
        floor: the fewest pairs a usable model keeps (``health.pairs_floor``).
        max_fdr: the false share the counts are taken at (for the reason).
    """
    if setting not in INIT_COLD_STARTS:
        raise ValueError(f"init_cold_start must be one of {INIT_COLD_STARTS}, got {setting!r}")
    common = dict(
        setting=setting,
        source_pairs=source_pairs,
        prior_pairs=prior_pairs,
        floor=float(floor),
        max_fdr=float(max_fdr),
        mutual_targets=mutual_targets,
        mutual_decoys=mutual_decoys,
    )
    if setting == "skip":
        return SourceDecision(False, reason="init_cold_start 'skip': AMM from the source", **common)
    if setting == "always":
        return SourceDecision(
            True, reason="init_cold_start 'always': the cold start from the source", **common
        )
    assert source_pairs is not None
    bar = max(float(floor), float(prior_pairs or 0))
    what = f"the projection prior's {prior_pairs}" if prior_pairs is not None else "the floor"
    if source_pairs >= bar:
        reason = (
            f"the source keeps {source_pairs} pairs of the pool at an estimated false share "
            f"<= {max_fdr:.2f}, at least {what} ({bar:.0f}): AMM starts from the source"
        )
        return SourceDecision(False, reason=reason, **common)
    reason = (
        f"the source keeps {source_pairs} pairs of the pool at an estimated false share "
        f"<= {max_fdr:.2f}, fewer than {what} ({bar:.0f}): it knows this data less than "
        f"raw pixels do, so the cold start runs first, from the source's weights"
    )
    return SourceDecision(True, reason=reason, **common)


def measure_source(
    model: torch.nn.Module,
    split,
    preset,
    *,
    decoy_dir: Path,
    device: str = "cpu",
    cache_dir: Path | None = None,
    fake_paths: list[Path] | None = None,
    write_decoys: bool = True,
    progress: Progress | None = None,
) -> tuple[int, int, int]:
    """The source's target-decoy competition on the pool (no ground truth).

    Args:
        model: the ``TwoViewModel`` holding the source's weights.
        split: the training pool (``ViewSplit``).
        preset: sizes, ``eval_batch_size`` and ``prior_max_fdr``.
        decoy_dir: ``RUN_DIR/decoys`` (shared with the stage checks).
        fake_paths: AMM's extra query images (fakes or BEVs), or None.

    Returns:
        (pairs kept at ``preset.prior_max_fdr``, mutual matches with real tiles, mutual
        matches with decoys).
    """
    from ucvgl.services.health import pool_and_decoys
    from ucvgl.services.pixel_prior import target_decoy_pairs

    pool, d = pool_and_decoys(
        model,
        split,
        preset,
        label="source check",
        decoy_dir=decoy_dir,
        device=device,
        cache_dir=cache_dir,
        fake_paths=fake_paths,
        write_decoys=write_decoys,
        progress=progress,
    )
    td = target_decoy_pairs(
        pool.ground, pool.satellite, d, max_fdr=preset.prior_max_fdr, device=device
    )
    return int(td.num_pairs), int(td.mutual_targets), int(td.mutual_decoys)
