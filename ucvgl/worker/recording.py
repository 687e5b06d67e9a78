"""Copy a finished job's result into the tables: rounds, pseudo-labels, models, indexes.

The result of ``ucvgl.services.pipeline.run_job`` is a JSON-able dict. Keys read here:
``rounds`` (list of {round, threshold, mutual, labels, correct, margin_histogram,
labels_path}), ``model_path`` (a trained encoder checkpoint), ``mode``/``preset``,
``recall`` (dict r1, r5, r10, r1p), ``index_dir`` (a built index with ``manifest.json``),
``new_dataset`` (the columns of a new Dataset row, from a ``register``/``synthetic`` job;
read here only, see :data:`RECORD_ONLY_KEYS`).

Recording is idempotent where a job can be run again: a round already recorded for the run
folder, a checkpoint already known and an index folder already recorded for the model are
updated or skipped, never inserted twice.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ucvgl.services.label_health import label_health_score
from ucvgl.shared.enums import JobType, TrainingMode
from ucvgl.shared.errors import UcvglError
from ucvgl.shared.models import (
    Dataset,
    Job,
    Model,
    PseudoLabel,
    PseudoLabelRound,
    RetrievalIndex,
    utcnow,
)

log = logging.getLogger(__name__)

LABEL_BATCH = 5000
MODE_OF_JOB = {
    JobType.SEMI: TrainingMode.SEMI,
    JobType.SUPERVISED: TrainingMode.SUPERVISED,
}
RECORD_ONLY_KEYS = frozenset({"new_dataset"})
"""Result keys that only carry rows to record; the job's stored ``result`` leaves them out."""
DATASET_COLUMNS = (
    "name",
    "format",
    "root_path",
    "counts",
    "has_ground_truth",
    "validation_report",
    "load_options",
)


class DatasetNameTaken(UcvglError):
    """The name of a ``register``/``synthetic`` job's dataset was taken while the job ran."""


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types (paths and numpy scalars become str/float)."""

    def default(obj: Any) -> Any:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        return str(obj)

    return json.loads(json.dumps(value, default=default))


def _parse_correct(text: str | None) -> bool | None:
    value = (text or "").strip().lower()
    if value in ("", "none", "nan", "-1"):
        return None
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    raise UcvglError(f"unreadable 'correct' value {text!r} in a labels CSV")


def read_labels_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a labels CSV (ground_id, satellite_id, margin, similarity, correct)."""
    required = {"ground_id", "satellite_id", "margin", "similarity"}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = required - set(reader.fieldnames or ())
        if missing:
            raise UcvglError(f"{path}: labels CSV lacks column(s) {sorted(missing)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append(
                    {
                        "ground_id": row["ground_id"],
                        "satellite_id": row["satellite_id"],
                        "margin": float(row["margin"]),
                        "similarity": float(row["similarity"]),
                        "is_correct": _parse_correct(row.get("correct")),
                    }
                )
            except (TypeError, ValueError) as exc:
                raise UcvglError(f"{path}:{line}: bad labels row ({exc})") from exc
    return rows


def record_round(
    session: Session, job: Job, item: dict[str, Any], model_id: int | None
) -> PseudoLabelRound:
    """Insert one round and bulk-insert its labels from ``item['labels_path']``."""
    labels_path = item.get("labels_path")
    rows = read_labels_csv(Path(labels_path)) if labels_path else []
    margins = np.array([r["margin"] for r in rows], dtype=np.float64)
    sims = np.array([r["similarity"] for r in rows], dtype=np.float64)
    mutual = int(item.get("mutual", len(rows)))
    n_labels = int(item.get("labels", len(rows)))
    correct = item.get("correct")
    round_row = PseudoLabelRound(
        dataset_id=job.dataset_id,
        model_id=model_id,
        job_id=job.id,
        round_number=int(item.get("round", 0)),
        threshold=float(item.get("threshold", 0.0)),
        mutual=mutual,
        labels=n_labels,
        correct=None if correct is None else int(correct),
        margin_histogram=json_safe(item.get("margin_histogram") or {"edges": [], "counts": []}),
        label_health_score=label_health_score(margins, sims, mutual=mutual, labels=n_labels),
    )
    session.add(round_row)
    session.flush()
    for start in range(0, len(rows), LABEL_BATCH):
        batch = [dict(r, round_id=round_row.id) for r in rows[start : start + LABEL_BATCH]]
        session.execute(sa.insert(PseudoLabel), batch)
    return round_row


def _mode_of(job: Job, result: dict[str, Any]) -> str:
    job_type = JobType(job.type)
    params = job.parameters or {}
    mode = result.get("mode") or params.get("mode")
    return str(mode or MODE_OF_JOB.get(job_type, TrainingMode.UNSUPERVISED))


def _record_model(session: Session, job: Job, result: dict[str, Any], path: Path) -> Model:
    """The Model row of checkpoint ``path`` (reused when the run wrote it before)."""
    model = session.scalars(sa.select(Model).where(Model.checkpoint_path == str(path))).first()
    if model is None:
        model = Model(
            dataset_id=job.dataset_id,
            run_dir=str(job.run_dir),
            checkpoint_path=str(path),
            mode=_mode_of(job, result),
            preset=result.get("preset") or (job.parameters or {}).get("preset"),
        )
        session.add(model)
    if isinstance(result.get("recall"), dict):
        model.recall = json_safe(result["recall"])
    session.flush()
    return model


