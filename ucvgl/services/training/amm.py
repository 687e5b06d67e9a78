"""Adaptive Mutual Matching (paper Sec. 3.3): pseudo-label rounds with a curriculum.

Each round embeds the training pool (ground panoramas and REAL satellite tiles) with the
current model, keeps the mutual nearest neighbours whose margin (top1 - top2 of the
panorama's similarities) reaches the curriculum threshold tau(round), writes them to
``labels/round_NNN.csv``, and trains both encoders on them, CONTINUING from the current
weights at a low learning rate with unlabelled images as extra negatives. The next round
re-labels with the improved model.

The model is selected WITHOUT ground truth: every candidate (the starting model and the
model after each round) gets a label-free score computed on the unlabelled training pool
(:func:`label_free_criterion`); ground truth, where a dataset has it, is only used to
report how many pseudo-labels were correct.

The number of rounds follows the same label-free signal: after the preset's
``amm_rounds`` rounds, extra rounds (up to ``amm_max_rounds``, at the last regular round's
threshold) run while the count of confident mutual matches, measured before each round,
grew by at least ``preset.amm_growth_bar`` (``amm_min_growth``, default
``min_improvement``; relative) since the previous round. The result says
why the rounds stopped (``amm_stop_reason``, one of :data:`AMM_STOP_REASONS`).

Preset switches: ``amm_schedule`` "continuous" trains the rounds as one run (one cosine
over all rounds, the AdamW state carried from the start stage and from round to round);
the ablations ``mutual_matching`` (False: one-sided nearest tiles), ``threshold_filter``
(False: tau 0) and ``curriculum`` ("fixed": tau = T; "frozen": round 1's labels in every
round) change how a round labels (:func:`round_threshold`, :func:`pseudo_label_round`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ucvgl.services.datasets.index import ViewSplit
from ucvgl.services.presets import Preset
from ucvgl.services.progress import NullProgress, Progress, ScaledProgress
from ucvgl.services.training.distributed import DistInfo, all_reduce_mean
from ucvgl.services.training.embed import embed_split
from ucvgl.services.training.pair_stage import pair_items, stage_tile_neighbours, train_on_items
from ucvgl.services.training.trainer import (
    CHECKPOINT,
    StageConfig,
    load_weights_into,
    stage_done,
)
from ucvgl.shared.fileio import atomic_write, atomic_write_text

LABEL_COLUMNS = ("ground_id", "satellite_id", "margin", "similarity", "correct")

AMM_STOP_REASONS = ("fixed", "converged", "max_rounds", "only_round")
"""Why the rounds stopped: no ``amm_max_rounds`` (exactly ``amm_rounds`` rounds), the
confident-match count stopped growing, it still grew at ``amm_max_rounds``, or the caller
asked for the rounds up to ``only_round`` only."""


def round_dir(out_dir: Path, round_index: int) -> Path:
    """The folder of AMM round ``round_index`` (1-based)."""
    return Path(out_dir) / f"amm_round_{round_index:03d}"


def labels_path(run_dir: Path, round_index: int) -> Path:
    """``run_dir/labels/round_NNN.csv``."""
    return Path(run_dir) / "labels" / f"round_{round_index:03d}.csv"


def label_free_criterion(matches, tau_ref: float) -> dict[str, float]:
    """A model-selection score computable without any ground truth.

    The number of mutual nearest-neighbour pairs of the unlabelled pool whose margin
    reaches ``tau_ref`` (confident, unambiguous matches), with their mean margin as a
    tie-break: ``score = confident + mean_margin_of_confident`` (margins are < 1).

    Args:
        matches: ``MutualMatches`` of the whole training pool.
        tau_ref: a FIXED margin (the curriculum's start T), so scores of different rounds
            are comparable.
    """
    margin = matches.margin.float()
    confident = margin >= tau_ref
    n_conf = int(confident.sum())
    mean_conf = float(margin[confident].mean()) if n_conf else 0.0
    return {
        "mutual": int(matches.num_pairs),
        "confident": n_conf,
        "tau_ref": float(tau_ref),
        "mean_margin": float(margin.mean()) if matches.num_pairs else 0.0,
        "score": n_conf + mean_conf,
    }


def select_by_criterion(candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """The candidate with the highest label-free ``criterion['score']`` (later wins ties).

    Args:
        candidates: dicts with at least ``name``, ``path`` and ``criterion``.
    """
    if not candidates:
        raise ValueError("no candidate models to select from")
    best = max(range(len(candidates)), key=lambda i: (candidates[i]["criterion"]["score"], i))
    return candidates[best]


def write_labels_csv(
    path: Path,
    split: ViewSplit,
    ground_idx: np.ndarray,
    satellite_idx: np.ndarray,
    margin: np.ndarray,
    similarity: np.ndarray,
    positives: np.ndarray | None,
) -> Path:
    """Write pseudo-labels as CSV (ground_id, satellite_id, margin, similarity, correct).

    ``correct`` is 1/0 where the ground truth of the panorama is known, empty otherwise.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LABEL_COLUMNS)
    for g, s, m, sim in zip(ground_idx, satellite_idx, margin, similarity, strict=True):
        correct = ""
        if positives is not None and positives[g] >= 0:
            correct = int(positives[g] == s)
        writer.writerow(
            [split.ground_ids[g], split.satellite_ids[s], f"{m:.6f}", f"{sim:.6f}", correct]
        )
    return atomic_write_text(path, buf.getvalue())


