"""Progress and cancellation contract between long-running stages and their callers.

A stage receives a :class:`Progress` and calls ``progress.update(stage, fraction)`` as it
works, and ``progress.check_cancelled()`` between steps (which raises
:class:`ucvgl.shared.errors.JobCancelled` when the caller asked it to stop). The CLI passes
an implementation that draws bars, the Celery worker one that writes the job row.

Stages that count something (training steps, images, panoramas) report through
:func:`report_count`: every :class:`Progress` gets the fraction as before, and one that
also implements :class:`CountingProgress` (the CLI's) gets the counts too, so it can show
the stage in its own units. :class:`ScaledProgress` maps a stage's 0..1 onto its share of
the run and passes the counts through unchanged.

The run's ETA is :func:`eta_seconds`: the job API and the CLI extrapolate the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class Progress(Protocol):
    """What a long stage reports to: the CLI, a Celery task, or nothing."""

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        """Report that ``stage`` is ``fraction`` (0..1) done."""

    def check_cancelled(self) -> None:
        """Raise ``JobCancelled`` if the caller asked this job to stop."""


@dataclass(frozen=True)
class StageCount:
    """How far the innermost stage is in its own units.

    Attributes:
        name: the stage as the code counting it calls it (a trainer's name, "embed").
        done: units finished, 0..total.
        total: units of the whole stage (> 0).
        unit: plural noun: "steps", "images", "panoramas", "locations", "blocks".
    """

    name: str
    done: int
    total: int
    unit: str


@runtime_checkable
class CountingProgress(Progress, Protocol):
    """A :class:`Progress` that also wants the innermost stage's counts."""

    def update_count(
        self, stage: str, fraction: float, count: StageCount, message: str = ""
    ) -> None:
        """Like ``update``, with ``count`` the innermost stage's own progress."""


def report_count(
    progress: Progress, stage: str, done: int, total: int, unit: str, message: str = ""
) -> None:
    """Report ``done`` of ``total`` ``unit`` of ``stage`` (fraction ``done / total``).

    A :class:`CountingProgress` gets the counts; any other only the fraction.
    """
    total = max(int(total), 1)
    done = min(max(int(done), 0), total)
    fraction = done / total
    if isinstance(progress, CountingProgress):
        progress.update_count(stage, fraction, StageCount(stage, done, total, unit), message)
    else:
        progress.update(stage, fraction, message)


def eta_seconds(fraction: float, elapsed_s: float) -> float | None:
    """Seconds left if the rest goes at the rate so far; None while unknown.

    ``elapsed_s * (1 - fraction) / fraction``: what ``GET /api/v1/jobs/{id}`` reports as
    ``eta_seconds`` (elapsed since the job started) and the CLI shows for the run.
    """
    if fraction >= 1.0:
        return 0.0
    if fraction <= 0.0 or elapsed_s <= 0.0:
        return None
    return max(elapsed_s * (1.0 - fraction) / fraction, 0.0)


class NullProgress:
    """A :class:`Progress` that reports nowhere and never cancels."""

    def update(self, stage: str, fraction: float, message: str = "") -> None:  # noqa: D102
        return None

    def check_cancelled(self) -> None:  # noqa: D102
        return None


class ScaledProgress:
    """Maps a sub-stage's 0..1 onto ``[start, end]`` of a parent :class:`Progress`.

    ``stage``, when given, replaces the sub-stage's name in what the parent sees; counts
    (:meth:`update_count`) keep the innermost stage's name and units.
    """

    def __init__(self, parent: Progress, start: float, end: float, stage: str | None = None):
        self.parent, self.start, self.end, self.stage = parent, start, end, stage

    def _scaled(self, fraction: float) -> float:
        return self.start + (self.end - self.start) * min(max(fraction, 0.0), 1.0)

    def update(self, stage: str, fraction: float, message: str = "") -> None:  # noqa: D102
        self.parent.update(self.stage or stage, self._scaled(fraction), message)

    def update_count(
        self, stage: str, fraction: float, count: StageCount, message: str = ""
    ) -> None:
        """Pass ``count`` on with the scaled fraction (a plain parent gets the fraction)."""
        if isinstance(self.parent, CountingProgress):
            self.parent.update_count(self.stage or stage, self._scaled(fraction), count, message)
        else:
            self.parent.update(self.stage or stage, self._scaled(fraction), message)

    def check_cancelled(self) -> None:  # noqa: D102
        self.parent.check_cancelled()
