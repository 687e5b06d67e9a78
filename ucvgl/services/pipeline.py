"""The whole learning pipeline, stage by stage, resumable, with one report.

Unsupervised: BEV projection -> CycleGAN -> fake satellites -> cold start (intra-view,
then ground <-> fake) -> AMM rounds -> label-free model selection -> evaluation -> index.
Semi-supervised: warm-up on ``gt_ratio`` of the true pairs -> AMM rounds (known pairs
kept) -> selection -> evaluation -> index. Supervised: all true pairs -> evaluation ->
index.

Every stage writes its outputs under the run folder and is skipped (or continued from
its last checkpoint) when the same run is started again. ``RUN_DIR/report.json`` holds
the mode, preset, dataset counts, recall (percent), per-round pseudo-label statistics and
the time of every stage.

Started from a trained model (``init_from``, ``ucvgl.services.init_source``), a run loads
that run's selected model instead of random weights: unsupervised runs (adaptation) run AMM
from it, after a label-free source check (``ucvgl.services.source_check``, preset
``init_cold_start``): a source that keeps fewer confident pairs of the new pool than the
projection prior gets the cold start first, from its own weights (the projection, prior,
CycleGAN and fakes run on the new data where the preset uses them: they are label-free);
semi-supervised runs train the known pairs from it (the paper's "Ours-base*"); supervised
runs fine-tune it. A source whose panoramas had another vertical layout reads the new ones
through the rows spanning its own elevations (``ucvgl.services.panorama_view``, preset
``init_match_layout``).

Evaluation splits (``ucvgl.services.eval_splits``): ``eval_splits`` names the held-out
splits evaluated (CVACT ``val``/``test``, VIGOR ``same_area``/``cross_area``, ...); none of
them shares panoramas (or, one-to-one layouts, tiles) with the training pool, and
``report.json``'s ``recall_per_split`` gives each split's recall.

Label-free stage checks (``ucvgl.services.health``) run after ``translate`` (does the
CycleGAN keep the BEVs' content? if not, the cold start and AMM use the BEVs instead of the
fakes), after the cold start and on the selected model before it is copied (does the model
match the pool better than decoy tiles?). Their records are in ``RUN_DIR/health.json`` and
the report (``status``, ``health``, ``failure``); a check that stops the run raises
:class:`ucvgl.services.health.StageFailed` after writing the report, and no model is
selected, evaluated or indexed.

The preset is resolved for the dataset's format (``Preset.for_format``: the paper presets'
per-dataset sizes, threshold and field of view). Its ablation switches (paper Tab. 2) shape
the unsupervised stages: ``use_bev`` False feeds the panoramas themselves to the CycleGAN
(and skips the projection prior), ``use_fake`` False skips the CycleGAN and pairs each
panorama with its BEV, ``intra_view`` / ``cross_view`` False skip a cold-start stage (the
CycleGAN is then trained only when AMM queries need the fakes).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ucvgl.services.datasets.index import CrossViewDataset, ViewSplit
from ucvgl.services.eval_splits import (
    EVAL_SPLITS,
    check_eval_splits,
    check_not_trained_on,
    dataset_split_name,
    parse_eval_splits,
    vigor_protocol,
)
from ucvgl.services.preset_overrides import OverrideError, resolve_preset, settings_json
from ucvgl.services.presets import Preset, get_preset
from ucvgl.services.progress import NullProgress, Progress, ScaledProgress
from ucvgl.services.selection_diagnostics import DIAGNOSTICS_FILE, merge_into_selection
from ucvgl.shared.errors import ConfigError
from ucvgl.shared.fileio import atomic_write_text

if TYPE_CHECKING:
    from ucvgl.services.health import StageCheck
    from ucvgl.services.init_source import SourceModel
    from ucvgl.services.source_check import SourceDecision

log = logging.getLogger(__name__)

MODES = ("unsupervised", "semi", "supervised")
STAGES = {
    "unsupervised": (
        "project",
        "prior",
        "cyclegan",
        "translate",
        "cold_start",
        "amm",
        "select",
        "evaluate",
        "index",
    ),
    "semi": ("semi_warmup", "amm", "select", "evaluate", "index"),
    "supervised": ("supervised", "select", "evaluate", "index"),
}
STAGE_WEIGHTS = {
    "project": 0.03,
    "prior": 0.01,
    "cyclegan": 0.15,
    "translate": 0.02,
    "source_check": 0.01,
    "cold_start": 0.3,
    "semi_warmup": 0.2,
    "supervised": 0.8,
    "amm": 0.4,
    "select": 0.01,
    "evaluate": 0.05,
    "index": 0.04,
}
RUN_FILE = "run.json"
REPORT_FILE = "report.json"
TIMES_FILE = "stage_times.json"
SELECTED_MODEL = Path("model") / "selected.pt"
INIT_MODEL = Path("stages") / "init" / "model.pt"
"""The run's copy of its ``init_from`` source model (AMM's 'start' candidate)."""
GROUND_VIEW_FILE = "ground_view.json"
"""The rows of the target's panoramas a run from a source model reads (``_ground_view``)."""
EVALUATION_FILE = "evaluation.json"
PRIOR_FILE = "prior.json"
PRIOR_PAIRS_FILE = "prior_pairs.npz"
WEIGHTS_FILE = "weights.json"


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, default=_json_default))


def training_split_name(dataset: CrossViewDataset) -> str:
    """'train' when the dataset has it, else its only split."""
    if "train" in dataset.splits:
        return "train"
    if len(dataset.splits) == 1:
        return next(iter(dataset.splits))
    raise ConfigError(
        f"dataset {dataset.name!r} has no 'train' split (splits: {sorted(dataset.splits)})"
    )


def evaluation_split_name(dataset: CrossViewDataset) -> str | None:
    """'val', else 'test', else None (no held-out split to evaluate on)."""
    for name in ("val", "test"):
        if name in dataset.splits:
            return name
    return None


def dataset_protocol(dataset: CrossViewDataset) -> str | None:
    """The VIGOR protocol ``dataset`` was read with (None for other formats)."""
    if dataset.format != "vigor":
        return None
    return str(dataset.load_options.get("protocol") or "same_area")


def default_eval_splits(dataset: CrossViewDataset, train_name: str) -> list[str]:
    """The evaluation split when none is asked for: 'val', else 'test' (VIGOR: its protocol).

    None when that is the training split itself (a dataset with one split): it is not
    evaluated, since evaluating a split never trains on it.
    """
    name = evaluation_split_name(dataset)
    if name is None or name == train_name:
        return []
    protocol = dataset_protocol(dataset)
    return [protocol] if protocol is not None and name == "test" else [name]


def dataset_for_eval_splits(
    dataset: CrossViewDataset, eval_splits: list[str] | None
) -> CrossViewDataset:
    """``dataset``, read again with the VIGOR protocol that ``eval_splits`` needs."""
    needed = vigor_protocol(eval_splits) if dataset.format == "vigor" else None
    if needed is None or needed == dataset_protocol(dataset):
        return dataset
    from ucvgl.services.datasets import load_dataset

    options = {**dataset.load_options, "protocol": needed}
    log.info("reading %s again with VIGOR protocol %s", dataset.root, needed)
    return load_dataset(dataset.root, "vigor", name=dataset.name, **options)


