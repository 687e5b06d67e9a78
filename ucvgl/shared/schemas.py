"""Pydantic schemas of the HTTP API (requests, responses, problem details).

Label quality follows cleanlab's conventions: scores lie in [0, 1] and lower means more
likely wrong. Per label, ``margin_score`` is the relative margin ``margin / similarity``
(how far the best tile beats the runner-up, relative to the best similarity), clipped to
[0, 1]. Per round, ``label_health_score`` is the mean of two label-free signals:
the mean ``margin_score`` of the kept labels and the share of mutual pairs that survived
the margin threshold (``labels / mutual``). Neither uses ground truth, so the score is
available on unlabeled data; ``correct_ratio`` is reported beside it when ground truth
exists.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ucvgl.shared.enums import DatasetFormat, JobState, JobType

T = TypeVar("T")

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class Problem(BaseModel):
    """An RFC 9457 problem detail (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str
    errors: list[FieldError] | None = None


class FieldError(BaseModel):
    """One invalid request field: where it is and what is wrong with it."""

    field: str
    message: str


class Page(BaseModel, Generic[T]):
    """One page of a list: its items, the total count and the window asked for."""

    items: list[T]
    total: int
    limit: int
    offset: int


# --- datasets -------------------------------------------------------------------------------


class DatasetRegister(BaseModel):
    """Register a dataset already on disk below one of the configured data roots (a job).

    The request checks the path and the name; the job loads and validates the dataset and,
    when it is valid, records it (the job's ``result.dataset_id``).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    path: str = Field(min_length=1, description="Dataset root folder, under a data root.")
    format: DatasetFormat
    skip_invalid: bool = Field(
        default=False, description="Skip bad entries (listed in the report) instead of failing."
    )


class SyntheticDatasetCreate(BaseModel):
    """Generate a synthetic cross-view world under the first data root (runs as a job).

    With ``world`` (a registry name, see ``GET /api/v1/synthetic/worlds``) the world's
    format, seed, knobs and JPEG quality are the registry's: giving ``format``, ``seed`` or
    ``jpeg_quality`` as well is refused (422). ``settings`` changes knobs on top (of the
    world's, or of the defaults); an unknown knob or a bad value is a 422 naming
    ``body.settings.<knob>``. The job's ``parameters`` record the resolved values.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    world: str | None = Field(
        default=None,
        description="A registry world (tune-N or report-N): its format, seed, knobs, JPEG "
        "quality and image sizes.",
    )
    format: DatasetFormat | None = Field(
        default=None, description="Dataset layout; default cvusa. Not with world."
    )
    n_train: int = Field(default=32, ge=1, le=100_000)
    n_val: int = Field(default=16, ge=1, le=100_000)
    seed: int | None = Field(default=None, description="Random seed; default 0. Not with world.")
    pano_height: int | None = Field(
        default=None, ge=8, le=4096, description="Default 64 (with world: the world's)."
    )
    pano_width: int | None = Field(
        default=None, ge=16, le=8192, description="Default 128 (with world: the world's)."
    )
    sat_size: int | None = Field(
        default=None, ge=8, le=4096, description="Default 64 (with world: the world's)."
    )
    jpeg_quality: int | None = Field(
        default=None, ge=1, le=100, description="JPEG quality; default 90. Not with world."
    )
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description='World knob overrides, knob -> value (e.g. {"gps_offset_m": 1.5, '
        '"record_geometry": false}); the knobs are listed by GET /api/v1/synthetic/worlds.',
    )


class SyntheticWorldRead(BaseModel):
    """One named synthetic world of the registry."""

    name: str
    role: str = Field(description="tune (for tuning) or report (for reported quality).")
    format: str
    seed: int
    description: str
    settings: dict[str, Any] = Field(description="Every knob of the world.")
    changed: dict[str, Any] = Field(description="The knobs that differ from the defaults.")
    jpeg_quality: int
    pano_height: int
    pano_width: int
    sat_size: int
    cities: list[str] | None = None


class SyntheticWorlds(BaseModel):
    """The registry of named synthetic worlds, the knobs with their defaults, and the rule."""

    worlds: list[SyntheticWorldRead]
    knobs: dict[str, Any] = Field(description="Every world knob with its default value.")
    rule: str