@dataclass
class PoolMatch:
    """Mutual matches of the training pool and the embeddings they came from."""

    matches: Any
    ground: torch.Tensor
    satellite: torch.Tensor


def match_pool(
    model: torch.nn.Module,
    split: ViewSplit,
    preset: Preset,
    *,
    device: str,
    cache_dir: Path | None,
    progress: Progress,
    fake_paths: list[Path] | None = None,
) -> PoolMatch:
    """Embed the pool's panoramas and real tiles and find their mutual nearest neighbours.

    With ``fake_paths`` (one fake satellite image per panorama, the cold start's CycleGAN
    translations of the BEVs) each panorama's query is the normalised sum of its ground
    embedding and its fake's satellite-encoder embedding: the fake lives in the tiles'
    domain, so this label-free query matches real tiles far better than the panorama alone
    (measured on the 1,000-location synthetic world after the cpu cold start: 360 of 465
    mutual matches correct instead of 215 of 348).
    """
    from ucvgl.services.matching import mutual_match

    g = embed_split(
        model,
        split,
        "ground",
        batch_size=preset.eval_batch_size,
        device=device,
        cache_dir=cache_dir,
        progress=ScaledProgress(progress, 0.0, 0.5),
    )
    s = embed_split(
        model,
        split,
        "satellite",
        batch_size=preset.eval_batch_size,
        device=device,
        cache_dir=cache_dir,
        progress=ScaledProgress(progress, 0.5, 1.0),
    )
    if fake_paths is not None:
        if len(fake_paths) != split.num_ground:
            raise ValueError(
                f"need one fake satellite image per panorama: {len(fake_paths)} fakes for "
                f"{split.num_ground} panoramas"
            )
        f = embed_split(
            model,
            None,
            "fake",
            paths=fake_paths,
            batch_size=preset.eval_batch_size,
            device=device,
            cache_dir=cache_dir,
        )
        g = torch.nn.functional.normalize(g + f, dim=1)
    # On a CPU, 2048-row blocks: the 4096 default's block (~400 MB with its temporaries)
    # made the round's peak grow 33% from 2,000 to 8,000 locations (6% with 2048;
    # benchmarks/memory.py, issue 12).
    block = 2048 if torch.device(device).type == "cpu" else 4096
    return PoolMatch(mutual_match(g, s, device=device, block_size=block), g, s)