class PipelineRun:
    """One run folder: its dataset, preset, mode, model, and resumable stages.

    Args:
        dataset: the dataset index.
        run_dir: the run folder (created).
        mode: 'unsupervised', 'semi' or 'supervised'.
        preset: a preset name or a preset object (``resolve_preset``), either taken for the
            dataset's format (``Preset.for_format``: fields changed by overrides are kept).
        gt_ratio: share of known true pairs in mode 'semi'.
        device: 'cpu', 'cuda', 'cuda:N' or None (settings).
        progress: progress / cancellation.
        seed: seeds model initialisation, data order and the semi-supervised pair choice.
        init_from: a finished run folder whose selected model is the starting point
            (instead of random weights or the cold start); None = from scratch.
        init_model_id: the service's Model row of ``init_from`` (recorded in the report).
        eval_splits: evaluation split names (see ``ucvgl.services.eval_splits``); None =
            'val', else 'test'. A VIGOR dataset is read again with the protocol they need.
    """

    def __init__(
        self,
        dataset: CrossViewDataset,
        run_dir: Path,
        *,
        mode: str = "unsupervised",
        preset: str | Preset = "cpu",
        gt_ratio: float = 0.1,
        device: str | None = None,
        progress: Progress | None = None,
        seed: int = 0,
        init_from: str | Path | None = None,
        init_model_id: int | None = None,
        eval_splits: str | list[str] | None = None,
    ) -> None:
        from ucvgl.shared.config import get_settings

        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if not 0.0 < float(gt_ratio) <= 1.0:
            raise ConfigError(f"gt_ratio must be in (0, 1], got {gt_ratio}")
        asked = parse_eval_splits(eval_splits)
        if asked is not None:
            check_eval_splits(dataset.format, asked)
            dataset = dataset_for_eval_splits(dataset, asked)
        self.dataset = dataset
        self.run_dir = Path(run_dir)
        self.mode = mode
        # a name or a Preset, taken for the dataset's format (for_format keeps overrides)
        self.preset = resolve_preset(preset, dataset.format)
        self.gt_ratio = float(gt_ratio)
        self.device = device or get_settings().torch_device()
        self.progress = progress or NullProgress()
        self.seed = int(seed)
        self.train_name = training_split_name(dataset)
        self.eval_names = (
            asked if asked is not None else default_eval_splits(dataset, self.train_name)
        )
        self._check_eval_splits()
        self.eval_name = self.eval_names[0] if self.eval_names else None
        self.source: SourceModel | None = None
        self.init_model_id = init_model_id
        if init_from is not None:
            from ucvgl.services.init_source import check_fits

            self.source = self._resolve_source(init_from)
            check_fits(self.source, self.preset)
        self._model = None
        self._weights: dict[str, Any] | None = None
        from ucvgl.services.training.distributed import init_distributed

        self.dist = init_distributed(self.device)
        if self.dist.enabled:
            self.device = self.dist.device
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._check_run_file()
        if self.source is not None:
            self._copy_source()
        self.ground_view: dict[str, Any] | None = self._ground_view()
        self.times: dict[str, float] = self._load_times()

    # ------------------------------------------------------------------ bookkeeping
    def _resolve_source(self, init_from: str | Path) -> SourceModel:
        """The source model; a run that copied it already goes on without the source."""
        from ucvgl.services.init_source import resolve_source, source_from_dict

        try:
            return resolve_source(init_from)
        except ConfigError:
            run_file, copy = self.run_dir / RUN_FILE, self.run_dir / INIT_MODEL
            saved = json.loads(run_file.read_text()) if run_file.exists() else {}
            record = saved.get("init_source")
            same = record and Path(record["run_dir"]) == Path(init_from).expanduser().resolve()
            if not (same and copy.exists()):
                raise
            log.warning("source run %s is gone; this run goes on from its copy %s", init_from, copy)
            return source_from_dict(record)

    def _ground_view(self) -> dict[str, Any] | None:
        """The record of the panorama rows the model reads (a source of another layout).

        Decided once (``ucvgl.services.panorama_view``) and kept in
        ``RUN_DIR/ground_view.json``: a resumed run reads the panoramas as it began,
        even if the source's dataset has gone since.
        """
        if self.source is None or not self.preset.init_match_layout:
            return None
        path = self.run_dir / GROUND_VIEW_FILE
        if path.exists():
            return json.loads(path.read_text())
        from ucvgl.services.panorama_view import source_view_rows

        record, _ = source_view_rows(
            self.source.dataset, self.source.encoder.get("ground_rows"), self.dataset
        )
        if self.dist.is_main:
            write_json(path, record)
        return record

    @property
    def ground_rows(self) -> tuple[float, float] | None:
        """The rows of the panoramas the model reads (``ground_view``), or None: whole."""
        rows = (self.ground_view or {}).get("rows")
        return None if rows is None else (float(rows[0]), float(rows[1]))

    def _check_eval_splits(self) -> None:
        """Each evaluation split exists, has ground truth's shape and is not trained on."""
        train = self.train_split
        for name in self.eval_names:
            split_name = dataset_split_name(self.dataset.format, name)
            if split_name not in self.dataset.splits:
                hint = ""
                if self.dataset.format == "cvact" and split_name == "test":
                    hint = " (CVACT_test is read from ANU_data_test/{streetview,satview_polish}/)"
                raise ConfigError(
                    f"eval_split {name!r}: dataset {self.dataset.name!r} at {self.dataset.root} "
                    f"has no split {split_name!r}{hint}; its splits: {sorted(self.dataset.splits)}"
                )
            if split_name == self.train_name:
                raise ConfigError(
                    f"eval_split {name!r} is the training split of dataset {self.dataset.name!r}"
                )
            check_not_trained_on(self.dataset.format, train, self.dataset.split(split_name), name)

    def _check_run_file(self) -> None:
        path = self.run_dir / RUN_FILE
        mine = {
            "mode": self.mode,
            "preset": self.preset.name,
            "format": self.dataset.format,
            "data": str(self.dataset.root),
            "gt_ratio": self.gt_ratio if self.mode == "semi" else None,
            "seed": self.seed,
            "init_from": None if self.source is None else str(self.source.run_dir),
            "vigor_protocol": dataset_protocol(self.dataset),
        }
        if path.exists():
            saved = json.loads(path.read_text())
            if self.dataset.format == "vigor":
                saved.setdefault("vigor_protocol", "same_area")
            # every identity field but the data path (a moved dataset may resume)
            clash = [k for k in mine if k != "data" and saved.get(k) != mine[k]]
            if clash:
                raise ConfigError(
                    f"run folder {self.run_dir} belongs to another run "
                    f"({', '.join(f'{k}={saved.get(k)!r}' for k in clash)}); use another --out "
                    f"or the same settings to resume it"
                )
        elif self.dist.is_main:
            extra = {
                "eval_splits": self.eval_names,
                "init_source": None if self.source is None else self.source.to_dict(),
                "preset_settings": self.preset.to_dict(),
            }
            write_json(path, {**mine, **extra})

    def _copy_source(self) -> None:
        """Copy the source model to ``INIT_MODEL`` once (the run's own starting point)."""
        from ucvgl.services.init_source import file_sha256

        assert self.source is not None
        target = self.run_dir / INIT_MODEL
        if self.dist.is_main and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(self.source.model_file, tmp)
            tmp.replace(target)
        self._barrier()
        if file_sha256(target) != self.source.sha256:
            log.warning(
                "%s changed since this run copied it to %s; the run goes on from its copy",
                self.source.model_file,
                target,
            )

    @property
    def init_path(self) -> Path | None:
        """The run's copy of its source model, or None (no ``init_from``)."""
        return None if self.source is None else self.run_dir / INIT_MODEL

    def stages(self) -> tuple[str, ...]:
        """The stages of this run: the mode's, with a source check when it has a source.

        An unsupervised run from a source keeps the label-free inputs AMM uses on the new
        data: the projection prior (``projection_prior``) and the fake satellites
        (``amm_fake_query``, so projection, CycleGAN and translation); then, unless
        ``init_cold_start`` is "skip", the source check and the cold start (which returns
        at once when the check keeps the source as it is).
        """
        if self.source is None or self.mode != "unsupervised":
            return STAGES[self.mode]
        if self.preset.init_cold_start != "skip":
            stages = list(STAGES["unsupervised"])
            stages.insert(stages.index("cold_start"), "source_check")
            return tuple(stages)
        before: list[str] = []
        if self.preset.projection_prior or self.preset.amm_fake_query:
            before.append("project")
        if self.preset.projection_prior:
            before.append("prior")
        if self.preset.amm_fake_query:
            before += ["cyclegan", "translate"]
        return (*before, "amm", "select", "evaluate", "index")

    def _load_times(self) -> dict[str, float]:
        path = self.run_dir / TIMES_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def _timed(self, name: str, fn: Callable[[Progress], Any], progress: Progress) -> Any:
        began = time.perf_counter()
        try:
            return fn(progress)
        finally:
            self.times[name] = round(self.times.get(name, 0.0) + time.perf_counter() - began, 3)
            if self.dist.is_main:
                write_json(self.run_dir / TIMES_FILE, self.times)

    def _record_check(self, check: StageCheck) -> StageCheck:
        """Record a stage check in ``health.json``; on 'stop' write the report and raise."""
        from ucvgl.services.health import HealthRecords, StageFailed

        records = HealthRecords(self.run_dir)
        if self.dist.is_main:
            records.put(check)
        if check.action != "ok":
            log.warning("%s", check.message)
        if check.action == "stop":
            self.write_report()
            raise StageFailed(check, records.all() or [check], self.run_dir / REPORT_FILE)
        return check

    def _cyclegan_check(self, bev: list[Path], fakes: list[Path]) -> StageCheck:
        """The CycleGAN content check, run once per run folder (its decision persists)."""
        from ucvgl.services.health import HealthRecords, check_cyclegan

        stored = HealthRecords(self.run_dir).get("translate", "cyclegan_content")
        if stored is not None:
            return stored
        check = check_cyclegan(
            bev,
            fakes,
            list(self.train_split.satellite_paths),
            mode=self.preset.health_checks,
        )
        return self._record_check(check)

    def _model_check(self, stage: str, *, final: bool) -> StageCheck:
        """The decoy match check of ``self.model`` at ``stage`` (re-run after a 'stop')."""
        from ucvgl.services.health import (
            DECOY_DIR,
            HealthRecords,
            check_model_matches,
            read_prior,
        )

        stored = HealthRecords(self.run_dir).get(stage, "model_matches")
        if stored is not None and stored.action != "stop":
            return stored
        check = check_model_matches(
            self.model,
            self.train_split,
            self.preset,
            stage=stage,
            decoy_dir=self.run_dir / DECOY_DIR,
            threshold_T=self.preset.threshold_for(self.dataset.format),
            device=self.device,
            cache_dir=self.embedding_cache_dir,
            fake_paths=self.amm_queries(),
            prior=None if final else read_prior(self.run_dir),
            final=final,
            write_decoys=self.dist.is_main,
        )
        return self._record_check(check)

    @property
    def train_split(self) -> ViewSplit:
        return self.dataset.split(self.train_name)

    @property
    def embedding_cache_dir(self) -> Path:
        """One folder of cached embeddings for the run's checks, evaluation and index.

        Entries are keyed by the model's weights (``embed_split``), so the selection check,
        the evaluation and the index reuse each other's embeddings of an unchanged model
        instead of decoding every image again.
        """
        return self.stages_dir / "cache"

    @property
    def stages_dir(self) -> Path:
        return self.run_dir / "stages"

    def backbone_weights(self) -> dict[str, Any]:
        """The starting weights of each encoder: {'ground'|'satellite': ResolvedWeights}.

        Resolved once (``preset.weights``, ``Settings.weights_dir``, the Hugging Face hub
        cache) and recorded in ``RUN_DIR/weights.json``. A run with a source model
        (``init_from``) starts from that instead (source ``init_from``: its copy and sha256),
        so it needs no backbone weights.

        Raises:
            ConfigError: the weights cannot be had (names the tag, where it looked, and
                ``--weights none``).
        """
        if self._weights is None:
            from ucvgl.services.models.weights import ResolvedWeights, resolve_weights
            from ucvgl.shared.config import get_settings

            if self.source is not None:
                resolved = ResolvedWeights(
                    self.preset.backbone,
                    "init_from",
                    file=self.init_path,
                    sha256=self.source.sha256,
                )
            else:
                resolved = resolve_weights(
                    self.preset.backbone,
                    self.preset.weights,
                    weights_dir=get_settings().weights_dir,
                )
            # both encoders have the preset's backbone and start from the same weights
            self._weights = {"ground": resolved, "satellite": resolved}
            if self.dist.is_main:
                write_json(
                    self.run_dir / WEIGHTS_FILE,
                    {view: w.to_dict() for view, w in self._weights.items()},
                )
        return self._weights

    @property
    def model(self):
        """The ``TwoViewModel`` of this run (built from the preset with the run's seed)."""
        if self._model is None:
            import torch

            from ucvgl.services.models import build_model

            if self.source is not None or (self.run_dir / SELECTED_MODEL).exists():
                # random init, then the source's weights (below) or the selected model's
                # (every stage after 'select' loads it): the backbone's pretrained file is
                # not needed, and may not be on this machine (a run trained elsewhere)
                start = {"weights": None, "weights_tag": None}
            else:
                weights = self.backbone_weights()["ground"]
                start = {"weights": weights.file, "weights_tag": weights.tag}
            start["ground_rows"] = self.ground_rows  # the source's layout (init_from)
            start["satellite_scale"] = self._saved_satellite_scale()  # its tile scale
            config = self.preset.encoder_config().model_copy(update=start)
            torch.manual_seed(self.seed)
            self._model = build_model(config)
            if self.init_path is not None:
                from ucvgl.services.training.trainer import load_weights_into

                load_weights_into(self._model, self.init_path)
        return self._model

    def _barrier(self) -> None:
        from ucvgl.services.training.distributed import barrier

        barrier()

    # ------------------------------------------------------------------ stages
    def project(self, progress: Progress) -> list[Path]:
        """BEV projection of the training panoramas (``run_dir/bev``)."""
        from ucvgl.services.projection import project_dataset

        params = self.bev_params()
        if self.dist.is_main:
            project_dataset(
                self.dataset,
                self.run_dir / "bev",
                params,
                splits=[self.train_name],
                device=self.device,
                progress=progress,
            )
        self._barrier()
        return project_dataset(
            self.dataset,
            self.run_dir / "bev",
            params,
            splits=[self.train_name],
            device="cpu",
            progress=NullProgress(),
        )

    def bev_params(self):
        """The projection of this run: the format's defaults with the preset's
        ``bev_fov_deg`` and ``bev_size``; a synthetic world's ``synth_meta.json`` field of
        view (its camera geometry) still wins."""
        from ucvgl.services.projection import bev_params_for_dataset
        from ucvgl.services.projection.defaults import SYNTH_META_FILE, params_from_synth_meta

        params = bev_params_for_dataset(self.dataset, out_size=self.preset.bev_size)
        if self.preset.bev_fov_deg is None:
            return params
        probe = replace(params, fov_deg=float(self.preset.bev_fov_deg))
        meta_path = Path(self.dataset.root) / SYNTH_META_FILE
        if meta_path.is_file():  # readable: bev_params_for_dataset has just read it
            probe = params_from_synth_meta(json.loads(meta_path.read_text()), probe, meta_path)
        return replace(params, fov_deg=probe.fov_deg)

    def prior(self, progress: Progress) -> dict[str, Any] | None:
        """The projection prior's pseudo-pairs (``run_dir/prior.json``, ``prior_pairs.npz``).

        Standardised thumbnails of every training panorama's BEV are matched against the
        tiles' and against decoy tiles (the tiles turned 180 degrees); the mutual matches
        kept are those whose estimated false share (decoy matches / tile matches above
        their margin) is at most ``preset.prior_max_fdr``. No label and no learning: the
        pairs exist only where the projection alone already finds the tile unambiguously.
        None when the preset has no projection prior (or no BEV: ``use_bev`` False).
        """
        from ucvgl.services.pixel_prior import (
            rotate_descriptors,
            target_decoy_pairs,
            thumbnail_descriptors,
        )

        if not (self.preset.projection_prior and self.preset.use_bev):
            return None
        path = self.run_dir / PRIOR_FILE
        if path.exists():
            return json.loads(path.read_text())
        bev = self.project(NullProgress())
        size = self.preset.prior_thumbnail
        g = thumbnail_descriptors(bev, size, progress=ScaledProgress(progress, 0.0, 0.5))
        s = thumbnail_descriptors(
            self.train_split.satellite_paths, size, progress=ScaledProgress(progress, 0.5, 0.9)
        )
        labels = target_decoy_pairs(
            g, s, rotate_descriptors(s, size), max_fdr=self.preset.prior_max_fdr
        )
        summary: dict[str, Any] = {
            **labels.summary(),
            "thumbnail": size,
            "max_fdr": self.preset.prior_max_fdr,
            "pool": int(len(bev)),
            "correct": None,
        }
        positives = self.train_split.positives
        if positives is not None and (np.asarray(positives) >= 0).any():
            pos = np.asarray(positives)
            summary["correct"] = int((pos[labels.ground_idx] == labels.satellite_idx).sum())
        if self.dist.is_main:
            pairs_path = self.run_dir / PRIOR_PAIRS_FILE
            np.savez(pairs_path, ground=labels.ground_idx, satellite=labels.satellite_idx)
            write_json(path, summary)
        self._barrier()
        progress.update("prior", 1.0, f"{labels.num_pairs} pairs")
        return summary

    def prior_pairs(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The projection prior's (ground, tile) index arrays, or None (no prior / no pair)."""
        summary = self.prior(NullProgress())
        if not summary or not summary["pairs"]:
            return None
        with np.load(self.run_dir / PRIOR_PAIRS_FILE) as data:
            return data["ground"].astype(np.int64), data["satellite"].astype(np.int64)

    def translation_inputs(self) -> list[Path]:
        """The CycleGAN's domain A: the BEV projections, or the panoramas (``use_bev`` off)."""
        if self.preset.use_bev:
            return self.project(NullProgress())
        return list(self.train_split.ground_paths)

    def needs_fakes(self) -> bool:
        """Whether any stage uses the CycleGAN's fakes (``use_fake`` and a consumer)."""
        if not self.preset.use_fake:
            return False
        return self.preset.cross_view or self.amm_uses_queries()

    def cyclegan(self, progress: Progress) -> Path | None:
        """Train (or resume) the BEV -> satellite CycleGAN (``run_dir/cyclegan``).

        None (nothing trained) when no stage uses the fakes (:meth:`needs_fakes`).
        """
        from ucvgl.services.cyclegan import CHECKPOINT_NAME, train_cyclegan

        if not self.needs_fakes():
            progress.update("cyclegan", 1.0, "skipped: no stage uses fake satellite images")
            return None
        bev = self.translation_inputs()
        out = self.run_dir / "cyclegan"
        if self.dist.is_main:
            cfg = self.preset.cyclegan_config(seed=self.seed)
            train_cyclegan(
                bev,
                list(self.train_split.satellite_paths),
                cfg,
                out,
                device=self.device,
                progress=progress,
            )
        self._barrier()
        return out / CHECKPOINT_NAME

    def translate(self, progress: Progress) -> list[Path]:
        """Fake satellite image of every training panorama (``run_dir/fake``).

        An empty list when no stage uses the fakes (:meth:`needs_fakes`).
        """
        from ucvgl.services.cyclegan import translate

        ckpt = self.cyclegan(NullProgress())  # returns at once when it has finished
        if ckpt is None:
            return []
        bev = self.translation_inputs()
        out = self.run_dir / "fake"
        if self.dist.is_main:
            translate(
                ckpt,
                bev,
                out,
                device=self.device,
                out_size=self.preset.satellite_size,
                progress=progress,
            )
        self._barrier()
        fakes = translate(ckpt, bev, out, device="cpu", out_size=self.preset.satellite_size)
        self._cyclegan_check(bev, fakes)
        return fakes

    def cross_view_images(self) -> list[Path]:
        """Each panorama's partner in the cold start: its fake, or its BEV.

        The BEV when ``use_fake`` is off (paper Tab. 2b), or when the CycleGAN check failed
        with action 'fallback' (the fakes do not keep their inputs' content; the decision
        is kept in ``health.json``; without BEVs, ``use_bev`` off, the inputs themselves).
        """
        if not self.preset.use_fake:
            return self.project(NullProgress())
        fakes = self.translate(NullProgress())  # returns at once when they exist
        if self._cyclegan_check(self.translation_inputs(), fakes).action == "fallback":
            return self.translation_inputs()
        return fakes

    def amm_uses_queries(self) -> bool:
        """Whether AMM adds fake (or BEV) images to its panorama queries."""
        uses_cold_start = self.mode == "unsupervised" or (
            self.mode == "semi" and self.preset.semi_cold_start and self.source is None
        )
        return uses_cold_start and self.preset.amm_fake_query

    def amm_queries(self) -> list[Path] | None:
        """The images added to AMM's panorama queries (``preset.amm_fake_query``), or None."""
        if self.amm_uses_queries():
            return self.cross_view_images()
        return None

    def cold_start(self, progress: Progress) -> Path:
        """Intra-view then ground <-> fake (or BEV) training; returns the weights file.

        Unsupervised runs then check the model against decoy tiles (``health``). A run from
        a source model trains it from the source's weights, or, when its source check keeps
        the source as it is, loads the source and returns the run's copy of it.
        """
        from ucvgl.services.training.cold_start import cold_start, cold_start_model_path
        from ucvgl.services.training.trainer import load_weights_into

        if self.source is not None and not self.source_check(NullProgress()).cold_start:
            assert self.init_path is not None
            load_weights_into(self.model, self.init_path)
            return self.init_path  # AMM starts from the source as it is
        final = cold_start_model_path(self.preset, self.stages_dir)
        if final.exists():
            load_weights_into(self.model, final)
        else:
            cold_start(
                self.model,
                self.train_split,
                self.cross_view_images() if self.preset.cross_view else None,
                self.preset,
                self.stages_dir,
                device=self.device,
                progress=progress,
                dist_info=self.dist,
                seed=self.seed,
            )
        if self.mode == "unsupervised":  # semi continues on known pairs
            self._model_check("cold_start", final=False)
        return final

    def source_check(self, progress: Progress) -> SourceDecision:
        """Whether this run from a source model runs the cold start first (label-free).

        Measured once (``RUN_DIR/source_check.json``; ``ucvgl.services.source_check``) on
        the source's weights; a run without a source, or not unsupervised, never does.
        """
        from ucvgl.services.health import DECOY_DIR, pairs_floor, read_prior
        from ucvgl.services.source_check import (
            SOURCE_CHECK_FILE,
            SourceDecision,
            decide,
            measure_source,
        )

        path = self.run_dir / SOURCE_CHECK_FILE
        if self.source is None or self.mode != "unsupervised":
            raise ConfigError(f"run {self.run_dir}: only unsupervised runs from a source check it")
        if path.exists():
            decision = SourceDecision(**json.loads(path.read_text()))
            self._set_satellite_scale(decision.satellite_scale)
            return decision
        setting = self.preset.init_cold_start
        prior = read_prior(self.run_dir) if self.preset.projection_prior else None
        counts: dict[str, int | None] = {"source_pairs": None}
        scales = tuple(float(v) for v in self.preset.init_tile_scales)
        measured: dict[float, tuple[int, int, int]] = {}
        if setting == "auto" or len(scales) > 1:
            from ucvgl.services.training.trainer import load_weights_into

            assert self.init_path is not None
            load_weights_into(self.model, self.init_path)
            for scale in scales:  # label-free: the source's pairs against decoys per scale
                self._set_satellite_scale(scale)
                measured[scale] = measure_source(
                    self.model,
                    self.train_split,
                    self.preset,
                    decoy_dir=self.run_dir / DECOY_DIR,
                    device=self.device,
                    cache_dir=self.embedding_cache_dir,
                    fake_paths=self.amm_queries(),
                    write_decoys=self.dist.is_main,
                    progress=progress,
                )
        # the most pairs; a tie goes to the scale nearest 1 (the tiles as they are)
        best = max(scales, key=lambda v: (measured[v][0], -abs(math.log(v)))) if measured else 1.0
        self._set_satellite_scale(best)
        if setting == "auto":
            pairs, targets, decoys = measured[best]
            counts = {"source_pairs": pairs, "mutual_targets": targets, "mutual_decoys": decoys}
        decision = decide(
            setting,
            prior_pairs=None if prior is None else int(prior.get("pairs", 0) or 0),
            floor=pairs_floor(len(self.train_split.ground_paths)),
            max_fdr=self.preset.prior_max_fdr,
            **counts,
        )
        if len(scales) > 1:
            decision = replace(
                decision,
                satellite_scale=self.model.config.satellite_scale,
                scale_pairs={f"{v:g}": measured[v][0] for v in scales},
                reason=f"{decision.reason}; tile scale {best:g} (pairs per scale: "
                + ", ".join(f"{v:g}: {measured[v][0]}" for v in scales)
                + ")",
            )
        log.info("source check: %s", decision.reason)
        progress.update("source_check", 1.0, "cold start" if decision.cold_start else "skip")
        if self.dist.is_main:
            write_json(path, decision.to_dict())
        self._barrier()
        return decision

    def _set_satellite_scale(self, scale: float | None) -> None:
        """Read tiles at ``scale`` times their extent from now on (1 or None: as they are)."""
        value = None if scale is None or float(scale) == 1.0 else float(scale)
        model = self.model
        model.config = model.config.model_copy(update={"satellite_scale": value})

    def _saved_satellite_scale(self) -> float | None:
        """The tile scale the source check kept (``source_check.json``), or None."""
        from ucvgl.services.source_check import SOURCE_CHECK_FILE

        path = self.run_dir / SOURCE_CHECK_FILE
        if self.source is None or not path.exists():
            return None
        return json.loads(path.read_text()).get("satellite_scale")

    def _source_check_record(self) -> dict[str, Any] | None:
        """``RUN_DIR/source_check.json`` for the report, or None (not checked yet)."""
        from ucvgl.services.source_check import SOURCE_CHECK_FILE

        path = self.run_dir / SOURCE_CHECK_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def known_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The seeded ``gt_ratio`` share of true training pairs (semi-supervised)."""
        from ucvgl.services.training.supervised import known_pairs_from_ratio

        return known_pairs_from_ratio(self.train_split, self.gt_ratio, self.seed)

    def semi_warmup(self, progress: Progress) -> Path:
        """Train on the known pairs before the AMM rounds (semi-supervised).

        With ``preset.semi_cold_start`` the label-free cold start (projection, CycleGAN,
        intra-view, ground <-> fake) runs first and the known pairs continue from its
        weights at the low ``amm_lr``; otherwise they train from scratch at ``lr``. A run
        with a source model (``init_from``) continues from it at ``amm_lr`` instead. With
        ``amm_schedule`` "continuous" these epochs are the first of the AMM cosine (the
        authors' semi-supervised run: one cosine over warm-up and re-labelling epochs).
        """
        from ucvgl.services.training.supervised import train_on_pairs

        lr = None
        if self.source is not None:
            lr = self.preset.amm_lr
        elif self.preset.semi_cold_start:
            self.cold_start(ScaledProgress(progress, 0.0, 0.8))
            progress = ScaledProgress(progress, 0.8, 1.0)
            lr = self.preset.amm_lr
        window = None
        if self.preset.amm_schedule == "continuous":  # the first epochs of AMM's cosine
            p = self.preset
            window = (0, p.semi_warm_epochs + p.amm_schedule_rounds * p.amm_epochs_per_round)
        result = train_on_pairs(
            self.model,
            self.train_split,
            self.known_pairs(),
            self.preset,
            self.stages_dir / "semi_warmup",
            name="semi-supervised warm-up",
            epochs=self.preset.semi_warm_epochs,
            lr=lr,
            device=self.device,
            progress=progress,
            dist_info=self.dist,
            seed=self.seed,
            epoch_window=window,
        )
        return result.model_path

    def amm_schedule_offset(self) -> int:
        """Epochs of the continuous AMM cosine run before the rounds (the semi warm-up)."""
        if self.mode == "semi" and self.preset.amm_schedule == "continuous":
            return self.preset.semi_warm_epochs
        return 0

    def supervised(self, progress: Progress) -> Path:
        """The supervised baseline on every true training pair."""
        from ucvgl.services.training.supervised import train_on_pairs, true_pairs

        result = train_on_pairs(
            self.model,
            self.train_split,
            true_pairs(self.train_split),
            self.preset,
            self.stages_dir / "supervised",
            name="supervised",
            epochs=self.preset.supervised_epochs,
            device=self.device,
            progress=progress,
            dist_info=self.dist,
            seed=self.seed,
        )
        return result.model_path

    def _start_path(self) -> Path:
        if self.mode == "unsupervised":  # from a source, the source check decides there
            return self.cold_start(NullProgress())
        if self.mode == "semi":
            return self.semi_warmup(NullProgress())
        raise ConfigError("AMM rounds belong to modes 'unsupervised' and 'semi'")

    def amm(self, progress: Progress, only_round: int | None = None) -> dict[str, Any]:
        """Pseudo-label rounds; returns rounds, candidates and the label-free selection."""
        from ucvgl.services.training.amm import run_amm

        start = self._start_path()
        known = self.known_pairs() if self.mode == "semi" else self.prior_pairs()
        fakes = self.amm_queries()  # at once: the cold start made them
        result = run_amm(
            self.model,
            self.train_split,
            self.preset,
            self.preset.threshold_for(self.dataset.format),
            self.stages_dir,
            self.run_dir,
            initial_path=start,
            known_pairs=known,
            positives=self.train_split.positives,
            device=self.device,
            progress=progress,
            dist_info=self.dist,
            seed=self.seed,
            only_round=only_round,
            fake_paths=fakes,
            schedule_offset=self.amm_schedule_offset(),
        )
        if self.dist.is_main:
            write_json(self.run_dir / "amm.json", result)
        return result

    def select(self, progress: Progress) -> Path:
        """Copy the chosen weights to ``run_dir/model/selected.pt`` (no ground truth read)."""
        target = self.run_dir / SELECTED_MODEL
        if target.exists():
            return target
        if self.mode == "supervised":
            chosen = {
                "name": "supervised",
                "path": str(self.supervised(NullProgress())),
                "criterion": None,
            }
        else:
            result = self.amm(progress)
            chosen = result["selected"]  # fixed here, before any recall is measured
            if self.preset.selection_diagnostics:
                self._selection_diagnostics(result["candidates"], chosen["name"], progress)
        from ucvgl.services.training.trainer import load_weights_into

        load_weights_into(self.model, Path(chosen["path"]))
        self._model_check("select", final=True)  # a model at chance is never selected
        if self.dist.is_main:
            target.parent.mkdir(parents=True, exist_ok=True)
            config = self.model.config
            if Path(chosen["path"]) == self.init_path and (
                config.ground_rows is not None or config.satellite_scale is not None
            ):
                # the source's own file reads whole panoramas and tiles as they are: the
                # selected model says how it reads these (ground_rows, satellite_scale)
                from ucvgl.services.models import load_model, save_model

                _, extra = load_model(self.init_path)
                save_model(self.model, target, extra)
            else:
                tmp = target.with_suffix(".tmp")
                shutil.copyfile(chosen["path"], tmp)
                tmp.replace(target)
            write_json(self.run_dir / "model" / "selection.json", chosen)
        self._barrier()
        return target

    def _selection_diagnostics(
        self, candidates: list[dict[str, Any]], chosen: str, progress: Progress
    ) -> None:
        """True recall of every candidate on the evaluation split, for the report only.

        Writes ``model/selection_diagnostics.json`` (``ucvgl.services.selection_diagnostics``);
        nothing when there is no evaluation split or it has no ground truth. Embeddings go
        to the run's cache, so the evaluation stage reuses the chosen model's.
        """
        from ucvgl.services.selection_diagnostics import diagnose
        from ucvgl.services.training.trainer import load_weights_into

        if self.eval_name is None:
            return
        recalls = []
        for i, candidate in enumerate(candidates):
            load_weights_into(self.model, Path(candidate["path"]))
            sub = ScaledProgress(
                progress,
                i / len(candidates),
                (i + 1) / len(candidates),
                f"selection diagnostics: {candidate['name']}",
            )
            recall = self._evaluate_split(self.model, self.eval_name, sub)
            if recall is None:  # no ground truth: nothing to compare the criterion with
                return
            recalls.append(recall)
        record = diagnose(candidates, chosen, recalls, self.eval_name)
        if self.dist.is_main:
            write_json(self.run_dir / "model" / DIAGNOSTICS_FILE, record)

    def selected_model(self):
        """The selected ``TwoViewModel`` (running the stages before it when needed)."""
        from ucvgl.services.training.trainer import load_weights_into

        path = self.select(NullProgress())
        load_weights_into(self.model, path)
        return self.model

    def evaluations(self) -> dict[str, dict[str, Any] | None]:
        """The recall of every split evaluated so far (``evaluation.json``), by split name."""
        path = self.run_dir / EVALUATION_FILE
        if not path.exists():
            return {}
        saved = json.loads(path.read_text())
        if "splits" in saved:
            return saved["splits"]
        return {saved["split"]: saved["recall"]} if saved.get("split") else {}

    def _evaluate_split(self, model, name: str, progress: Progress) -> dict[str, Any] | None:
        """Recall of ``model`` on evaluation split ``name`` (None without ground truth)."""
        from ucvgl.services.evaluation import recall_at_k, vigor_hit_rate
        from ucvgl.services.training.embed import embed_split

        split_name = dataset_split_name(self.dataset.format, name)
        split = self.dataset.split(split_name)
        if not split.has_ground_truth:
            return None
        cache = self.embedding_cache_dir
        g, s = (
            embed_split(
                model,
                split,
                view,
                batch_size=self.preset.eval_batch_size,
                device=self.device,
                cache_dir=cache,
                progress=ScaledProgress(progress, lo, hi),
            )
            for view, lo, hi in (("ground", 0.0, 0.5), ("satellite", 0.5, 0.95))
        )
        result = recall_at_k(g, s, split.positives, device=self.device)
        if split.semi_positives is not None:
            result.update(
                vigor_hit_rate(g, s, split.positives, split.semi_positives, device=self.device)
            )
        result["dataset_split"] = split_name
        return result

    def evaluate(self, progress: Progress) -> dict[str, Any] | None:
        """Recall@1/5/10/1% of the selected model on every evaluation split.

        Splits already in ``evaluation.json`` are not evaluated again. Returns the first
        split's recall (None without an evaluation split or ground truth).
        """
        done = self.evaluations()
        todo = [n for n in self.eval_names if n not in done]
        if todo:
            model = self.selected_model()
            for i, name in enumerate(todo):
                sub = ScaledProgress(progress, i / len(todo), (i + 1) / len(todo), name)
                done[name] = self._evaluate_split(model, name, sub)
            if self.dist.is_main:
                first = self.eval_name
                write_json(
                    self.run_dir / EVALUATION_FILE,
                    {"split": first, "recall": done.get(first), "splits": done},
                )
        progress.update("evaluate", 1.0)
        return done.get(self.eval_name) if self.eval_name else None

    def index(self, progress: Progress) -> Path:
        """A faiss index over every satellite tile of the dataset (``run_dir/index``)."""
        from ucvgl.services.index import SatelliteIndex
        from ucvgl.services.training.embed import embed_split

        out = self.run_dir / "index"
        if (out / "manifest.json").exists():
            return out
        model = self.selected_model()
        embeddings, ids, metadata, seen = [], [], [], set()
        names = list(self.dataset.splits)
        for i, name in enumerate(names):
            split = self.dataset.split(name)
            emb = embed_split(
                model,
                split,
                "satellite",
                batch_size=self.preset.eval_batch_size,
                device=self.device,
                cache_dir=self.embedding_cache_dir,
                progress=ScaledProgress(progress, i / len(names), (i + 1) / len(names)),
            )
            keep = []
            for j, (sid, path) in enumerate(
                zip(split.satellite_ids, split.satellite_paths, strict=True)
            ):
                if str(path) in seen:
                    continue
                seen.add(str(path))
                keep.append(j)
                ids.append(sid)
                metadata.append(_tile_metadata(split, j, name))
            embeddings.append(emb[keep])
        if len(set(ids)) != len(ids):  # the same id in two splits: qualify by split
            ids = [f"{m['split']}/{sid}" for sid, m in zip(ids, metadata, strict=True)]
        import torch

        if self.dist.is_main:
            index = SatelliteIndex.build(torch.cat(embeddings).numpy(), ids, metadata=metadata)
            index.save(out)
        self._barrier()
        return out

    # ------------------------------------------------------------------ driver
    def run(self) -> dict[str, Any]:
        """Run every stage of the mode (skipping finished ones) and write the report.

        Raises:
            StageFailed: a stage check stopped the run (the report says so: ``status``
                'failed', ``failure``); running it again re-runs the failed check.
        """
        from ucvgl.services.health import StageFailed as StageFailedError

        if not (self.run_dir / SELECTED_MODEL).exists():
            self.backbone_weights()  # before any work: missing weights stop the run here
        stages = self.stages()
        weights = [STAGE_WEIGHTS[s] for s in stages]
        total, done = sum(weights), 0.0
        for name, w in zip(stages, weights, strict=True):
            self.progress.check_cancelled()
            sub = ScaledProgress(self.progress, done / total, (done + w) / total)
            fn = getattr(self, name)
            try:
                self._timed(name, fn, sub)
            except StageFailedError:
                self.write_report()  # again, with the failed stage's time
                raise
            done += w
        return self.write_report()

    def report(self) -> dict[str, Any]:
        """The report of the stages finished so far."""
        from ucvgl.services.training.trainer import stage_budgets

        amm_file = self.run_dir / "amm.json"
        amm = json.loads(amm_file.read_text()) if amm_file.exists() else {}
        per_split = self.evaluations()  # every split evaluated in this run folder
        recall = per_split.get(self.eval_name) if self.eval_name else None
        rounds = amm.get("rounds", [])
        selection_file = self.run_dir / "model" / "selection.json"
        diagnostics_file = self.run_dir / "model" / DIAGNOSTICS_FILE
        from ucvgl.services.health import HealthRecords

        health = HealthRecords(self.run_dir)
        failure = health.failure()
        weights_file = self.run_dir / WEIGHTS_FILE
        return {
            "mode": self.mode,
            "preset": self.preset.name,
            "settings": settings_json(self.preset),
            "weights": json.loads(weights_file.read_text()) if weights_file.exists() else None,
            "status": "failed" if failure is not None else "ok",
            "health": [c.to_dict() for c in health.all()],
            "failure": None if failure is None else failure.to_dict(),
            "dataset": {
                "name": self.dataset.name,
                "format": self.dataset.format,
                "train_split": self.train_name,
                "eval_split": self.eval_name,
                "eval_splits": self.eval_names,
                "vigor_protocol": dataset_protocol(self.dataset),
                "splits": self.dataset.counts(),
                **(
                    {"known_pairs": int(len(self.known_pairs()[0])), "gt_ratio": self.gt_ratio}
                    if self.mode == "semi"
                    else {}
                ),
            },
            "recall": None
            if recall is None
            else {k: recall.get(k) for k in ("r1", "r5", "r10", "r1p")}
            | {k: v for k, v in recall.items() if k not in ("r1", "r5", "r10", "r1p")},
            "recall_per_split": per_split,
            "init_from": None
            if self.source is None
            else {
                **self.source.to_dict(),
                "copy": str(self.init_path),
                "init_model_id": self.init_model_id,
                "check": self._source_check_record(),
                "ground_view": self.ground_view,
            },
            "prior": json.loads((self.run_dir / PRIOR_FILE).read_text())
            if (self.run_dir / PRIOR_FILE).exists()
            else None,
            "rounds": rounds,
            "budgets": stage_budgets(self.stages_dir),
            "amm_stop_reason": amm.get("amm_stop_reason"),
            "amm_stop": amm.get("amm_stop"),
            "selection": merge_into_selection(
                {
                    "criterion": "mutual matches of the training pool with margin >= T, "
                    "plus their mean margin (no ground truth)",
                    "candidates": amm.get("candidates", []),
                    "selected": json.loads(selection_file.read_text())
                    if selection_file.exists()
                    else None,
                },
                json.loads(diagnostics_file.read_text()) if diagnostics_file.exists() else None,
            ),
            "stages": [{"name": s, "seconds": self.times.get(s, 0.0)} for s in self.stages()],
            "run_dir": str(self.run_dir),
            "model_path": None if failure is not None else str(self.run_dir / SELECTED_MODEL),
            "index_dir": None if failure is not None else str(self.run_dir / "index"),
            "device": self.device,
            "seed": self.seed,
        }

    def write_report(self) -> dict[str, Any]:
        """Write ``report.json`` and return it."""
        report = self.report()
        if self.dist.is_main:
            write_json(self.run_dir / REPORT_FILE, report)
        return report


def run_folder_preset(
    run_dir: Path,
    fmt: str,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    config_file: Path | None = None,
) -> Preset:
    """The settings of a run in ``run_dir``: its saved ones (``run.json``) when it has them
    and ``preset`` is None or the same name, else preset ``preset`` (default ``cpu``) for
    ``fmt``; then ``config_file`` and ``overrides``.

    Raises:
        ConfigError: the result changes a saved setting (:func:`check_run_settings`).
    """
    from ucvgl.services.preset_overrides import preset_from_settings

    path = Path(run_dir) / RUN_FILE
    saved = json.loads(path.read_text()) if path.exists() else {}
    if saved.get("preset") and (preset is None or preset == saved["preset"]):
        base = preset_from_settings(saved["preset"], saved.get("preset_settings") or {}, fmt)
        resolved = resolve_preset(base, None, overrides, config_file)
    else:
        resolved = resolve_preset(preset or "cpu", fmt, overrides, config_file)
    check_run_settings(run_dir, resolved)
    return resolved


MEASUREMENT_ONLY_SETTINGS = frozenset({"selection_diagnostics"})
"""Preset fields that change what a run measures, never what it trains or selects: a run
folder may be resumed with another value of them."""


def check_run_settings(run_dir: Path, preset: Preset) -> None:
    """Refuse ``preset`` on a run folder saved with other settings of the same preset name.

    (Another preset name is refused by ``PipelineRun`` itself.) The CLI and the worker call
    this; ``PipelineRun`` used directly takes the preset object it is given.

    Raises:
        ConfigError: names every differing setting with its saved value.
    """
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        return
    saved = json.loads(path.read_text())
    if saved.get("preset") != preset.name:
        return
    theirs, mine = saved.get("preset_settings") or {}, settings_json(preset)
    shared = (set(theirs) & set(mine)) - MEASUREMENT_ONLY_SETTINGS
    differ = [k for k in sorted(shared) if theirs[k] != mine[k]]
    if differ:
        raise ConfigError(
            f"run folder {run_dir} was run with other settings "
            f"({', '.join(f'preset_settings.{k}={theirs[k]!r}' for k in differ)}); use another "
            f"--out, or the same settings (no --set / --config changing them) to resume it"
        )


def _tile_metadata(split: ViewSplit, j: int, split_name: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"path": str(split.satellite_paths[j]), "split": split_name}
    if split.satellite_latlon is not None:
        meta["lat"], meta["lon"] = (float(v) for v in split.satellite_latlon[j])
    if split.satellite_xy is not None:
        meta["x"], meta["y"] = (float(v) for v in split.satellite_xy[j])
    return meta


def run_pipeline(
    data: Path,
    format: str,
    mode: str,
    preset: str | Preset,
    out: Path,
    *,
    gt_ratio: float = 0.1,
    device: str | None = None,
    progress: Progress | None = None,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    config_file: Path | None = None,
    init_from: str | Path | None = None,
    eval_splits: str | list[str] | None = None,
) -> dict[str, Any]:
    """Load the dataset at ``data`` and run the whole pipeline of ``mode`` into ``out``.

    A preset NAME is taken for the dataset's format, then ``config_file`` (YAML) and
    ``overrides`` (``--set``) change its settings (``resolve_preset``); a Preset object
    gets only the file and the overrides. ``init_from`` and ``eval_splits``: see
    :class:`PipelineRun`.

    Returns:
        The report (also written to ``out/report.json``).
    """
    from ucvgl.services.datasets import load_dataset

    dataset = load_dataset(Path(data), format)
    if isinstance(preset, str):
        preset = resolve_preset(preset, dataset.format, overrides, config_file)
    elif overrides or config_file:
        preset = resolve_preset(preset, None, overrides, config_file)
    check_run_settings(Path(out), preset)
    run = PipelineRun(
        dataset,
        out,
        mode=mode,
        preset=preset,
        gt_ratio=gt_ratio,
        device=device,
        progress=progress,
        seed=seed,
        init_from=init_from,
        eval_splits=eval_splits,
    )
    return run.run()


# ---------------------------------------------------------------------- worker entry point
JOB_TYPES = (
    "project",
    "cyclegan",
    "cold_start",
    "amm_round",
    "semi",
    "supervised",
    "evaluate",
    "index",
    "pipeline",
)
_COMMON_PARAMS = {
    "preset": str,
    "device": str,
    "seed": int,
    "overrides": dict,
    # the source run folder; the API sets it from init_model_id (a Model row) and refuses
    # it from clients
    "init_from": str,
    "init_model_id": int,
}
_EVAL = {"eval_split": (str, list)}
_JOB_PARAMS: dict[str, dict[str, type | tuple]] = {
    "project": {},
    "cyclegan": {},
    "cold_start": {},
    "amm_round": {"round": int, "mode": str, "gt_ratio": (int, float)},
    "semi": {"gt_ratio": (int, float), **_EVAL},
    "supervised": {**_EVAL},
    "evaluate": {"mode": str, "gt_ratio": (int, float), **_EVAL},
    "index": {"mode": str, "gt_ratio": (int, float), **_EVAL},
    "pipeline": {"mode": str, "gt_ratio": (int, float), **_EVAL},
}
_JOB_MODE = {
    "project": "unsupervised",
    "cyclegan": "unsupervised",
    "cold_start": "unsupervised",
    "semi": "semi",
    "supervised": "supervised",
}


def validate_job_params(job_type: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check a job's parameters; raises ConfigError naming the bad field."""
    if job_type not in JOB_TYPES:
        raise ConfigError(f"job_type must be one of {JOB_TYPES}, got {job_type!r}")
    if not isinstance(params, dict):
        raise ConfigError("params must be a JSON object")
    allowed = {**_COMMON_PARAMS, **_JOB_PARAMS[job_type]}
    for key, value in params.items():
        if key not in allowed:
            raise ConfigError(
                f"params.{key}: not a parameter of job {job_type!r}; allowed: {sorted(allowed)}"
            )
        kind = allowed[key]
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise ConfigError(f"params.{key}: expected {kind}, got {type(value).__name__}")
    out = dict(params)
    if "preset" in out:
        get_preset(out["preset"])
    if out.get("overrides"):
        try:
            resolve_preset(out.get("preset") or "cpu", overrides=out["overrides"])
        except OverrideError as exc:
            raise ConfigError(f"params.overrides.{exc.key}: {exc.detail}") from None
        except ConfigError as exc:
            raise ConfigError(f"params.overrides: {exc}") from None
    if "mode" in out and out["mode"] not in MODES:
        raise ConfigError(f"params.mode: must be one of {MODES}, got {out['mode']!r}")
    if "gt_ratio" in out and not 0.0 < float(out["gt_ratio"]) <= 1.0:
        raise ConfigError(f"params.gt_ratio: must be in (0, 1], got {out['gt_ratio']}")
    if "round" in out and out["round"] < 1:
        raise ConfigError(f"params.round: must be >= 1, got {out['round']}")
    if job_type in _JOB_MODE and out.get("mode", _JOB_MODE[job_type]) != _JOB_MODE[job_type]:
        raise ConfigError(f"params.mode: job {job_type!r} runs mode {_JOB_MODE[job_type]!r}")
    if "eval_split" in out:
        try:
            names = parse_eval_splits(out["eval_split"])
        except ConfigError as exc:
            raise ConfigError(f"params.{exc}") from None
        known = sorted({n for names_ in EVAL_SPLITS.values() for n in names_})
        bad = [n for n in names or [] if n not in known]
        if bad:
            raise ConfigError(f"params.eval_split: unknown split(s) {bad}; known: {known}")
    if "init_model_id" in out and "init_from" not in out:
        raise ConfigError("params.init_model_id: the service resolves it to params.init_from")
    if "init_from" in out and job_type == "cold_start":
        raise ConfigError(
            "params.init_from: a cold_start job starts from the preset's weights; a run from "
            "a model decides its own cold start (source check) in pipeline or amm jobs"
        )
    return out


def run_job(
    job_type: str,
    dataset: CrossViewDataset,
    params: dict[str, Any],
    run_dir: Path,
    progress: Progress,
) -> dict[str, Any]:
    """Run one job of the service (the Celery worker's entry point).

    Each job runs the stages it needs, skipping those already finished in ``run_dir``.

    Args:
        job_type: one of :data:`JOB_TYPES`.
        dataset: the dataset index.
        params: job parameters: ``preset``, ``overrides`` (preset settings), ``device``,
            ``seed`` for all; ``mode`` and
            ``gt_ratio`` where the job type does not fix them; ``round`` for 'amm_round'.
        run_dir: the run folder shared by the jobs of one training run.
        progress: progress / cancellation (raises JobCancelled; checkpoints stay usable).

    Returns:
        A JSON-able dict (paths as strings).
    """
    p = validate_job_params(job_type, params)
    mode = _JOB_MODE.get(job_type, p.get("mode", "unsupervised"))
    run = PipelineRun(
        dataset,
        Path(run_dir),
        mode=mode,
        preset=run_folder_preset(
            Path(run_dir), dataset.format, p.get("preset"), overrides=p.get("overrides")
        ),
        gt_ratio=float(p.get("gt_ratio", 0.1)),
        device=p.get("device"),
        progress=progress,
        seed=int(p.get("seed", 0)),
        init_from=p.get("init_from"),
        init_model_id=p.get("init_model_id"),
        eval_splits=p.get("eval_split"),
    )
    if job_type == "project":
        paths = run._timed("project", run.project, progress)
        return {"bev_dir": str(run.run_dir / "bev"), "count": len(paths)}
    if job_type == "cyclegan":
        ckpt = run._timed("cyclegan", run.cyclegan, ScaledProgress(progress, 0.0, 0.9))
        fakes = run._timed("translate", run.translate, ScaledProgress(progress, 0.9, 1.0))
        return {"checkpoint": str(ckpt), "fake_dir": str(run.run_dir / "fake"), "count": len(fakes)}
    if job_type == "cold_start":
        path = run._timed("cold_start", run.cold_start, progress)
        return {"model_path": str(path)}
    if job_type == "amm_round":
        result = run._timed("amm", lambda pr: run.amm(pr, only_round=p.get("round")), progress)
        return _jsonable(
            {
                "rounds": result["rounds"],
                "amm_stop_reason": result["amm_stop_reason"],
                "candidates": result["candidates"],
                "selected": result["selected"],
                # the weights after the last round run (a Model row for the service)
                "model_path": result["candidates"][-1]["path"],
                "mode": run.mode,
                "preset": run.preset.name,
            }
        )
    if job_type in ("semi", "supervised"):
        return run.run()
    if job_type == "evaluate":
        recall = run._timed("evaluate", run.evaluate, progress)
        return {"split": run.eval_name, "recall": recall, "recall_per_split": run.evaluations()}
    if job_type == "index":
        out = run._timed("index", run.index, progress)
        return {"index_dir": str(out), "model_path": str(run.run_dir / SELECTED_MODEL)}
    return run.run()


def _jsonable(data: Any) -> Any:
    return json.loads(json.dumps(data, default=_json_default))
