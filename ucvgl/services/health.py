"""Label-free checks of the unsupervised stages, and a failed stage said loudly.

An unsupervised run has no ground truth to tell it that a stage learnt nothing: on a world
from another generator the CycleGAN produced textured noise, the ground <-> fake cold start
learnt nothing, AMM's first round took 0 labels, and the run still "selected" a model and
reported its recall. These checks measure each stage against a known chance rate without
any label, record what they found (``RUN_DIR/health.json``, the report's ``health``), and
decide what happens next:

``ok``
    the stage passed its floor.
``fallback``
    it failed, and the pipeline takes the documented way round it (below).
``warn``
    it failed, and the preset's ``health_checks`` is ``"warn"``: recorded, said, and the run
    goes on unchanged (the ``tiny`` test preset, whose model learns nothing by design).
``stop``
    it failed with no way round: :class:`StageFailed` is raised after the report is written;
    no model is selected, evaluated or indexed.

The checks:

- :func:`check_cyclegan` (after ``translate``): CONTENT RETENTION of the fakes. Standardised
  16 px thumbnails (:func:`ucvgl.services.pixel_prior.thumbnail_descriptors`) of each fake
  and of every BEV: the share of fakes whose nearest BEV is their own (chance 1/N). A
  generator that paints texture without the BEV's layout is at chance. Fallback: the cold
  start trains ground <-> BEV instead of ground <-> fake (the paper's Table 2: the cold
  start works without the fakes), and AMM's fake queries use the BEVs too.
- :func:`check_model_matches` (after the cold start, and on the selected model before it is
  copied): the model's mutual matches of the training pool against the real tiles plus one
  DECOY per tile (the tile turned 180 degrees: the same image statistics, aligned with no
  panorama; written once to ``RUN_DIR/decoys``). Decoy matches estimate the false share of
  tile matches (:func:`ucvgl.services.pixel_prior.target_decoy_pairs`); the check counts the
  pairs kept at an estimated false share <= :data:`MATCH_MAX_FDR`. After the cold start a
  failure falls back to the projection prior's pairs when ``RUN_DIR/prior.json`` has enough
  of them (AMM starts from those), else stops; on the selected model it always stops.

The floors are PROVISIONAL: set from the first failure reports (issue 10) and the demo
world; revisit them as measurements on more worlds come in.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ucvgl.services.progress import NullProgress, Progress, ScaledProgress
from ucvgl.shared.errors import UcvglError
from ucvgl.shared.fileio import atomic_write, atomic_write_text

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

HEALTH_FILE = "health.json"
"""``RUN_DIR/health.json``: the latest record of every check and the decisions taken."""
DECOY_DIR = "decoys"
"""``RUN_DIR/decoys``: the training tiles turned 180 degrees (``manifest.json`` + PNGs)."""
PRIOR_FILE = "prior.json"
"""``RUN_DIR/prior.json``: the projection prior's confident pairs (``{"pairs": n, ...}``)."""

ACTIONS = ("ok", "fallback", "warn", "stop")
HEALTH_MODES = ("stop", "warn")
"""A preset's ``health_checks``: act on a failed check, or only record and say it."""

# --- floors: PROVISIONAL (first measurements, issue 10); revisit with more worlds -----------
CONTENT_THUMBNAIL = 16
"""Side of the standardised thumbnails compared by the CycleGAN check."""
RETENTION_FLOOR = 0.2
"""The CycleGAN check passes when at least this share of fakes is nearest its own BEV..."""
RETENTION_CHANCE_FACTOR = 20.0
"""...and at least this many times chance (1/N)..."""
RETENTION_FLOOR_CAP = 0.8
"""...but never more than this (20/N exceeds 1 on pools of fewer than 20 panoramas)."""
MATCH_MAX_FDR = 0.2
"""The match check counts pairs kept at an estimated false-match share <= this."""
PAIRS_FLOOR = 10
"""The match check passes with at least this many such pairs..."""
PAIRS_FLOOR_SHARE = 0.01
"""...or this share of the pool, whichever is larger."""