class DatasetRead(BaseModel):
    """A registered dataset with its entry counts per split and its validation report."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    format: str
    root_path: str
    counts: dict[str, Any]
    has_ground_truth: bool
    validation_report: dict[str, Any]
    created_at: datetime


# --- jobs -----------------------------------------------------------------------------------


class JobCreate(BaseModel):
    """Start a job on a dataset (and, for ``evaluate``/``index``, a trained model)."""

    model_config = ConfigDict(extra="forbid")

    type: JobType
    dataset_id: int
    model_id: int | None = None
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Job parameters: preset, overrides (preset settings by name, e.g. "
        '{"batch_size": 64, "weights": "none"}; see `ucvgl presets show NAME`), device, seed, '
        "run_name; mode and gt_ratio where the job type does not fix them; round (amm_round); "
        "gpus (GPUs of the worker for a pipeline/semi/supervised job, one process each under "
        "torch's launcher; default all it has).",
    )


class StageCheckRead(BaseModel):
    """One label-free check of a pipeline stage (``ucvgl.services.health.StageCheck``)."""

    stage: str
    check: str
    passed: bool
    metric: str = Field(description="The key of ``numbers`` compared with ``floor``.")
    numbers: dict[str, Any]
    floor: float
    action: str = Field(description="ok, fallback, warn (recorded only) or stop (run failed).")
    message: str


class JobRead(BaseModel):
    """A job's state, progress (0..1), current stage, estimated time left and result.

    ``health`` lists the label-free stage checks of the job's run (from its result);
    ``failure`` is the check that stopped it (the job is FAILED with its message as
    ``error``), or null.
    """

    id: int
    type: str
    state: JobState
    progress: float
    stage: str
    message: str
    error: str | None
    result: dict[str, Any] | None
    parameters: dict[str, Any]
    dataset_id: int | None
    model_id: int | None
    run_dir: str | None
    cancel_requested: bool
    worker_hostname: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    eta_seconds: float | None = Field(
        description="Seconds left, extrapolated from the progress rate since the job started."
    )
    health: list[StageCheckRead] = Field(default_factory=list)
    failure: StageCheckRead | None = None
    links: dict[str, str]


# --- models, rounds, labels, indexes --------------------------------------------------------


class ModelRead(BaseModel):
    """A trained checkpoint."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    dataset_id: int
    run_dir: str
    checkpoint_path: str
    mode: str
    preset: str | None
    recall: dict[str, Any] | None
    created_at: datetime


class MarginHistogram(BaseModel):
    """Histogram of the kept labels' margins: ``len(edges) == len(counts) + 1``."""

    edges: list[float] = Field(default_factory=list)
    counts: list[int] = Field(default_factory=list)


class RoundRead(BaseModel):
    """One pseudo-label round: threshold, counts, margin histogram and label health."""

    id: int
    dataset_id: int
    model_id: int | None
    job_id: int | None
    round: int
    threshold: float
    mutual: int
    labels: int
    correct: int | None
    correct_ratio: float | None = Field(description="correct / labels, only with ground truth.")
    margin_histogram: MarginHistogram
    label_health_score: float = Field(ge=0.0, le=1.0)
    created_at: datetime
    links: dict[str, str]


class LabelRead(BaseModel):
    """One mined pair and its label-quality score (lower = more likely wrong)."""

    model_config = ConfigDict(from_attributes=True)

    ground_id: str
    satellite_id: str
    margin: float
    similarity: float
    margin_score: float = Field(ge=0.0, le=1.0)
    is_correct: bool | None


class IndexCreate(BaseModel):
    """Build a retrieval index of satellite tiles with a trained model (runs as a job)."""

    model_config = ConfigDict(extra="forbid")

    model_id: int
    params: dict[str, Any] = Field(default_factory=dict)


class IndexRead(BaseModel):
    """A built nearest-neighbour index."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    model_id: int
    path: str
    kind: str
    size: int
    created_at: datetime = Field(
        description="When the index in this folder was last built (a rebuild updates it)."
    )


# --- retrieval ------------------------------------------------------------------------------


class QueryMatch(BaseModel):
    """One retrieved satellite tile with its score and position."""

    rank: int
    satellite_id: str
    score: float
    file_name: str
    lat: float | None = None
    lon: float | None = None
    x: float | None = None
    y: float | None = None


class QueryResult(BaseModel):
    """The top-k tiles of one uploaded panorama."""

    file_name: str
    matches: list[QueryMatch]


class QueryResponse(BaseModel):
    """Top-k tiles for each uploaded panorama, from one index."""

    index_id: int
    model_id: int
    k: int
    results: list[QueryResult]


# --- health ---------------------------------------------------------------------------------


class Health(BaseModel):
    """The process answers."""

    status: str


class Check(BaseModel):
    """One readiness check."""

    ok: bool
    detail: str


class Readiness(BaseModel):
    """Database, broker and worker checks; ``status`` is 'ready' only when all pass."""

    status: str
    checks: dict[str, Check]


Problem.model_rebuild()
