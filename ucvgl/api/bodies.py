"""Request bodies as the routes accept them: the shared schemas with the API's bounds.

Each class keeps the name (and so the OpenAPI component name) of the shared schema it
narrows: ids within :data:`~ucvgl.api.bounds.MAX_DB_ID`, no NUL in strings or in the
free-form ``params``/``settings``, and ``POST /jobs`` ``type`` listing only the job types
that route starts (``register`` and ``synthetic`` are started through ``/datasets``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, get_args

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from ucvgl.api.bounds import BodyId, NoNulObject, NoNulText
from ucvgl.api.job_submission import DATASET_ROUTES
from ucvgl.shared import schemas
from ucvgl.shared.enums import JobType

StartableJobType = StrEnum(  # type: ignore[misc]
    "StartableJobType", {t.name: t.value for t in JobType if not t.creates_dataset}
)
StartableJobType.__doc__ = "Job types ``POST /api/v1/jobs`` starts (not register/synthetic)."


class JsonTyped(BaseModel):
    """Refuses what the schema's JSON types refuse but pydantic's lax mode would coerce: a
    boolean or a string for a number, anything but true/false for a boolean."""

    @field_validator("*", mode="before")
    @classmethod
    def _json_types(cls, value: Any, info: ValidationInfo) -> Any:
        annotation = cls.model_fields[str(info.field_name)].annotation
        kinds = set(get_args(annotation)) or {annotation}
        if kinds & {int, float} and isinstance(value, bool | str):
            raise ValueError(f"must be a JSON number, not {type(value).__name__}")
        if bool in kinds and value is not None and not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value


class JobCreate(JsonTyped, schemas.JobCreate):
    """Start a job on a dataset (and, for ``evaluate``/``index``, a trained model)."""

    type: StartableJobType  # type: ignore[assignment, valid-type]
    dataset_id: BodyId
    model_id: BodyId | None = None
    params: NoNulObject = Field(
        default_factory=dict, description=schemas.JobCreate.model_fields["params"].description
    )

    @field_validator("type", mode="before")
    @classmethod
    def _not_a_dataset_job(cls, value: Any) -> Any:
        """Name the route of a job type that creates a dataset instead of a bare enum error."""
        if isinstance(value, str) and value in {t.value for t in DATASET_ROUTES}:
            raise ValueError(f"use {DATASET_ROUTES[JobType(value)]} to start a {value!r} job")
        return value

    @property
    def job_type(self) -> JobType:
        """``type`` as the shared enum."""
        return JobType(self.type.value)


class IndexCreate(JsonTyped, schemas.IndexCreate):
    """Build a retrieval index of satellite tiles with a trained model (runs as a job)."""

    model_id: BodyId
    params: NoNulObject = Field(default_factory=dict)


class DatasetRegister(JsonTyped, schemas.DatasetRegister):
    """Register a dataset already on disk below one of the configured data roots (a job)."""

    path: NoNulText = Field(min_length=1, description="Dataset root folder, under a data root.")


def _world_names(schema: dict[str, Any]) -> None:
    """List the registry's worlds as the enum of ``world`` (imported only for the schema)."""
    from ucvgl.services.synth.family import WORLDS

    for option in schema.get("anyOf", [schema]):
        if option.get("type") == "string":
            option.pop("pattern", None)
            option["enum"] = list(WORLDS)


class SyntheticDatasetCreate(JsonTyped, schemas.SyntheticDatasetCreate):
    """Generate a synthetic cross-view world under the first data root (runs as a job)."""

    world: NoNulText | None = Field(
        default=None,
        description="A registry world (tune-N or report-N): its format, seed, knobs, JPEG "
        "quality and image sizes.",
        json_schema_extra=_world_names,
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=2**32 - 1,
        description="Random seed (0 to 2**32-1); default 0. Not with world.",
    )
    settings: NoNulObject = Field(
        default_factory=dict,
        description='World knob overrides, knob -> value (e.g. {"gps_offset_m": 1.5, '
        '"record_geometry": false}); the knobs are listed by GET /api/v1/synthetic/worlds.',
    )