def retention_floor(n: int) -> float:
    """The CycleGAN check's floor for ``n`` fakes: max(0.2, min(20 / n, 0.8))."""
    return float(
        max(RETENTION_FLOOR, min(RETENTION_CHANCE_FACTOR / max(int(n), 1), RETENTION_FLOOR_CAP))
    )


def pairs_floor(n: int) -> float:
    """The match check's floor for a pool of ``n`` panoramas: max(10, 0.01 n)."""
    return float(max(PAIRS_FLOOR, PAIRS_FLOOR_SHARE * int(n)))


@dataclass(frozen=True)
class StageCheck:
    """The outcome of one label-free check of one stage.

    Attributes:
        stage: the pipeline stage checked ('translate', 'cold_start', 'select').
        check: the check's name ('cyclegan_content', 'model_matches').
        passed: whether ``numbers[metric] >= floor``.
        metric: the key of ``numbers`` compared with the floor.
        numbers: what was measured (JSON numbers).
        floor: the value the metric had to reach.
        action: what happens: 'ok', 'fallback', 'warn' or 'stop' (module docstring).
        message: one paragraph: the stage, the numbers, the floor, what happens, what to try.
    """

    stage: str
    check: str
    passed: bool
    metric: str
    numbers: dict[str, Any]
    floor: float
    action: str
    message: str

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {self.action!r}")

    @property
    def value(self) -> Any:
        """The measured metric."""
        return self.numbers.get(self.metric)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (the report's ``health`` entries)."""
        return json.loads(json.dumps(asdict(self), default=_plain))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageCheck:
        """The record written by :meth:`to_dict`."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class StageFailed(UcvglError):
    """A stage's label-free check failed with no way round it; the run stopped.

    The message names the stage, the numbers, the floor and what to try.

    Attributes:
        check: the failing :class:`StageCheck`.
        health: every check of the run so far (records, as in the report).
        report_path: the report written before raising, when there is one.
    """

    def __init__(
        self,
        check: StageCheck,
        health: Sequence[StageCheck] | None = None,
        report_path: Path | None = None,
    ) -> None:
        self.check = check
        self.health = list(health) if health is not None else [check]
        self.report_path = report_path
        super().__init__(check.message)

    def result(self) -> dict[str, Any]:
        """What a failed job keeps as its result: status, health records and the failure."""
        return {
            "status": "failed",
            "health": [c.to_dict() for c in self.health],
            "failure": self.check.to_dict(),
            "report_path": None if self.report_path is None else str(self.report_path),
        }


# ------------------------------------------------------------------ the record on disk
class HealthRecords:
    """``RUN_DIR/health.json``: the latest record per (stage, check), in the order first seen.

    A resumed run reads the records: a check whose last outcome was not 'stop' is not run
    again (its decision, e.g. the CycleGAN fallback, stays the same); a 'stop' is re-run.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / HEALTH_FILE

    def _load(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return list(json.loads(self.path.read_text()).get("checks", []))

    def all(self) -> list[StageCheck]:
        """Every recorded check."""
        return [StageCheck.from_dict(d) for d in self._load()]

    def get(self, stage: str, check: str) -> StageCheck | None:
        """The latest record of ``check`` at ``stage``, or None."""
        for d in self._load():
            if d["stage"] == stage and d["check"] == check:
                return StageCheck.from_dict(d)
        return None

    def put(self, record: StageCheck) -> None:
        """Record (or replace) the outcome of a check."""
        checks = self._load()
        for i, d in enumerate(checks):
            if d["stage"] == record.stage and d["check"] == record.check:
                checks[i] = record.to_dict()
                break
        else:
            checks.append(record.to_dict())
        atomic_write_text(self.path, json.dumps({"checks": checks}, indent=2))

    def failure(self) -> StageCheck | None:
        """The first recorded check whose action is 'stop', or None."""
        return next((c for c in self.all() if c.action == "stop"), None)


def read_prior(run_dir: Path) -> dict[str, Any] | None:
    """``RUN_DIR/prior.json`` (the projection prior's pairs) or None when absent/unreadable."""
    path = Path(run_dir) / PRIOR_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("unreadable %s; the projection prior is ignored", path, exc_info=True)
        return None
    return data if isinstance(data, dict) else None


# ------------------------------------------------------------------ helpers
def _nearest(a: np.ndarray, b: np.ndarray, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``a`` the index and cosine of its nearest row of ``b`` (blockwise)."""
    import torch

    ta, tb = torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(np.ascontiguousarray(b))
    idx, best = [], []
    for start in range(0, ta.shape[0], block):
        sim = ta[start : start + block] @ tb.T
        v, i = sim.max(dim=1)
        idx.append(i)
        best.append(v)
    if not idx:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    return torch.cat(idx).numpy(), torch.cat(best).numpy()


def _action(passed: bool, mode: str, otherwise: str) -> str:
    if mode not in HEALTH_MODES:
        raise ValueError(f"health_checks must be one of {HEALTH_MODES}, got {mode!r}")
    if passed:
        return "ok"
    return "warn" if mode == "warn" else otherwise


# ------------------------------------------------------------------ CycleGAN
def assess_cyclegan(
    bev: np.ndarray,
    fake: np.ndarray,
    tiles: np.ndarray,
    *,
    stage: str = "translate",
    mode: str = "stop",
) -> StageCheck:
    """The CycleGAN check on descriptors (L2-normalised rows; see :func:`check_cyclegan`).

    Args:
        bev: [N, D] descriptors of the BEVs.
        fake: [N, D] descriptors of their fakes (row i translates BEV i).
        tiles: [S, D] descriptors of the real satellite tiles.
        stage: the stage named in the record.
        mode: the preset's ``health_checks``.
    """
    n = int(len(fake))
    if len(bev) != n:
        raise ValueError(f"need one fake per BEV: {n} fakes for {len(bev)} BEVs")
    own, _ = _nearest(fake, bev)
    retention = float((own == np.arange(n)).mean()) if n else 0.0
    _, fake_tile = _nearest(fake, tiles)
    _, bev_tile = _nearest(bev, tiles)
    numbers = {
        "fakes": n,
        "retention": round(retention, 4),
        "chance": round(1.0 / max(n, 1), 4),
        "fake_tile_similarity": round(float(fake_tile.mean()) if n else 0.0, 4),
        "bev_tile_similarity": round(float(bev_tile.mean()) if n else 0.0, 4),
    }
    numbers["domain_gain"] = round(
        numbers["fake_tile_similarity"] - numbers["bev_tile_similarity"], 4
    )
    floor = retention_floor(n)
    passed = retention >= floor
    action = _action(passed, mode, "fallback")
    head = (
        f"stage {stage}, check cyclegan_content: {100 * retention:.1f}% of {n} fake satellite "
        f"images keep their BEV's layout (their nearest BEV, by standardised "
        f"{CONTENT_THUMBNAIL} px thumbnails, is their own; chance {100 / max(n, 1):.1f}%, "
        f"floor {100 * floor:.1f}%); mean best cosine to the real tiles: fakes "
        f"{numbers['fake_tile_similarity']:.3f}, BEVs {numbers['bev_tile_similarity']:.3f}."
    )
    if action == "ok":
        message = head + " The fakes keep the BEVs' content."
    else:
        what = {
            "fallback": " The cold start trains ground <-> BEV instead of ground <-> fake (the "
            "paper's Table 2: the cold start works without fakes) and AMM's fake queries use "
            "the BEVs.",
            "warn": " The preset's health_checks is 'warn': the run goes on with the fakes.",
        }[action]
        message = (
            head + " The CycleGAN does not keep the content of the BEVs (textured noise or one "
            "image for all)."
            + what
            + " Try: more CycleGAN epochs (preset cyclegan.epochs), a larger generator, or "
            "check that the BEVs show the ground (panorama horizon, camera height)."
        )
    return StageCheck(
        stage, "cyclegan_content", passed, "retention", numbers, floor, action, message
    )


def check_cyclegan(
    bev_paths: Sequence[Path],
    fake_paths: Sequence[Path],
    tile_paths: Sequence[Path],
    *,
    stage: str = "translate",
    mode: str = "stop",
    progress: Progress | None = None,
) -> StageCheck:
    """Does each fake satellite image keep the content of its BEV? (label-free)

    Standardised, L2-normalised 16 px thumbnails of the fakes, the BEVs and the real tiles:
    ``retention`` is the share of fakes whose nearest BEV is their own (chance 1/N); the
    mean best cosine of the fakes and of the BEVs to the real tiles says how much closer
    the translation brought them to the tiles' domain (reported, not a floor).

    Args:
        bev_paths: the BEV of every panorama.
        fake_paths: the fake satellite image of every BEV, in the same order.
        tile_paths: the real satellite tiles of the pool.
        stage: the stage named in the record.
        mode: the preset's ``health_checks`` ('stop': a failure takes the fallback;
            'warn': recorded only).
        progress: receives the thumbnail reading.
    """
    from ucvgl.services.pixel_prior import thumbnail_descriptors

    progress = progress or NullProgress()
    size = CONTENT_THUMBNAIL

    def desc(paths: Sequence[Path], a: float, b: float) -> np.ndarray:
        return thumbnail_descriptors(
            list(paths), size, progress=ScaledProgress(progress, a, b), stage="cyclegan check"
        )

    return assess_cyclegan(
        desc(bev_paths, 0.0, 0.33),
        desc(fake_paths, 0.33, 0.66),
        desc(tile_paths, 0.66, 1.0),
        stage=stage,
        mode=mode,
    )


# ------------------------------------------------------------------ model matches
def assess_matches(
    ground: torch.Tensor | np.ndarray,
    tiles: torch.Tensor | np.ndarray,
    decoys: torch.Tensor | np.ndarray,
    *,
    threshold_T: float,
    stage: str,
    final: bool = False,
    mode: str = "stop",
    prior: dict[str, Any] | None = None,
    device: str = "cpu",
) -> StageCheck:
    """The match check on embeddings (see :func:`check_model_matches`).

    Args:
        ground: [G, D] the pool's query embeddings.
        tiles: [N, D] the real tiles' embeddings.
        decoys: [N, D] the decoys' embeddings (tile i turned 180 degrees).
        threshold_T: the curriculum's start T (AMM round 1's margin threshold).
        stage: the stage named in the record ('cold_start' or 'select').
        final: the selected model (a failure always stops).
        mode: the preset's ``health_checks``.
        prior: ``RUN_DIR/prior.json`` or None: after the cold start, a failure falls back
            to the prior's pairs when it has at least the floor of them.
        device: where the matching runs.
    """
    import torch

    from ucvgl.services.matching import mutual_match
    from ucvgl.services.pixel_prior import target_decoy_pairs
    from ucvgl.services.training.amm import label_free_criterion

    g = torch.as_tensor(
        np.asarray(ground, np.float32) if isinstance(ground, np.ndarray) else ground
    )
    t = torch.as_tensor(np.asarray(tiles, np.float32) if isinstance(tiles, np.ndarray) else tiles)
    d = torch.as_tensor(
        np.asarray(decoys, np.float32) if isinstance(decoys, np.ndarray) else decoys
    )
    matches = mutual_match(g.float(), t.float(), device=device)
    criterion = label_free_criterion(matches, threshold_T)
    td = target_decoy_pairs(g, t, d, max_fdr=MATCH_MAX_FDR, device=device)
    n = int(g.shape[0])
    numbers = {
        "pool": n,
        "tiles": int(t.shape[0]),
        "mutual": int(matches.num_pairs),
        "amm_labels": int(criterion["confident"]),
        "threshold_T": float(threshold_T),
        "mutual_targets": int(td.mutual_targets),
        "mutual_decoys": int(td.mutual_decoys),
        "pairs_at_fdr": int(td.num_pairs),
        "max_fdr": MATCH_MAX_FDR,
        "estimated_fdr": round(float(td.estimated_fdr), 4),
        "tau": None if not np.isfinite(td.tau) else round(float(td.tau), 6),
    }
    floor = pairs_floor(n)
    passed = numbers["pairs_at_fdr"] >= floor
    prior_pairs = int((prior or {}).get("pairs", 0) or 0)
    if prior is not None:
        numbers["prior_pairs"] = prior_pairs
    otherwise = "stop" if final or prior_pairs < floor else "fallback"
    action = _action(passed, mode, otherwise)
    what = "the selected model" if final else f"the model after {stage.replace('_', ' ')}"
    head = (
        f"stage {stage}, check model_matches: {what} keeps {numbers['pairs_at_fdr']} pairs of "
        f"the {n}-panorama pool at an estimated false-match share <= {MATCH_MAX_FDR:.2f} "
        f"(floor {floor:.0f}); mutual matches {numbers['mutual_targets']} with real tiles and "
        f"{numbers['mutual_decoys']} with decoys (the tiles turned 180 degrees); AMM round 1 "
        f"would take {numbers['amm_labels']} labels of {numbers['mutual']} mutual pairs at "
        f"T={threshold_T:.3f}."
    )
    if action == "ok":
        message = head + " The model matches panoramas to tiles far better than to decoys."
    else:
        chance = (
            " It matches panoramas to real tiles hardly better than to decoys that show no "
            "panorama's place: it has learnt nothing usable"
        )
        if action == "fallback":
            what_next = (
                f". AMM starts from the projection prior's {prior_pairs} confident pairs "
                f"({PRIOR_FILE}) instead."
            )
        elif action == "warn":
            what_next = ". The preset's health_checks is 'warn': the run goes on."
        elif final:
            what_next = (
                ". No model is selected, evaluated or indexed: a model at chance is no result."
            )
        else:
            what_next = ", and the projection prior has too few confident pairs " + (
                f"({prior_pairs}) to start AMM from." if prior is not None else "(none ran)."
            )
        message = (
            head
            + chance
            + what_next
            + " Try: check that the tiles and panoramas show the same places (tiles north "
            "up, panorama headings, the same area), more cold-start epochs (preset "
            "cross_epochs), the pipeline's projection prior, or a few known pairs "
            "(--mode semi)."
        )
    return StageCheck(
        stage, "model_matches", passed, "pairs_at_fdr", numbers, floor, action, message
    )


def decoy_paths(
    tile_paths: Sequence[Path], out_dir: Path, size: int, *, write: bool = True
) -> list[Path]:
    """The decoy of every tile (turned 180 degrees, ``size`` px PNG) in ``out_dir``.

    Decoys are written once: ``manifest.json`` names the tiles and the size, and a folder
    made for other tiles or another size is rewritten. Each decoy is the tile exactly as the
    satellite encoder reads it (resized to ``size``), turned, so the two differ only by the
    turn.

    Args:
        tile_paths: the real tiles.
        out_dir: ``RUN_DIR/decoys``.
        size: the preset's satellite size.
        write: False only lists the paths (another rank writes them).
    """
    from PIL import Image

    from ucvgl.services.datasets.images import load_rgb
    from ucvgl.services.training.data import pil_to_uint8

    out_dir = Path(out_dir)
    paths = [out_dir / f"{i:07d}.png" for i in range(len(tile_paths))]
    digest = hashlib.sha1()
    for p in tile_paths:
        digest.update(str(p).encode() + b"\0")
    manifest = {"count": len(paths), "size": int(size), "tiles_sha1": digest.hexdigest()}
    manifest_file = out_dir / "manifest.json"
    if not write:
        return paths
    if manifest_file.exists() and json.loads(manifest_file.read_text()) == manifest:
        return paths
    for src, dst in zip(tile_paths, paths, strict=True):
        array = pil_to_uint8(load_rgb(Path(src)), (size, size)).permute(1, 2, 0).numpy()
        turned = Image.fromarray(np.ascontiguousarray(array[::-1, ::-1]))
        atomic_write(dst, lambda fh, im=turned: im.save(fh, format="PNG", compress_level=1))
    atomic_write_text(manifest_file, json.dumps(manifest))
    return paths


def pool_and_decoys(
    model: torch.nn.Module,
    split,
    preset,
    *,
    label: str,
    decoy_dir: Path,
    device: str = "cpu",
    cache_dir: Path | None = None,
    fake_paths: list[Path] | None = None,
    write_decoys: bool = True,
    progress: Progress | None = None,
):
    """The pool matched by ``model`` (AMM's ``match_pool``) and its decoys' embeddings.

    Returns:
        (``PoolMatch`` of the pool's queries against the real tiles, [N, D] embeddings of
        the decoys, each tile turned 180 degrees, written once to ``decoy_dir``).
    """
    from ucvgl.services.training.amm import match_pool
    from ucvgl.services.training.distributed import barrier
    from ucvgl.services.training.embed import embed_split

    progress = progress or NullProgress()
    pool = match_pool(
        model,
        split,
        preset,
        device=device,
        cache_dir=cache_dir,
        progress=ScaledProgress(progress, 0.0, 0.6, label),
        fake_paths=fake_paths,
    )
    decoys = decoy_paths(
        list(split.satellite_paths), decoy_dir, preset.satellite_size, write=write_decoys
    )
    barrier()  # under DDP rank 0 writes the decoys; the others wait for them
    d = embed_split(
        model,
        None,
        "satellite",
        paths=decoys,
        batch_size=preset.eval_batch_size,
        device=device,
        cache_dir=cache_dir,
        progress=ScaledProgress(progress, 0.6, 1.0, label),
    )
    return pool, d


def check_model_matches(
    model: torch.nn.Module,
    split,
    preset,
    *,
    stage: str,
    decoy_dir: Path,
    threshold_T: float,
    device: str = "cpu",
    cache_dir: Path | None = None,
    fake_paths: list[Path] | None = None,
    prior: dict[str, Any] | None = None,
    final: bool = False,
    write_decoys: bool = True,
    progress: Progress | None = None,
) -> StageCheck:
    """Does ``model`` match the training pool better than chance? (label-free)

    Embeds the pool's queries (panoramas, plus their fake / BEV images as AMM's
    ``match_pool`` does when ``fake_paths`` is given), the real tiles and their decoys
    (written once to ``decoy_dir`` and embedded with the satellite encoder; all cached in
    ``cache_dir``), then runs :func:`assess_matches`.

    Args:
        model: the ``TwoViewModel`` holding the weights to check.
        split: the training pool (``ViewSplit``).
        preset: sizes and the ``health_checks`` mode.
        stage: 'cold_start' or 'select'.
        decoy_dir: ``RUN_DIR/decoys``.
        threshold_T: the curriculum's start T.
        fake_paths: AMM's query images (fakes or BEVs) or None.
        prior: ``RUN_DIR/prior.json`` or None.
        final: the selected model (a failure always stops).
        write_decoys: False when another rank writes the decoys.
    """
    pool, d = pool_and_decoys(
        model,
        split,
        preset,
        label=f"{stage} check",
        decoy_dir=decoy_dir,
        device=device,
        cache_dir=cache_dir,
        fake_paths=fake_paths,
        write_decoys=write_decoys,
        progress=progress,
    )
    return assess_matches(
        pool.ground,
        pool.satellite,
        d,
        threshold_T=threshold_T,
        stage=stage,
        final=final,
        mode=preset.health_checks,
        prior=prior,
        device=device,
    )


def format_checks(checks: Sequence[dict[str, Any] | StageCheck]) -> list[str]:
    """One line per check: stage, check, metric value vs floor, action (for the CLI)."""
    lines = []
    for c in checks:
        c = c if isinstance(c, StageCheck) else StageCheck.from_dict(c)
        value = c.value
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        lines.append(
            f"{c.stage:<11} {c.check:<17} {c.metric} {shown} (floor {c.floor:.3g}) -> {c.action}"
        )
    return lines