def _merge_known(
    pseudo_g: np.ndarray, pseudo_s: np.ndarray, known: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Known pairs first, then the pseudo-pairs that touch no known image.

    Returns (ground, satellite, keep_mask over the pseudo-pairs).
    """
    if known is None or len(known[0]) == 0:
        return pseudo_g, pseudo_s, np.ones(len(pseudo_g), dtype=bool)
    kg, ks = known
    keep = ~np.isin(pseudo_g, kg) & ~np.isin(pseudo_s, ks)
    return (
        np.concatenate([kg, pseudo_g[keep]]).astype(np.int64),
        np.concatenate([ks, pseudo_s[keep]]).astype(np.int64),
        keep,
    )


def round_threshold(preset: Preset, threshold_T: float, round_index: int, rounds: int) -> float:
    """The margin threshold tau of regular round ``round_index`` (1-based) of ``rounds``.

    The paper's curriculum T (1 + cos(pi (r-1) / R)) / 2; T in every round with
    ``preset.curriculum`` "fixed" or "frozen"; 0 (keep every pair) without the threshold
    filter.
    """
    from ucvgl.services.matching import curriculum_threshold

    if not preset.threshold_filter:
        return 0.0
    if preset.curriculum != "cosine":
        return float(threshold_T)
    return curriculum_threshold(float(threshold_T), round_index - 1, rounds)


def round_stage_config(
    preset: Preset,
    round_index: int,
    rounds: int,
    initial_path: Path,
    out_dir: Path,
    *,
    extra: bool,
    seed: int,
    schedule_offset: int = 0,
) -> tuple[StageConfig, Path | None]:
    """The optimisation settings of AMM round ``round_index`` and whose AdamW moments it
    starts from (None: a fresh optimiser).

    "per_round": a stage of its own at ``amm_lr`` (warm-up + cosine, budget cycles).
    "continuous": epochs ``o + (r-1) k .. o + r k - 1`` of one cosine over
    ``o + R k`` epochs (k = ``amm_epochs_per_round``, o = ``schedule_offset``, the epochs of
    the same cosine that ran before AMM: the semi-supervised warm-up; R = ``rounds``, or
    ``preset.amm_max_rounds`` when more rounds may run), starting from the previous round's
    optimiser (round 1: the start stage's, next to ``initial_path``).
    """
    cfg = StageConfig.from_preset(
        preset,
        f"AMM round {round_index}" + (" (extra)" if extra else ""),
        epochs=preset.amm_epochs_per_round,
        lr=preset.amm_lr,
        seed=seed * 100 + round_index,
    )
    if preset.amm_schedule != "continuous":
        return cfg, None
    k, o = preset.amm_epochs_per_round, int(schedule_offset)
    span = max(rounds, preset.amm_max_rounds or 0)
    cfg = dataclasses.replace(
        cfg,
        warmup_fraction=0.0,
        max_epochs=None,
        epoch_window=(o + (round_index - 1) * k, o + span * k),
    )
    previous = (
        Path(initial_path).parent if round_index == 1 else round_dir(out_dir, round_index - 1)
    )
    return cfg, previous / CHECKPOINT


def confident_growth(before: int, now: int) -> float:
    """Relative growth of the confident-match count from ``before`` to ``now``.

    From 0 any growth is infinite (and 0 -> 0 no growth at all).
    """
    if before > 0:
        return (now - before) / before
    return float("inf") if now > 0 else 0.0


def run_amm(
    model: torch.nn.Module,
    split: ViewSplit,
    preset: Preset,
    threshold_T: float,
    out_dir: Path,
    run_dir: Path,
    *,
    initial_path: Path,
    rounds: int | None = None,
    known_pairs: tuple[np.ndarray, np.ndarray] | None = None,
    positives: np.ndarray | None = None,
    device: str = "cpu",
    progress: Progress | None = None,
    dist_info: DistInfo | None = None,
    seed: int = 0,
    only_round: int | None = None,
    fake_paths: list[Path] | None = None,
    schedule_offset: int = 0,
) -> dict[str, Any]:
    """Run (or resume) the pseudo-label rounds and select a model without ground truth.

    Args:
        model: the ``TwoViewModel`` holding the starting weights (cold start or semi warm-up).
        split: the training pool.
        preset: sizes, epochs per round, learning rate, batch composition, and
            ``amm_max_rounds`` / ``amm_min_growth`` (extra rounds, see the module).
        threshold_T: curriculum start T; round r of R uses tau = T (1 + cos(pi (r-1)/R)) / 2;
            extra rounds keep round R's tau.
        out_dir: stage folders ``amm_round_NNN`` and the embedding cache.
        run_dir: receives ``labels/round_NNN.csv``.
        initial_path: the starting weights file (a selection candidate).
        rounds: number of regular rounds (default ``preset.amm_rounds``).
        known_pairs: (ground, tile) index arrays always kept as labels (semi-supervised).
        positives: ground truth used ONLY to count correct pseudo-labels in the records.
        only_round: run rounds up to this one and stop (the worker's "amm_round" job); a
            round past the regular ones runs only when the confident-match count earns it.
        fake_paths: fake satellite image of every panorama: match with ground + fake
            queries (see :func:`match_pool`); None matches panoramas alone (the paper).
        schedule_offset: epochs of the "continuous" cosine that ran before the rounds
            (the semi-supervised warm-up; see :func:`round_stage_config`).

    Returns:
        {"rounds": [per-round records], "candidates": [...], "selected": {...} or None,
        "amm_stop_reason": one of :data:`AMM_STOP_REASONS`, "amm_stop": {"reason",
        "rounds_run", "regular_rounds", "max_rounds", "growth" (the last measured relative
        growth of the confident count, or None), "min_growth" (the bar it was held to),
        "detail"}}.
    """
    progress = progress or NullProgress()
    rounds = preset.amm_rounds if rounds is None else rounds
    max_rounds = max(rounds, preset.amm_max_rounds or 0)
    out_dir, run_dir = Path(out_dir), Path(run_dir)
    cache_dir = out_dir / "cache"
    last = max_rounds if only_round is None else min(only_round, max_rounds)
    reduce_device = dist_info.device if dist_info is not None else device
    records: list[dict[str, Any]] = []
    candidates = [{"name": "start", "path": str(initial_path), "criterion": None}]
    pool: PoolMatch | None = None  # a match of the current model's pool, when at hand
    stop: dict[str, Any] | None = None
    for r in range(1, last + 1):
        extra = r > rounds
        sub = ScaledProgress(progress, (r - 1) / (last + 1), r / (last + 1), f"AMM round {r}")
        rdir = round_dir(out_dir, r)
        record_file = rdir / "record.json"
        if extra and not record_file.exists():  # not decided yet: does the count still grow?
            if pool is None:
                pool = match_pool(
                    model,
                    split,
                    preset,
                    device=device,
                    cache_dir=cache_dir,
                    progress=ScaledProgress(sub, 0.0, 0.3),
                    fake_paths=fake_paths,
                )
            before = int(records[-1]["criterion_before"]["confident"])
            now = label_free_criterion(pool.matches, threshold_T)["confident"]
            # One decision on every rank, whatever the ranks' embeddings did.
            growth = all_reduce_mean(confident_growth(before, now), reduce_device)
            if growth < preset.amm_growth_bar:
                stop = _amm_stop(
                    "converged",
                    records,
                    rounds,
                    max_rounds,
                    growth,
                    preset.amm_growth_bar,
                    f"the confident mutual matches went {before} -> {now} before round {r} "
                    f"({growth:+.1%} < amm_min_growth {preset.amm_growth_bar:.1%}): "
                    f"round {r} not run",
                )
                break
        if stage_done(rdir) and record_file.exists():
            load_weights_into(model, rdir / "model.pt")
            record = json.loads(record_file.read_text())
        else:
            record = _label_round(
                model=model,
                split=split,
                preset=preset,
                threshold_T=threshold_T,
                round_index=r,
                rounds=rounds,
                stage_dir=rdir,
                run_dir=run_dir,
                known_pairs=known_pairs,
                positives=positives,
                device=device,
                cache_dir=cache_dir,
                progress=ScaledProgress(sub, 0.0, 0.3),
                fake_paths=fake_paths,
                tau=float(records[-1]["threshold"]) if extra else None,
                pool=pool,
            )
            labels = np.load(rdir / "labels.npz")
            pairs = (labels["ground"], labels["satellite"])
            items = pair_items(split, pairs, preset, seed=seed * 7919 + r)
            cfg, optimizer_state = round_stage_config(
                preset,
                r,
                rounds,
                initial_path,
                out_dir,
                extra=extra,
                seed=seed,
                schedule_offset=schedule_offset,
            )
            result = train_on_items(
                model,
                split,
                items,
                cfg,
                rdir,
                preset,
                smoothing=preset.smoothing_for("pseudo"),
                optimizer_state=optimizer_state,
                tile_neighbours=stage_tile_neighbours(
                    model, split, preset, rdir, device=device, cache_dir=cache_dir
                ),
                device=device,
                progress=ScaledProgress(sub, 0.3, 1.0),
                dist_info=dist_info,
                state={
                    "round": r,
                    "rounds": rounds,
                    "extra": extra,
                    "threshold": record["threshold"],
                    "labels": {"ground": pairs[0].tolist(), "satellite": pairs[1].tolist()},
                },
            )
            record["extra"] = extra
            record["items"] = {"total": len(items), "positive": items.num_positive}
            record["train"] = result.history
            record["budget"] = result.budget
            atomic_write_text(record_file, json.dumps(record, indent=1))
        pool = None  # the model changed
        records.append(record)
        candidates[-1]["criterion"] = record["criterion_before"]
        candidates.append({"name": f"round {r}", "path": str(rdir / "model.pt"), "criterion": None})
    if pool is None:
        pool = match_pool(
            model,
            split,
            preset,
            device=device,
            cache_dir=cache_dir,
            progress=ScaledProgress(progress, last / (last + 1), 1.0, "AMM selection"),
            fake_paths=fake_paths,
        )
    candidates[-1]["criterion"] = label_free_criterion(pool.matches, threshold_T)
    if records:
        records[-1]["criterion_after"] = candidates[-1]["criterion"]
    if stop is None:
        stop = _rounds_done_stop(
            records, rounds, max_rounds, only_round, candidates[-1]["criterion"], preset
        )
    selected = select_by_criterion(candidates)
    return {
        "rounds": records,
        "candidates": candidates,
        "selected": selected,
        "amm_stop_reason": stop["reason"],
        "amm_stop": stop,
    }


def _amm_stop(
    reason: str,
    records: list[dict[str, Any]],
    rounds: int,
    max_rounds: int,
    growth: float | None,
    min_growth: float,
    detail: str,
) -> dict[str, Any]:
    """The record of why the AMM rounds stopped (see :func:`run_amm`)."""
    return {
        "reason": reason,
        "rounds_run": len(records),
        "regular_rounds": rounds,
        "max_rounds": max_rounds,
        "growth": None if growth is None or not np.isfinite(growth) else float(growth),
        "min_growth": min_growth,
        "detail": detail,
    }


def _rounds_done_stop(
    records: list[dict[str, Any]],
    rounds: int,
    max_rounds: int,
    only_round: int | None,
    final: dict[str, Any],
    preset: Preset,
) -> dict[str, Any]:
    """Why the rounds stopped when every round the loop allowed has run."""
    n = len(records)
    growth = None
    if records:
        growth = confident_growth(
            int(records[-1]["criterion_before"]["confident"]), final["confident"]
        )
    args = (records, rounds, max_rounds, growth, preset.amm_growth_bar)
    if n < max_rounds and only_round is not None and only_round <= n:
        return _amm_stop("only_round", *args, f"asked for the rounds up to {only_round} only")
    if max_rounds == rounds:
        return _amm_stop("fixed", *args, f"a fixed budget of {rounds} rounds")
    change = ""
    if growth is not None:
        change = (
            f": the confident mutual matches went {records[-1]['criterion_before']['confident']}"
            f" -> {final['confident']} over round {n} ({growth:+.1%})"
        )
    return _amm_stop("max_rounds", *args, f"reached amm_max_rounds {max_rounds}{change}")


def _label_round(
    *,
    model: torch.nn.Module,
    split: ViewSplit,
    preset: Preset,
    threshold_T: float,
    round_index: int,
    rounds: int,
    stage_dir: Path,
    run_dir: Path,
    known_pairs: tuple[np.ndarray, np.ndarray] | None,
    positives: np.ndarray | None,
    device: str,
    cache_dir: Path | None,
    progress: Progress,
    fake_paths: list[Path] | None = None,
    tau: float | None = None,
    pool: PoolMatch | None = None,
) -> dict[str, Any]:
    """Pseudo-label the pool for one round (or reload the labels of an interrupted round).

    Args:
        model: the current ``TwoViewModel``.
        split: the training pool.
        preset: sizes for embedding the pool.
        threshold_T: the curriculum's start T.
        round_index: this round, 1-based.
        rounds: the number of rounds of the curriculum.
        stage_dir: the round's folder (``amm_round_NNN``): ``labels.npz``, ``record.json``.
        run_dir: receives ``labels/round_NNN.csv``.
        known_pairs: (ground, tile) index arrays always kept as labels (semi-supervised).
        positives: ground truth used only to count correct pseudo-labels.
        device: where the pool is embedded and matched.
        cache_dir: the embedding cache.
        progress: reports the embedding and matching.
        fake_paths: a fake satellite image per panorama (see :func:`match_pool`), or None.
        tau: this round's margin threshold (None: :func:`round_threshold`; an extra round
            past ``rounds`` passes the last regular round's).
        pool: the pool already matched with the current model (None: match it here).

    Returns:
        The round's record (see :func:`pseudo_label_round`).
    """
    record_file = stage_dir / "record.json"
    if record_file.exists() and (stage_dir / "labels.npz").exists():
        return json.loads(record_file.read_text())
    stage_dir.mkdir(parents=True, exist_ok=True)
    if pool is None:
        pool = match_pool(
            model,
            split,
            preset,
            device=device,
            cache_dir=cache_dir,
            progress=progress,
            fake_paths=fake_paths,
        )
    if tau is None:
        tau = round_threshold(preset, threshold_T, round_index, rounds)
    frozen = None
    if preset.curriculum == "frozen" and round_index > 1:
        with np.load(round_dir(stage_dir.parent, 1) / "labels.npz") as first:
            frozen = (first["ground"].astype(np.int64), first["satellite"].astype(np.int64))
    record, train_g, train_s = pseudo_label_round(
        pool.matches,
        pool.ground,
        pool.satellite,
        split,
        round_index=round_index,
        tau=tau,
        threshold_T=threshold_T,
        labels_csv=labels_path(run_dir, round_index),
        known_pairs=known_pairs,
        positives=positives,
        one_sided=not preset.mutual_matching,
        frozen_pairs=frozen,
    )
    # Atomic: under DDP every rank computes (and writes) the same labels.
    atomic_write(
        stage_dir / "labels.npz", lambda fh: np.savez(fh, ground=train_g, satellite=train_s)
    )
    atomic_write_text(record_file, json.dumps(record, indent=1))
    return record


def pseudo_label_round(
    matches,
    ground: torch.Tensor,
    satellite: torch.Tensor,
    split: ViewSplit,
    *,
    round_index: int,
    tau: float,
    threshold_T: float,
    labels_csv: Path,
    known_pairs: tuple[np.ndarray, np.ndarray] | None = None,
    positives: np.ndarray | None = None,
    one_sided: bool = False,
    frozen_pairs: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Filter mutual matches by ``tau``, add known pairs, write the CSV, build the record.

    Args:
        matches: ``MutualMatches`` of the pool.
        ground / satellite: the embeddings [G, D] / [S, D] the matches came from.
        split: the pool (ids for the CSV).
        round_index: 1-based round number.
        tau: this round's margin threshold.
        threshold_T: the curriculum's start T (the selection criterion's fixed margin).
        labels_csv: where the labels are written.
        known_pairs: (ground, tile) pairs always kept (semi-supervised).
        positives: ground truth, used only for the ``correct`` counts.
        one_sided: label every panorama with its nearest tile (``MutualMatches.one_sided``)
            instead of the mutual pairs (ablation "w/o mutual matching").
        frozen_pairs: (ground, tile) pairs used instead of any matching (the "frozen"
            curriculum: round 1's labels); ``tau`` is then only recorded.

    Returns:
        (record, training ground indices, training tile indices): known pairs first, then
        the pseudo-pairs that touch no known image. ``labels`` and ``correct`` count the
        pseudo-pairs only; ``known_labels`` the known ones.
    """
    from ucvgl.services.matching import margin_histogram

    if frozen_pairs is not None:
        pg, ps = (np.asarray(a, dtype=np.int64) for a in frozen_pairs)
    else:
        kept = (matches.one_sided() if one_sided else matches).filter(tau)
        pg, ps = kept.ground_idx.numpy(), kept.satellite_idx.numpy()
    train_g, train_s, keep = _merge_known(pg, ps, known_pairs)
    pg, ps = pg[keep], ps[keep]
    margin_all = (matches.ground_top1 - matches.ground_top2).numpy()
    sim = (ground[train_g] * satellite[train_s]).sum(1).numpy()
    write_labels_csv(labels_csv, split, train_g, train_s, margin_all[train_g], sim, positives)
    correct = total_known = None
    if positives is not None and (np.asarray(positives) >= 0).any():
        pos = np.asarray(positives)
        known_truth = pos[pg] >= 0
        correct = int((pos[pg][known_truth] == ps[known_truth]).sum())
        total_known = int(known_truth.sum())
    record = {
        "round": round_index,
        "threshold": float(tau),
        "mutual": matches.num_pairs,
        "source": "frozen" if frozen_pairs is not None else ("nearest" if one_sided else "mutual"),
        "labels": int(len(pg)),
        "correct": correct,
        "known_labels": 0 if known_pairs is None else int(len(known_pairs[0])),
        "label_precision": None if not total_known else correct / total_known,
        "margin_histogram": margin_histogram(matches.margin),
        "labels_path": str(labels_csv),
        "criterion_before": label_free_criterion(matches, threshold_T),
    }
    return record, train_g, train_s
