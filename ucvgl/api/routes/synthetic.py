"""Synthetic worlds: the registry of named worlds (read), and resolving a generation request.

``POST /api/v1/datasets/synthetic`` (in :mod:`ucvgl.api.routes.datasets`) calls
:func:`synthetic_job_params` to check ``world``/``settings`` and to turn the request into the
job's parameters, so that the worker and anyone reading the job see the resolved values.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from ucvgl.api.deps import ReadAccess
from ucvgl.api.presenters import API
from ucvgl.api.problems import ApiProblem, field_problem, problem_responses
from ucvgl.shared.errors import ConfigError
from ucvgl.shared.schemas import SyntheticDatasetCreate, SyntheticWorldRead, SyntheticWorlds

router = APIRouter(prefix=f"{API}/synthetic", tags=["synthetic"], responses=problem_responses(401))

RULE = "presets are tuned on tune-* worlds only; quality is reported on report-* worlds only"

DEFAULT_PANO_SIZE = (64, 128)
DEFAULT_SAT_SIZE = 64
"""Image sizes of a world generated through the API without ``world`` (small: a quick try)."""


@router.get("/worlds", response_model=SyntheticWorlds, dependencies=[ReadAccess])
def list_worlds() -> SyntheticWorlds:
    """The named synthetic worlds (tune-N for tuning, report-N for reported quality)."""
    from ucvgl.services.synth.family import WORLDS
    from ucvgl.services.synth.settings import WorldSettings

    return SyntheticWorlds(
        worlds=[
            SyntheticWorldRead(
                name=w.name,
                role=w.role,
                format=w.format,
                seed=w.seed,
                description=w.description,
                settings=asdict(w.settings),
                changed=w.settings.changed(),
                jpeg_quality=w.jpeg_quality,
                pano_height=w.pano_size[0],
                pano_width=w.pano_size[1],
                sat_size=w.sat_size,
                cities=list(w.cities) if w.cities else None,
            )
            for w in WORLDS.values()
        ],
        knobs=asdict(WorldSettings()),
        rule=RULE,
    )


def _settings_problem(knobs: list[str], message: str) -> ApiProblem:
    errors = [{"field": f"body.settings.{k}", "message": message} for k in knobs]
    fields = ", ".join(e["field"] for e in errors) or "body.settings"
    return ApiProblem(
        422,
        f"{fields}: {message}",
        title="Invalid request",
        errors=errors or [{"field": "body.settings", "message": message}],
    )


def check_settings(base: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` coerced to the knobs' types, checked on top of ``base`` (WorldSettings).

    Raises:
        ApiProblem: 422 naming ``body.settings.<knob>`` for an unknown knob (listing the
            allowed ones) or a bad value.
    """
    from ucvgl.services.synth.settings import coerce_knob, knob_names

    allowed = knob_names()
    unknown = [k for k in overrides if k not in allowed]
    if unknown:
        raise _settings_problem(unknown, f"unknown world knob; allowed: {', '.join(allowed)}")
    coerced: dict[str, Any] = {}
    for knob, value in overrides.items():
        try:
            coerced[knob] = coerce_knob(knob, value)
        except ConfigError as exc:
            raise _settings_problem([knob], str(exc)) from None
    try:
        base.with_updates(coerced)
    except ConfigError as exc:
        message = str(exc)
        named = [k for k in coerced if re.search(rf"\b{re.escape(k)}\b", message)]
        if not named:  # e.g. downtown_radius beyond the (unchanged) suburb_radius
            named = [k for k in coerced if _fails_alone(base, k, coerced[k])]
        raise _settings_problem(named, message) from None
    return coerced


def _fails_alone(base: Any, knob: str, value: Any) -> bool:
    try:
        base.with_updates({knob: value})
    except ConfigError:
        return True
    return False


def synthetic_job_params(body: SyntheticDatasetCreate) -> dict[str, Any]:
    """The parameters of the ``synthetic`` job for ``body``, every value resolved.

    Raises:
        ApiProblem: 422 for an unknown world, a field the world fixes (format, seed,
            jpeg_quality), or bad ``settings``.
    """
    from ucvgl.services.synth.family import WORLDS, get_world
    from ucvgl.services.synth.settings import WorldSettings

    params = body.model_dump(mode="json")
    if body.world is not None:
        try:
            entry = get_world(body.world)
        except ConfigError:
            raise field_problem(
                "body.world", f"unknown world {body.world!r}; known: {', '.join(WORLDS)}"
            ) from None
        for field in ("format", "seed", "jpeg_quality"):
            if getattr(body, field) is not None:
                raise field_problem(
                    f"body.{field}",
                    f"world {body.world} fixes {field} ({getattr(entry, field)}); leave it out",
                )
        params["settings"] = check_settings(entry.settings, body.settings)
        params.update(format=entry.format, seed=entry.seed, jpeg_quality=entry.jpeg_quality)
        pano_size, sat_size = entry.pano_size, entry.sat_size
    else:
        params["settings"] = check_settings(WorldSettings(), body.settings)
        params["format"] = body.format.value if body.format is not None else "cvusa"
        params["seed"] = body.seed if body.seed is not None else 0
        params["jpeg_quality"] = body.jpeg_quality if body.jpeg_quality is not None else 90
        pano_size, sat_size = DEFAULT_PANO_SIZE, DEFAULT_SAT_SIZE
    for field, default in (
        ("pano_height", pano_size[0]),
        ("pano_width", pano_size[1]),
        ("sat_size", sat_size),
    ):
        if params[field] is None:
            params[field] = default
    return params