def _index_manifest(index_dir: Path) -> dict[str, Any]:
    manifest = index_dir / "manifest.json"
    if not manifest.exists():
        return {}
    try:
        return json.loads(manifest.read_text())
    except (OSError, ValueError):
        log.warning("unreadable index manifest %s", manifest, exc_info=True)
        return {}


def _round_recorded(session: Session, job: Job, round_number: int) -> bool:
    """True when a job of the same run folder already recorded this round."""
    query = (
        sa.select(PseudoLabelRound.id)
        .join(Job, PseudoLabelRound.job_id == Job.id)
        .where(Job.run_dir == job.run_dir, PseudoLabelRound.round_number == round_number)
    )
    return session.scalar(query.limit(1)) is not None


def record_result(session: Session, job: Job, result: dict[str, Any]) -> dict[str, Any]:
    """Write the rows a result describes; returns ids of what was created (for the job).

    A ``new_dataset`` becomes a Dataset row (the job's ``dataset_id``), a trained encoder
    (``model_path``) a Model row, ``recall`` its recall (or, for ``evaluate``, the recall of
    the job's model), each new entry of ``rounds`` a round with its labels, and an
    ``index_dir`` the index of the job's (or the new) model (updated when already recorded).
    """
    created: dict[str, Any] = {}
    job_type = JobType(job.type)
    if job_type.creates_dataset and isinstance(result.get("new_dataset"), dict):
        created["dataset_id"] = record_dataset(session, job, result["new_dataset"]).id
    model_id = job.model_id
    model_path = result.get("model_path")
    if model_path and Path(model_path).is_file() and job.dataset_id is not None:
        model_id = created["model_id"] = _record_model(session, job, result, Path(model_path)).id
    elif job_type is JobType.EVALUATE and job.model_id is not None:
        model = session.get(Model, job.model_id)
        if model is not None and isinstance(result.get("recall"), dict):
            model.recall = json_safe(result["recall"])
    round_ids = [
        record_round(session, job, item, model_id).id
        for item in result.get("rounds") or []
        if not _round_recorded(session, job, int(item.get("round", 0)))
    ]
    if round_ids:
        created["round_ids"] = round_ids
    index_dir = result.get("index_dir")
    if index_dir and Path(index_dir).is_dir() and model_id is not None:
        created["index_id"] = record_index(session, model_id, Path(index_dir)).id
    return created


def record_dataset(session: Session, job: Job, values: dict[str, Any]) -> Dataset:
    """Insert the Dataset row a ``register``/``synthetic`` job made and link it to the job.

    Raises:
        DatasetNameTaken: the name was taken while the job ran (nothing is written).
        UcvglError: ``values`` is not a dataset record.
    """
    unknown = sorted(set(values) - set(DATASET_COLUMNS))
    missing = [k for k in ("name", "format", "root_path") if k not in values]
    if unknown or missing:
        raise UcvglError(f"job {job.id}: bad dataset record (unknown {unknown}, missing {missing})")
    row = Dataset(**json_safe(values))
    try:
        with session.begin_nested():  # a savepoint: the failed insert leaves nothing behind
            session.add(row)
            session.flush()
    except IntegrityError:
        raise DatasetNameTaken(
            f"a dataset named {values['name']!r} already exists (registered while this job "
            "was queued or running); nothing was recorded: register it under another name"
        ) from None
    job.dataset_id = row.id
    return row


def _index_rows(session: Session, model_id: int, index_dir: Path) -> list[RetrievalIndex]:
    """The rows of ``model_id`` recorded for ``index_dir`` (as given or resolved), by id."""
    paths = sorted({str(index_dir), str(index_dir.resolve())})
    query = (
        sa.select(RetrievalIndex)
        .where(RetrievalIndex.model_id == model_id, RetrievalIndex.path.in_(paths))
        .order_by(RetrievalIndex.id)
    )
    return list(session.scalars(query).all())


def record_index(session: Session, model_id: int, index_dir: Path) -> RetrievalIndex:
    """The index row of ``index_dir`` built from ``model_id``, inserted or brought up to date.

    A folder rebuilt (a pipeline job's index, then ``POST /indexes`` for the same model)
    keeps its row: its kind, size and ``created_at`` (the time of the last build) are
    updated instead of a second row pointing at the same folder being added. The database
    refuses a second row per ``(model_id, path)`` (``uq_indexes_model_path``); a row that
    another job inserted between the look-up and the insert is updated instead.
    """
    manifest = _index_manifest(index_dir)
    values = {
        "kind": str(manifest.get("kind", "faiss")),
        "size": int(manifest.get("count", 0)),
        "created_at": utcnow(),
    }
    rows = _index_rows(session, model_id, index_dir)
    if not rows:
        index = RetrievalIndex(model_id=model_id, path=str(index_dir), **values)
        try:
            with session.begin_nested():  # a savepoint: a refused insert leaves nothing behind
                session.add(index)
                session.flush()
            return index
        except IntegrityError:
            rows = _index_rows(session, model_id, index_dir)
            if not rows:  # not a concurrent insert of this folder (e.g. an unknown model)
                raise
            log.info("index %s of model %d was recorded meanwhile: updated", index_dir, model_id)
    # A folder recorded under a link and under its real path has two rows: keep both alike.
    for row in rows:
        for key, value in values.items():
            setattr(row, key, value)
    session.flush()
    return rows[0]
